"""Load time and memory of each multi-task dataset available under a data root.

Each dataset is loaded in a fresh Python process, so the reported resident set size
(RSS) is that dataset's alone (plus the interpreter, torch and torchvision). Columns:

- ``load s``: wall time of ``load_dataset(name)`` (reading, drawing, normalization
  statistics; imports excluded);
- ``tensors MB``: bytes (MiB) held by the six tensors of the train and test splits (the
  one-vs-rest datasets store each image once per task, so 10 copies);
- ``base RSS MB``: resident memory of the process after the imports, before loading;
  ``RSS MB``: after loading; ``peak RSS MB``: its maximum during the run;
- ``epoch s``: one shuffled pass over the train split in minibatches of 64, indexing
  the in-memory uint8 tensors and normalizing (no per-sample Python work), on one
  torch thread.

Usage, from the repository root (or anywhere once the package is installed)::

    python -m benchmarks.datasets_load --root /path/to/data            # all datasets
    ROUTING_ENV_DATA=/path/to/data python -m benchmarks.datasets_load --names mnist-mtl fashion-mtl

Datasets whose files are missing are reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def _measure(name: str, root: str | None, seed: int, min_per_class: tuple[int, int]) -> dict[str, object]:
    import sklearn.datasets  # noqa: F401  - imported here so load times exclude imports
    import torch
    import torchvision.datasets  # noqa: F401

    from routing_env.datasets import DatasetNotFoundError, load_dataset

    options: dict[str, object] = {"per_class": min_per_class} if name == "min-mtl" else {}
    base_rss_mb = _rss_mb()
    start = time.perf_counter()
    try:
        ds = load_dataset(name, root=root, seed=seed, **options)
    except (DatasetNotFoundError, ValueError) as err:
        return {"name": name, "skipped": str(err).splitlines()[0]}
    load_s = time.perf_counter() - start
    tensors = [
        t for split in (ds.train, ds.test) for t in (split.inputs_NCHW, split.tasks_N, split.targets_N)
    ]
    tensor_mb = sum(t.numel() * t.element_size() for t in tensors) / 2**20

    # one intra-op thread: on a shared 2-core machine more threads make the timing erratic
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(ds.train), generator=generator)
    start = time.perf_counter()
    for i in range(0, len(order), 64):
        idx = order[i : i + 64]
        ds.normalize(ds.train.inputs_NCHW[idx])
        ds.train.tasks_N[idx], ds.train.targets_N[idx]
    epoch_s = time.perf_counter() - start
    return {
        "name": name,
        "train": len(ds.train),
        "test": len(ds.test),
        "load_s": load_s,
        "tensor_mb": tensor_mb,
        "base_rss_mb": base_rss_mb,
        "rss_mb": _rss_mb(),
        "peak_rss_mb": _peak_rss_mb(),
        "epoch_s": epoch_s,
    }


def main() -> None:
    from routing_env.datasets import DATASET_NAMES

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", default=None, help="data root (default: $ROUTING_ENV_DATA, then the user cache)"
    )
    parser.add_argument("--names", nargs="+", default=list(DATASET_NAMES), choices=DATASET_NAMES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--min-per-class",
        type=int,
        nargs=2,
        default=(800, 50),
        metavar=("TRAIN", "TEST"),
        help="per_class of min-mtl (the standard mini-ImageNet files need e.g. 550 50)",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one measurement, as JSON
    args = parser.parse_args()

    if args.child:
        print(json.dumps(_measure(args.child, args.root, args.seed, tuple(args.min_per_class))))
        return

    print(f"root: {args.root or os.environ.get('ROUTING_ENV_DATA') or '(user cache)'}")
    header = f"{'dataset':<12}{'train':>9}{'test':>8}{'load s':>9}{'tensors MB':>12}{'base RSS MB':>13}{'RSS MB':>9}{'peak RSS MB':>13}{'epoch s':>9}"
    print(header)
    for name in args.names:
        # the child runs this file the way this process was started (-m keeps the cwd importable)
        script = ["-m", __spec__.name] if __spec__ is not None else [__file__]
        command = [sys.executable, *script, "--child", name, "--seed", str(args.seed)]
        command += ["--min-per-class", *map(str, args.min_per_class)]
        if args.root:
            command += ["--root", args.root]
        out = subprocess.run(command, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(f"{name:<12}failed:\n{out.stderr}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if "skipped" in r:
            print(f"{name:<12}skipped: {r['skipped']}")
            continue
        print(
            f"{name:<12}{r['train']:>9}{r['test']:>8}{r['load_s']:>9.2f}{r['tensor_mb']:>12.1f}"
            f"{r['base_rss_mb']:>13.0f}{r['rss_mb']:>9.0f}{r['peak_rss_mb']:>13.0f}{r['epoch_s']:>9.2f}"
        )


if __name__ == "__main__":
    main()
