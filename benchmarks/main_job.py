"""The main job's epoch time against the task-specific-all-fc baseline's, one command for both.

Runs ``examples/train_wpl.py`` (per-task WPL routing, the batched path by default) and
``examples/train_baseline.py --model task-specific-all-fc`` as a user would, one after
the other with the same dataset, epochs and torch threads, in temporary run folders,
then reads each run's ``metrics.csv`` and compares the epoch times (``epoch_time_s``:
training plus the script's own evaluation: greedy and sampled routes for routing, one
pass for the baseline). The first epoch is left out of the mean (warm-up) when there are
more than one. Target: routing within 1.3x of the baseline on digits-MTL::

    python benchmarks/main_job.py                       # digits-MTL, 4 epochs each
    python benchmarks/main_job.py --epochs 6 --repeats 2 --extra "--aec"
"""

from __future__ import annotations

import argparse
import csv
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import mean

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, args: list[str], out: Path, name: str) -> list[float]:
    """Run one training script; return the epoch times from its metrics.csv."""
    command = [
        sys.executable,
        str(ROOT / "examples" / script),
        *args,
        "--output-dir",
        str(out),
        "--run-name",
        name,
    ]
    command += ["--no-progress", "--no-tensorboard", "--no-checkpoint"]
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    with (out / name / "metrics.csv").open(newline="") as fh:
        return [float(row["epoch_time_s"]) for row in csv.DictReader(fh)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="digits-mtl")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each script (interleaved); best mean kept"
    )
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--extra", default="", help="more options for train_wpl.py, e.g. '--aec'")
    args = parser.parse_args()
    common = [
        "--dataset",
        args.dataset,
        "--epochs",
        str(args.epochs),
        "--torch-threads",
        str(args.torch_threads),
    ]
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for label, script, more in (
                (
                    "routing (train_wpl.py" + (" " + args.extra if args.extra else "") + ")",
                    "train_wpl.py",
                    shlex.split(args.extra),
                ),
                (
                    "task-specific-all-fc (train_baseline.py)",
                    "train_baseline.py",
                    ["--model", "task-specific-all-fc"],
                ),
            ):
                times = run(script, common + more, Path(tmp), f"{script[:-3]}-{repeat}")
                kept = times[1:] if len(times) > 1 else times
                best[label] = min(best.get(label, float("inf")), mean(kept))
                print(f"{label}: epoch times {', '.join(f'{t:.2f}' for t in times)} s", flush=True)
    (routing, r), (baseline, b) = best.items()
    print(
        f"\n{args.dataset}, {args.epochs} epochs, {args.torch_threads} torch thread(s), mean epoch after the first:"
    )
    print(f"  {routing}: {r:.2f} s")
    print(f"  {baseline}: {b:.2f} s")
    print(f"  routing / baseline: {r / b:.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
