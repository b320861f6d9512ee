#!/usr/bin/env bash
# Prepare a device-machine session (run on the development machine, from anywhere):
# fills the git-ignored folder .device/ at the repository root with what a bare GPU
# machine lacks:
#   .device/whl/   wheels of the runtime dependencies its image does not hold (PettingZoo,
#                  Gymnasium, tyro, torchjd + quadprog, ...), for CPython 3.12 x86-64, at
#                  the versions this checkout's environment uses;
#   .device/data/  Fashion-MNIST's four raw files, gzipped (about 30 MB), from
#                  $ROUTING_ENV_DATA (torchvision layout).
# Then, with the device tool, carry .device and run benchmarks/device/run.sh there (see
# benchmarks/device/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
: "${ROUTING_ENV_DATA:?set ROUTING_ENV_DATA to the folder holding FashionMNIST/raw}"

exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.device/' "$exclude" 2>/dev/null || echo '/.device/' >>"$exclude"
rm -rf .device && mkdir -p .device/whl .device/data/FashionMNIST/raw

# The device image holds torch, torchvision, numpy, scikit-learn, tqdm, rich, pytest,
# pytest-xdist, hypothesis, matplotlib and cloudpickle (/work/.library/device/KINDS.md);
# these are the rest of `pip install -e ".[test,mtl]"`, pinned to this environment's versions.
packages=(pettingzoo gymnasium farama-notifications tyro docstring-parser typeguard
    typing-extensions torchjd quadprog qpsolvers)
pins=$("$PYTHON" - "${packages[@]}" <<'PY'
import importlib.metadata as md
import sys

print(" ".join(f"{name}=={md.version(name)}" for name in sys.argv[1:]))
PY
)
# shellcheck disable=SC2086  # one pin per word
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .device/whl $pins

for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    gzip -c "$ROUTING_ENV_DATA/FashionMNIST/raw/$name" >".device/data/FashionMNIST/raw/$name.gz"
done
echo "prepared .device ($(du -sh .device | cut -f1)): $pins"
git ls-files -z | du -ch --files0-from=- | tail -1 | sed 's/total$/tracked files (with .device: limit 64 MiB)/'
