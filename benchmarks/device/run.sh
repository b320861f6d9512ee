#!/usr/bin/env bash
# A device-machine session in one command (run there, from the repository root, with
# .device carried; prepare it here first with benchmarks/device/prepare.sh):
#   1. tests:   every CUDA test of the default suite (`-k cuda` over the files that have one)
#   2. batched: benchmarks/batched_routing.py on the GPU, CIFAR- and MNIST-shaped
#   3. epoch:   benchmarks/epoch_time.py, the paper's CIFAR-MTL budget projected
#   4. fashion: the Fashion-MTL campaign in the paper's setting on the GPU, all runs at once,
#               until the budget is spent; the runs' folders come back, checkpoints
#               included (CPU tensors: resumable on any machine)
# Each phase has its own time limit; the whole script keeps within BUDGET_S seconds.
# What comes back under $OUT (the device tool returns at most 8 files):
#   summary.txt, device.txt, tests.log, batched_routing.csv, logs.tar.gz, fashion.tar.gz
#
# Knobs (environment): BUDGET_S (default 420), PHASES (default tests,batched,epoch,fashion),
# DEVICE (default cuda; `DEVICE=cpu` tries the script on a machine without a GPU),
# SAMPLES (default 20000: samples per timed epoch), FASHION_EPOCHS (100),
# FASHION_FIGURES (default 8; 4,5,8 adds the RL algorithms and architectures),
# FASHION_MODELS (default: Fig. 8's five models, MMoE and the Gumbel router), FASHION_JOBS
# (default: 21, one per run),
# FASHION_ARGS (more campaign options, e.g. "--max-train-samples 500"), INSTALL_WHEELS
# (default 1; 0 uses the Python environment as it is), PYTHON (default python3).
set -uo pipefail
cd "$(dirname "$0")/../.."
t0=$(date +%s)
BUDGET_S=${BUDGET_S:-420}
PHASES=${PHASES:-tests,batched,epoch,fashion}
DEVICE=${DEVICE:-cuda}
SAMPLES=${SAMPLES:-20000}
FASHION_EPOCHS=${FASHION_EPOCHS:-100}
FASHION_FIGURES=${FASHION_FIGURES:-8}
FASHION_MODELS=${FASHION_MODELS:-routing-all-fc,task-specific-1-fc,task-specific-all-fc,cross-stitch-all-fc,soft-mixture-all-fc,mmoe-all-fc,gumbel-router-all-fc}
FASHION_JOBS=${FASHION_JOBS:-21}
FASHION_ARGS=${FASHION_ARGS:-}
INSTALL_WHEELS=${INSTALL_WHEELS:-1}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$PWD/device-out}
work=${WORK_DIR:-/tmp/routing-device}
mkdir -p "$OUT" "$work/logs"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1

elapsed() { echo $(($(date +%s) - t0)); }
say() { echo "[$(elapsed) s] $*" | tee -a "$OUT/summary.txt"; }
has_phase() { [[ ",$PHASES," == *",$1,"* ]]; }
# phase NAME SECONDS CMD...: runs CMD with a time limit (no more than what the budget has
# left, less a reserve for packing), its output in $work/logs/NAME.log
phase() {
    local name=$1 limit=$2 left
    shift 2
    left=$((BUDGET_S - $(elapsed) - 25))
    ((limit > left)) && limit=$left
    if ((limit < 10)); then
        say "$name: skipped, the budget is spent"
        return
    fi
    say "$name: start (limit ${limit} s): $*"
    timeout -s TERM -k 15 "$limit" "$@" >"$work/logs/$name.log" 2>&1
    local rc=$?
    say "$name: rc=$rc$( ((rc == 124)) && echo ' (stopped at its time limit)')"
    tail -n 25 "$work/logs/$name.log"
}

if [ "$INSTALL_WHEELS" = 1 ] && [ -d .device/whl ]; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$work/site" .device/whl/*.whl || exit
    export PYTHONPATH="$work/site:$PWD"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -d .device/data ]; then
    mkdir -p "$work/data/FashionMNIST/raw"
    for f in .device/data/FashionMNIST/raw/*.gz; do
        gunzip -c "$f" >"$work/data/FashionMNIST/raw/$(basename "$f" .gz)"
    done
    export ROUTING_ENV_DATA="$work/data"
fi
{
    date -u
    nvidia-smi 2>&1 || true
    "$PYTHON" -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")'
    nproc
} >"$OUT/device.txt" 2>&1
say "budget ${BUDGET_S} s, phases $PHASES, device $DEVICE; $(tail -n 2 "$OUT/device.txt" | head -n 1)"

if has_phase tests; then
    files=$(grep -rlE 'def test_[a-z0-9_]*cuda' tests)
    # shellcheck disable=SC2086  # one file per word
    phase tests 150 "$PYTHON" -m pytest -p no:cacheprovider -q -rs -n 8 -k cuda $files
    cp "$work/logs/tests.log" "$OUT/tests.log"
fi
if has_phase batched; then
    phase batched 150 "$PYTHON" benchmarks/batched_routing.py --device "$DEVICE" --threads 1 \
        --loops plain,batched,cross-stitch --samples "$SAMPLES" --repeats 3 --csv "$OUT/batched_routing.csv"
fi
if has_phase epoch; then
    phase epoch 90 "$PYTHON" benchmarks/epoch_time.py --device "$DEVICE" --samples "$SAMPLES"
fi
if has_phase fashion; then
    models=()
    [ -n "$FASHION_MODELS" ] && models=(--models "$FASHION_MODELS")
    # shellcheck disable=SC2086  # FASHION_ARGS: one option per word
    phase fashion 100000 "$PYTHON" examples/paper/fashion_mtl_campaign.py --device "$DEVICE" \
        --epochs "$FASHION_EPOCHS" --seeds 3 --settings paper --figures "$FASHION_FIGURES" "${models[@]}" \
        --jobs "$FASHION_JOBS" $FASHION_ARGS --output-dir "$work/fashion" --runs-dir "$work/fashion/runs"
    if [ -d "$work/fashion" ]; then
        tar czf "$OUT/fashion.tar.gz" -C "$work" fashion
        if (($(stat -c %s "$OUT/fashion.tar.gz") > 15 * 1024 * 1024)); then
            say "fashion.tar.gz over 15 MiB: packed again without checkpoints"
            tar czf "$OUT/fashion.tar.gz" --exclude=checkpoint.pt -C "$work" fashion
        fi
        for run in "$work"/fashion/runs/*/; do
            [ -f "$run/metrics.csv" ] && say "$(basename "$run"): $(($(wc -l <"$run/metrics.csv") - 1)) epochs"
        done
    fi
fi
tar czf "$OUT/logs.tar.gz" -C "$work" logs
say "done"
