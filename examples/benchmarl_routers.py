"""Train routers with BenchMARL's algorithms (MAPPO, IPPO, IQL, QMIX) on the routing game (digits-MTL by default).

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, with the routers learned by
BenchMARL (in a venv of its own: it needs torchrl<0.12, this project's torchrl extra
0.14). ``routing_env.integrations.benchmarl`` ships a BenchMARL task for each
configuration of the env (``RoutingTask.PER_TASK_LAYERED``, ...); this script runs a
BenchMARL ``Experiment`` on one and scores the greedy routes on the validation and test
splits through the same routing game (the blocks live in the env):

    python3 -m venv .venv-benchmarl && . .venv-benchmarl/bin/activate
    pip install -e ".[benchmarl]"
    python examples/benchmarl_routers.py                       # MAPPO, per-task routers
    python examples/benchmarl_routers.py --algorithm iql --task dispatched_recurrent
    python examples/benchmarl_routers.py --help

Each router has its own network (BenchMARL's ``share_policy_params=False``, as the
paper's per-task routers; ``--share-policy-params`` shares one). A uniformly random
router stays near the 90% majority rate of digits-MTL's tasks. Nothing is written to
disk unless ``--save-folder`` is given.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Literal

import torch

from routing_env.experiments import DatasetName, DatasetOptions, load_run_dataset, parse_args, seed_everything
from routing_env.extras import missing_extra

Algorithm = Literal["mappo", "ippo", "iql", "qmix", "vdn", "masac", "isac"]
TaskName = Literal[
    "per_task_layered",
    "per_task_recurrent",
    "single_layered",
    "single_recurrent",
    "dispatched_layered",
    "dispatched_recurrent",
]


@dataclass
class Args:
    """Train routers with a BenchMARL algorithm on the routing game (ICLR 2018)."""

    algorithm: Algorithm = "mappo"
    """BenchMARL algorithm (its own defaults, from its yaml files, but the lr)"""
    task: TaskName = "per_task_layered"
    """router configuration and routing: RoutingTask member, lower case"""
    dataset: DatasetName = "digits-mtl"
    """multi-task dataset; digits-mtl ships with scikit-learn (offline), the others are read from --data-root"""
    data_root: str | None = None
    """folder holding the datasets (torchvision layout); default $ROUTING_ENV_DATA, else ~/.cache/routing_env"""
    max_test_samples: int | None = None
    """evaluate on the first this many test samples only (a subsample drawn with seed 0; default: all)"""
    validation_fraction: float | None = 0.1
    """share of the training inputs set aside as a validation split (drawn with seed 0), whose greedy accuracy is reported: choose settings on it (none: no validation split)"""
    frames: int = 30_000
    """env steps to collect (BenchMARL's max_n_frames); a sample takes one step per depth (plus one for a dispatcher)"""
    frames_per_batch: int = 600
    """env steps collected between updates (on- and off-policy)"""
    minibatch_size: int = 200
    """BenchMARL's on_policy_minibatch_size and off_policy_train_batch_size"""
    update_epochs: int = 4
    """on-policy algorithms: passes over each collected batch (BenchMARL's on_policy_n_minibatch_iters; its yaml: 45)"""
    optimizer_steps: int = 100
    """off-policy algorithms: gradient steps per collected batch (BenchMARL's off_policy_n_optimizer_steps; its yaml: 1000)"""
    lr: float = 3e-3
    """BenchMARL's Adam learning rate (3e-3: the better of 3e-4, BenchMARL's default, and 3e-3 on digits-MTL's validation split with MAPPO)"""
    share_policy_params: bool = False
    """one network for all routers (default: one per router, as the paper's per-task routers)"""
    samples_per_episode: int = 4
    """samples routed per episode of the env"""
    block_batch_size: int = 16
    """routed samples per block-training step of the env (its default: 64)"""
    save_folder: str | None = None
    """folder for BenchMARL's experiment folder (its config; checkpoints and logs are off); none: a temporary folder, removed at the end"""
    seed: int = 0
    """seed of the run: network weights, data order, router initialization and sampling"""
    torch_threads: int | None = 1
    """torch intra-op threads (none: torch's default)"""

    def __post_init__(self) -> None:
        if self.max_test_samples is not None and self.max_test_samples < 1:
            raise ValueError(f"--max-test-samples must be >= 1, got {self.max_test_samples}")
        for name in (
            "frames",
            "frames_per_batch",
            "minibatch_size",
            "update_epochs",
            "optimizer_steps",
            "samples_per_episode",
            "block_batch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.minibatch_size > self.frames_per_batch:
            raise ValueError(
                f"--minibatch-size ({self.minibatch_size}) must be at most --frames-per-batch ({self.frames_per_batch})"
            )
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if self.validation_fraction is not None and not 0 < self.validation_fraction <= 0.5:
            raise ValueError(f"--validation-fraction must be in (0, 0.5], got {self.validation_fraction}")


def algorithm_config(name: Algorithm, share_policy_params: bool) -> Any:
    """BenchMARL's config of ``name`` from its yaml, with the policy's sharing set."""
    from benchmarl import algorithms

    classes = {
        "mappo": algorithms.MappoConfig,
        "ippo": algorithms.IppoConfig,
        "iql": algorithms.IqlConfig,
        "qmix": algorithms.QmixConfig,
        "vdn": algorithms.VdnConfig,
        "masac": algorithms.MasacConfig,
        "isac": algorithms.IsacConfig,
    }
    config = classes[name].get_from_yaml()
    if hasattr(config, "share_param_critic"):
        config.share_param_critic = share_policy_params
    return config


def main(args: Args) -> dict[str, Any]:
    """Train the routers and return ``{"test_accuracy", ...}`` of the greedy routes."""
    try:
        import benchmarl  # noqa: F401
    except ImportError:
        sys.exit(
            str(
                missing_extra(feature="examples/benchmarl_routers.py", extra="benchmarl", package="BenchMARL")
            )
        )

    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    seed_everything(args.seed)
    dataset = load_run_dataset(
        DatasetOptions(
            dataset=args.dataset,
            data_root=args.data_root,
            max_test_samples=args.max_test_samples,
            validation_fraction=args.validation_fraction,
        )
    )
    with tempfile.TemporaryDirectory(prefix="benchmarl-") as tmp:
        return train_and_evaluate(args, dataset, save_folder=args.save_folder or tmp)


def train_and_evaluate(args: Args, dataset: Any, *, save_folder: str) -> dict[str, Any]:
    """Run the BenchMARL experiment on ``dataset`` and score its greedy routes."""
    from benchmarl.models.mlp import MlpConfig

    from routing_env.integrations.benchmarl import RoutingTask, evaluate, experiment

    task = RoutingTask[args.task.upper()].get_task(
        {
            "dataset": dataset,
            "samples_per_episode": args.samples_per_episode,
            "batch_size": args.block_batch_size,
        }
    )
    exp = experiment(
        task,
        algorithm_config(args.algorithm, args.share_policy_params),
        MlpConfig.get_from_yaml(),
        seed=args.seed,
        save_folder=save_folder,
        max_n_frames=args.frames,
        lr=args.lr,
        share_policy_params=args.share_policy_params,
        on_policy_collected_frames_per_batch=args.frames_per_batch,
        off_policy_collected_frames_per_batch=args.frames_per_batch,
        on_policy_minibatch_size=args.minibatch_size,
        off_policy_train_batch_size=args.minibatch_size,
        on_policy_n_minibatch_iters=args.update_epochs,
        off_policy_n_optimizer_steps=args.optimizer_steps,
    )
    print(
        f"{dataset.name}: BenchMARL {args.algorithm} routers ({args.task}), {args.frames} frames, "
        f"{len(dataset.test)} test samples",
        file=sys.stderr,
    )
    game = task.game().aec_env
    start = time.perf_counter()
    exp.run()
    train_time = time.perf_counter() - start
    samples = game.samples_routed
    validation = evaluate(exp, split="validation")["accuracy"] if dataset.validation is not None else None
    result = evaluate(exp)
    summary = {
        "validation_accuracy": validation,
        "test_accuracy": result["accuracy"],
        "test_accuracy_per_task": result["accuracy_per_task"],
        "test_samples": result["samples"],
        "train_samples": samples,
        "train_time_s": train_time,
    }
    if validation is not None:
        print(f"greedy validation accuracy {100 * validation:.2f}%")
    print(
        f"BenchMARL {args.algorithm} ({args.task}): greedy test accuracy {100 * result['accuracy']:.2f}% on "
        f"{result['samples']} test samples after {samples} training samples "
        f"({train_time:.0f}s training; majority class: 90.00%)"
    )
    return summary


if __name__ == "__main__":
    main(parse_args(Args))
