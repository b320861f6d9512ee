"""Epoch time and accuracy of the MLP routers learning per trace and per minibatch.

``train_wpl.py --learner reinforce-mlp|qlearning-mlp`` trains its routers one optimizer
step per routed sample's trace (``--router-update trace``, the default): 100,000 small
steps per MNIST-MTL / Fashion-MTL epoch. ``--router-update minibatch`` takes one step per
minibatch on the mean of its traces' losses (a different learning rule; see the
README's Performance section). This runs ``train_wpl.py`` both ways as a user would, interleaved
``--repeats`` times (so that a change in the machine's load hits both alike), in
temporary run folders, and prints each run's epoch times (training plus the script's
evaluation; the first epoch is left out of the mean when there are more) and its final
greedy test accuracy, then the ratio of the mean epoch times::

    python benchmarks/router_update.py                                    # digits-MTL, Q-learning MLPs
    python benchmarks/router_update.py --learner reinforce-mlp --router single
    ROUTING_ENV_DATA=DIR python benchmarks/router_update.py --dataset fashion-mtl --max-train-samples 20000 --csv out.csv
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
UPDATES = ("trace", "minibatch")


def run(args: list[str], out: Path, name: str) -> list[dict[str, str]]:
    """Run ``train_wpl.py`` with ``args``; return its metrics.csv rows."""
    command = [sys.executable, str(ROOT / "examples" / "train_wpl.py"), *args]
    command += ["--output-dir", str(out), "--run-name", name]
    command += ["--no-progress", "--no-tensorboard", "--no-checkpoint"]
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    with (out / name / "metrics.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="digits-mtl", help="dataset (default: digits-mtl)")
    parser.add_argument("--learner", default="qlearning-mlp", choices=["qlearning-mlp", "reinforce-mlp"])
    parser.add_argument("--router", default="per_task", choices=["per_task", "single", "dispatched"])
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each run (default: 3)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each way, interleaved (default: 1)")
    parser.add_argument("--max-train-samples", type=int, default=None, help="train subset (default: all)")
    parser.add_argument("--max-test-samples", type=int, default=None, help="test subset (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run (default: 0)")
    parser.add_argument(
        "--extra", default="", help="more train_wpl.py options, e.g. '--optimizer sgd --lr 0.01 --rho 0.3'"
    )
    parser.add_argument("--csv", default=None, help="also write one row per run to this CSV")
    args = parser.parse_args()
    if args.epochs < 1 or args.repeats < 1:
        parser.error("--epochs and --repeats must be >= 1")
    common = ["--dataset", args.dataset, "--learner", args.learner, "--router", args.router]
    common += ["--epochs", str(args.epochs), "--seed", str(args.seed), "--torch-threads", "1"]
    for flag, value in (
        ("--max-train-samples", args.max_train_samples),
        ("--max-test-samples", args.max_test_samples),
    ):
        if value is not None:
            common += [flag, str(value)]
    common += shlex.split(args.extra)
    rows: list[dict[str, object]] = []
    run_means: dict[str, list[float]] = {update: [] for update in UPDATES}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for update in UPDATES:
                metrics = run([*common, "--router-update", update], Path(tmp), f"{update}-{repeat}")
                times = [float(row["epoch_time_s"]) for row in metrics]
                kept = times[1:] if len(times) > 1 else times
                accuracy = float(metrics[-1]["test_accuracy"])
                run_means[update].append(round(mean(kept), 3))
                rows.append(
                    {
                        "update": update,
                        "repeat": repeat,
                        "mean_epoch_time_s": run_means[update][-1],
                        "epoch_times_s": " ".join(f"{t:.2f}" for t in times),
                        "final_test_accuracy": accuracy,
                    }
                )
                print(
                    f"{update:9s} (run {repeat}): epoch times {', '.join(f'{t:.2f}' for t in times)} s; "
                    f"test {100 * accuracy:.2f}% after epoch {len(times)}",
                    flush=True,
                )
    means = {update: mean(values) for update, values in run_means.items()}
    print(
        f"\n{args.dataset}, --learner {args.learner} --router {args.router}, {args.epochs} epochs x "
        f"{args.repeats} run(s) each, 1 torch thread; mean epoch time"
        + (" after the first" if args.epochs > 1 else "")
        + ":"
    )
    for update in UPDATES:
        print(f"  --router-update {update}: {means[update]:.2f} s")
    print(f"  trace / minibatch: {means['trace'] / means['minibatch']:.2f}x")
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
