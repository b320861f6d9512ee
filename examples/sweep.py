"""The paper's hyperparameter sweeps with Ray Tune: learning rate x rho x algorithm x seeds.

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, compare router algorithms
(WPL, REINFORCE, Q-learning) under several learning rates and collaboration rewards
rho, over seeds. Each trial here is a ``train_wpl``-style run with this project's own
agents: per-task routers (``agents.MultiAgentRouter.from_env``) are trained for
``--num-samples`` routed training samples (``agents.train``), then the whole test split
is routed greedily (``agents.evaluate``). Ray Tune runs the grid, one trial per CPU, on
this machine or on a Ray cluster (``--address``); every trial's result ends up in one
CSV with the columns ``algorithm, lr, rho, num_samples, seed, test_accuracy,
train_accuracy, time_s, error``.

    pip install 'routing-env[tune]'
    python examples/sweep.py                                         # 3 x 2 x 2 x 2 grid on digits-MTL
    python examples/sweep.py --algorithms wpl --lrs 1e-3,1e-2 --rhos 0,0.3,1 --seeds 5
    python examples/sweep.py --address auto                          # on a running Ray cluster
    python examples/sweep.py --help

The swept "learning rate" is that of the routed network's trunk and blocks (the env's
optimizer); each algorithm's own step size is ``--policy-lr`` (none: its default below).
Ray Tune keeps its trial folders under ``--storage`` (default: beside ``--output``).
"""

from __future__ import annotations

import functools
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from routing_env.experiments import DatasetName, write_rows
from routing_env.extras import missing_extra

ALGORITHMS = ("wpl", "reinforce", "qlearning")
"""Router algorithms (tabular, as the paper's per-task routers)."""

DEFAULT_POLICY_LR = {"wpl": 0.3, "reinforce": 0.1, "qlearning": 0.1}
CSV_COLUMNS = [
    "algorithm",
    "lr",
    "rho",
    "num_samples",
    "seed",
    "test_accuracy",
    "train_accuracy",
    "time_s",
    "error",
]


@dataclass
class Args:
    """Sweep learning rate x rho x algorithm x seeds over routing runs with Ray Tune (ICLR 2018)."""

    # --- the grid (comma-separated lists)
    algorithms: str = "wpl,reinforce,qlearning"
    """router algorithms to compare: any of wpl, reinforce, qlearning"""
    lrs: str = "1e-3,1e-2"
    """learning rates of the trunk and function blocks"""
    rhos: str = "0,0.3"
    """collaboration rewards rho in [0, 1]"""
    seeds: int = 2
    """seeds per configuration (0 .. seeds-1)"""

    # --- each trial
    num_samples: int = 20_000
    """training samples routed per trial"""
    dataset: DatasetName = "digits-mtl"
    """multi-task dataset; digits-mtl ships with scikit-learn (offline), the others are read from --data-root"""
    data_root: str | None = None
    """folder holding the datasets; default $ROUTING_ENV_DATA, else ~/.cache/routing_env"""
    max_test_samples: int | None = None
    """evaluate on a per-task stratified subset of at most this many test samples"""
    optimizer: Literal["sgd", "adam"] = "adam"
    """optimizer of the trunk and function blocks (the paper: sgd)"""
    batch_size: int = 64
    """routed samples per block-training step"""
    policy_lr: float | None = None
    """step size of every router algorithm (none: wpl 0.3, reinforce 0.1, qlearning 0.1)"""
    epsilon: float = 0.1
    """Q-learning's exploration rate"""

    # --- where it runs, where results go
    output: str = "runs/sweep.csv"
    """CSV that receives one row per trial"""
    storage: str | None = None
    """Ray Tune's storage folder (none: ray_results beside --output)"""
    address: str | None = None
    """Ray cluster to run on ('auto', or 'ray://HEAD:10001'); none: a local Ray on this machine"""
    num_cpus: int | None = None
    """CPUs of the local Ray (none: all); ignored with --address"""
    cpus_per_trial: float = 1.0
    """CPUs reserved for each trial"""
    torch_threads: int = 1
    """torch intra-op threads in each trial"""

    def __post_init__(self) -> None:
        algorithms = self.algorithm_list()
        unknown = sorted(set(algorithms) - set(ALGORITHMS))
        if not algorithms or unknown:
            raise ValueError(
                f"--algorithms must list some of {', '.join(ALGORITHMS)}, got {self.algorithms!r}"
            )
        if not self.lr_list() or any(lr <= 0 for lr in self.lr_list()):
            raise ValueError(f"--lrs must list positive learning rates, got {self.lrs!r}")
        if not self.rho_list() or any(not 0.0 <= rho <= 1.0 for rho in self.rho_list()):
            raise ValueError(f"--rhos must list values in [0, 1], got {self.rhos!r}")
        if self.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {self.seeds}")
        if self.num_samples < 1:
            raise ValueError(f"--num-samples must be >= 1, got {self.num_samples}")
        if self.cpus_per_trial <= 0:
            raise ValueError(f"--cpus-per-trial must be > 0, got {self.cpus_per_trial}")

    def algorithm_list(self) -> list[str]:
        return [a.strip() for a in self.algorithms.split(",") if a.strip()]

    def lr_list(self) -> list[float]:
        return _floats(self.lrs, "--lrs")

    def rho_list(self) -> list[float]:
        return _floats(self.rhos, "--rhos")


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated numbers, got {text!r}") from None


def router_factory(algorithm: str, *, policy_lr: float | None, epsilon: float) -> Any:
    """The per-task learner of ``algorithm`` (tabular, as the paper's per-task routers)."""
    from agents import WPL, QLearning, Reinforce

    lr = DEFAULT_POLICY_LR[algorithm] if policy_lr is None else policy_lr
    if algorithm == "wpl":
        return functools.partial(WPL, lr=lr)
    if algorithm == "reinforce":
        return functools.partial(Reinforce, representation="table", lr=lr)
    if algorithm == "qlearning":
        return functools.partial(QLearning, representation="table", lr=lr, epsilon=epsilon)
    raise ValueError(f"unknown algorithm {algorithm!r}; expected one of {ALGORITHMS}")


def run_trial(config: dict[str, Any]) -> dict[str, Any]:
    """One routing run (a train_wpl-style run, no files): train, then route the test split greedily."""
    import routing_env
    from agents import MultiAgentRouter, evaluate, train
    from routing_env.datasets import load_dataset, subsample
    from routing_env.experiments import seed_everything

    torch.set_num_threads(config["torch_threads"])
    seed = config["seed"]
    seed_everything(seed)
    start = time.perf_counter()
    dataset = subsample(
        load_dataset(config["dataset"], root=config["data_root"], seed=0),
        max_train=None,
        max_test=config["max_test_samples"],
        seed=0,
    )
    env = routing_env.env(
        dataset=dataset,
        router="per_task",
        collaboration_reward=config["rho"],
        optimizer=config["optimizer"],
        lr=config["lr"],
        batch_size=config["batch_size"],
    )
    factory = router_factory(config["algorithm"], policy_lr=config["policy_lr"], epsilon=config["epsilon"])
    router = MultiAgentRouter.from_env(env, router_factory=factory, seed=seed)
    stats = train(env, router, num_samples=config["num_samples"], seed=seed)
    evaluate(env, router, num_samples=len(dataset.test), greedy=True)
    return {
        "test_accuracy": env.unwrapped.evaluation()["accuracy"],
        "train_accuracy": stats.accuracy,
        "time_s": time.perf_counter() - start,
    }


def tune_trial(config: dict[str, Any]) -> None:
    """:func:`run_trial` as a Ray Tune function trainable."""
    from ray import tune

    tune.report(run_trial(config))


def param_space(args: Args) -> dict[str, Any]:
    """The grid (``tune.grid_search`` axes) plus the fixed settings of every trial."""
    from ray import tune

    return {
        "algorithm": tune.grid_search(args.algorithm_list()),
        "lr": tune.grid_search(args.lr_list()),
        "rho": tune.grid_search(args.rho_list()),
        "seed": tune.grid_search(list(range(args.seeds))),
        "num_samples": args.num_samples,
        "dataset": args.dataset,
        "data_root": args.data_root,
        "max_test_samples": args.max_test_samples,
        "optimizer": args.optimizer,
        "batch_size": args.batch_size,
        "policy_lr": args.policy_lr,
        "epsilon": args.epsilon,
        "torch_threads": args.torch_threads,
    }


def main(args: Args) -> list[dict[str, Any]]:
    """Run the grid with Ray Tune; write and return one row per trial (sorted by config)."""
    try:
        import ray
        from ray import tune
    except ImportError:
        missing = missing_extra(feature="examples/sweep.py", extra="tune", package="Ray Tune")
        sys.exit(str(missing))

    output = Path(args.output).resolve()
    storage = Path(args.storage).resolve() if args.storage else output.parent / "ray_results"
    if args.address:
        ray.init(address=args.address)
    else:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False)
    try:
        tuner = tune.Tuner(
            tune.with_resources(tune_trial, {"cpu": args.cpus_per_trial}),
            param_space=param_space(args),
            run_config=tune.RunConfig(
                name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=str(storage), verbose=1
            ),
        )
        grid = tuner.fit()
    finally:
        ray.shutdown()

    rows = []
    for result in grid:
        config = result.config or {}
        metrics = result.metrics or {}
        rows.append(
            {
                **{k: config.get(k) for k in ("algorithm", "lr", "rho", "num_samples", "seed")},
                "test_accuracy": metrics.get("test_accuracy", math.nan),
                "train_accuracy": metrics.get("train_accuracy", math.nan),
                "time_s": metrics.get("time_s", math.nan),
                "error": "" if result.error is None else repr(result.error).splitlines()[0][:200],
            }
        )
    rows.sort(key=lambda r: (r["algorithm"], r["lr"], r["rho"], r["seed"]))
    write_rows(output, rows, columns=CSV_COLUMNS)
    for row in rows:
        print(
            f"{row['algorithm']:>10}  lr {row['lr']:<8g} rho {row['rho']:<4g} seed {row['seed']}: "
            f"test accuracy {row['test_accuracy']:.4f}" + (f"  ERROR {row['error']}" if row["error"] else "")
        )
    print(f"{len(rows)} trials -> {output}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    from routing_env.experiments import parse_args

    main(parse_args(Args))
