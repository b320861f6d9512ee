"""Train per-task WPL routers on a routing network: the paper's routing-all-fc (MARL:WPL).

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, sections 3-4. The
environment owns the routed SimpleConvNet and trains its trunk and function blocks on
the routes the agents pick; one tabular Weighted Policy Learner per task (Algorithm 3)
learns where to route that task's samples from the +1/-1 final reward plus the
collaboration reward ``rho``. Each epoch routes every training sample once, then the
test split is routed greedily (argmax policy) and with the stochastic policy.

    python examples/train_wpl.py                           # digits-MTL, offline, ~1.5 min on 2 CPU cores
    python examples/train_wpl.py --dataset mnist-mtl --data-root ~/data --epochs 50
    python examples/train_wpl.py --resume runs/wpl-digits-mtl-s0-20250101-120000 --epochs 60
    python examples/train_wpl.py --help

Defaults are set for the offline digits-MTL on a laptop CPU (20 epochs in about two
minutes, ~99.6% test accuracy against a 90% majority-class rate). They differ from the
paper's (blocks trained with SGD at lr 1e-2, divided by 10 every 20 epochs; rho 0.3 on
MNIST-MTL): Adam at 1e-3 divided by 10 every 10 epochs, rho 0, and WPL with
``--policy-lr 0.3`` and a per-depth average return. With the paper's SGD setting the
routers stay on the 90% plateau (every task predicted "not c") for more than 20
digits-MTL epochs; the paper reports the same plateau for the first 5 MNIST-MTL epochs
(Table 2). For the paper's settings pass
``--optimizer sgd --lr 1e-2 --lr-decay-every 20`` (and ``--rho 0.3`` on MNIST-MTL).

``--learner`` trains the routers with another RL algorithm of the paper's Fig. 4 instead
(REINFORCE or Q-learning, on MLPs of ``concat(v, one-hot(t))`` or tables), with the same
env, block training, evaluation and run folder; with such a learner ``--router single``
is the paper's single-agent router (Fig. 3a):

    python examples/train_wpl.py --learner reinforce-mlp --router single

A run folder (``--output-dir``/``--run-name``) receives ``config.json`` (the arguments),
``metrics.csv`` (one row per epoch: train/test accuracy overall and per task),
``checkpoint.pt`` (env, agents and RNG states after the last epoch; ``--resume RUN_DIR``
continues bit-identically), ``summary.json`` and, if TensorBoard is installed, ``tb/``.

``--resume RUN_DIR`` checks the run before it writes anything: that ``train_wpl.py``
wrote it (a ``train_baseline.py`` run is refused with the command that resumes it), that
the options given may change on resume, and that the checkpoint's own config matches
``config.json`` (a hand-edited ``data_seed`` would train the saved weights on another
split). ``--epochs N`` is the epoch to train up to: ``config.json`` keeps the larger of
``N`` and the run's recorded epochs, and a resume with ``N`` at or below the epochs
already trained changes no file. The run folder is locked while a run trains
(``RUN_DIR/.lock``, released when the process ends, however it ends): a second run with
the same ``--run-name``, or a second ``--resume`` of it, is refused.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

import routing_env
from agents import (
    WPL,
    AgentFactory,
    Dispatcher,
    MultiAgentRouter,
    QLearning,
    Reinforce,
    RouterAgent,
    RunStats,
    evaluate,
    evaluate_batched,
    train,
    train_batched,
)
from agents.wpl import WPLWeighting
from routing_env.aggregation import AggregatorName
from routing_env.datasets import MultiTaskDataset
from routing_env.experiments import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    DatasetOptions,
    MetricsCSV,
    Progress,
    RunFolder,
    check_block_training,
    check_data_fingerprint,
    check_number,
    check_seed,
    data_fingerprint,
    dataset_sizes,
    global_rng_state,
    load_run_dataset,
    machine_info,
    metric_columns,
    metrics_row,
    open_run,
    read_config,
    resolve_device,
    run_kind,
    run_script,
    save_checkpoint,
    seed_everything,
    set_global_rng_state,
    summary_table,
    tensorboard_writer,
    write_summary,
)
from routing_env.optim import StepDecay


@dataclass
class Args(DatasetOptions):
    """Train per-task WPL routers on a routing network (routing-all-fc, ICLR 2018)."""

    # --- data: the fields of DatasetOptions (--dataset, --data-root, ...) come first
    validation_fraction: float | None = 0.1
    """share of the training images set aside as a validation split (stratified per task and class, drawn with --data-seed), in (0, 0.5]; its greedy accuracy is reported each epoch, and hyper-parameters are chosen on it, never on the test split (none: no validation split)"""

    # --- budget and block training (done by the environment)
    epochs: int | None = None
    """training epochs, one epoch routing every training sample once (none: 20; with --resume: the run's own). With --resume it is the epoch to train up to: config.json keeps the larger of it and the run's recorded epochs, and a resume that trains nothing changes no file"""
    batch_size: int = 64
    """routed samples per block-training step"""
    optimizer: Literal["sgd", "adam"] = "adam"
    """optimizer of the trunk and function blocks (the paper: sgd)"""
    lr: float = 1e-3
    """learning rate of the trunk and function blocks (the paper: 1e-2 with sgd)"""
    momentum: float = 0.0
    """sgd momentum of the blocks"""
    weight_decay: float = 0.0
    """L2 weight decay of the blocks"""
    lr_decay_every: int | None = 10
    """multiply the block learning rate by --lr-decay-factor every this many epochs (none: constant; the paper: 20)"""
    lr_decay_factor: float = 0.1
    """factor of each learning-rate decay (the paper: divide by 10 every 20 epochs)"""
    aggregator: AggregatorName = "mean"
    """how a minibatch trains the trunk and blocks: mean (its mean loss, the paper) or a torchjd aggregator of its per-task losses on the parameters samples of several tasks went through (pcgrad: Yu et al. 2020; pip install 'routing-env[mtl]'; the rule: routing_env/aggregation.py)."""

    # --- routing network
    routing: Literal["layered", "recurrent"] = "layered"
    """layered: depth i picks a block of routed layer i; recurrent: any block of fitting width, or PASS"""
    conv_layers: int | None = None
    """conv layers of the SimpleConvNet trunk (none: 4, fewer for images under 16x16, 2 for 8x8)"""
    hidden_width: int = 128
    """units of the routed hidden fc blocks"""
    blocks_per_layer: int | None = None
    """function blocks per routed layer (none: one per task)"""

    # --- router
    router: Literal["per_task", "single", "dispatched"] = "per_task"
    """router agents: one per task (the paper's best), one for all tasks (single: only with a --learner that sees the task, not wpl: a tabular WPL sees only the depth, so one router for all tasks could not route by task), or a REINFORCE dispatcher over per-task routers (dispatched)"""
    learner: Literal["wpl", "reinforce-mlp", "qlearning-mlp", "qlearning-table"] = "wpl"
    """RL algorithm of the routers (the paper's Fig. 4): wpl (tabular Weighted Policy Learner, MARL:WPL), reinforce-mlp (REINFORCE, one MLP of 64 hidden units per depth on concat(v, one-hot(t))), qlearning-mlp (Q-learning, the same MLPs, epsilon-greedy) or qlearning-table (tabular Q-learning, epsilon-greedy); the WPL options below configure wpl only"""
    reinforce_lr: float = 1e-2
    """Adam learning rate of the REINFORCE routers' MLPs and, for a --learner other than wpl, of the REINFORCE dispatcher of --router dispatched (the agents' default)"""
    qlearning_lr: float = 0.1
    """step size of tabular Q-learning (--learner qlearning-table; the agent's default)"""
    qlearning_mlp_lr: float = 1e-3
    """Adam learning rate of the Q-learning MLPs (--learner qlearning-mlp)"""
    epsilon: float = 0.1
    """exploration rate of the Q-learning routers (epsilon-greedy; the agent's default)"""
    router_update: Literal["trace", "minibatch"] = "trace"
    """how the MLP routers (--learner reinforce-mlp or qlearning-mlp, and the dispatcher of --router dispatched) learn on the batched path: trace (one optimizer step per routed sample's trace, in order, as the AEC path) or minibatch (one step per minibatch: each agent on the mean loss of the traces it routed in it, as the authors' code steps once per batch; an epoch about 1.7x faster on a CPU (benchmarks/router_update.py), and a different learning rule: see the README's Performance section)."""
    rho: float = 0.0
    """collaboration reward rho in [0, 1]: reward for picking blocks other agents picked often"""
    policy_lr: float = 0.3
    """WPL policy learning rate (lambda_pi) at the start of training"""
    policy_lr_schedule: Literal["constant", "blocks"] = "constant"
    """constant: --policy-lr throughout; blocks: multiplied by --lr-decay-factor every --lr-decay-every epochs with the block learning rate, as the paper trains routing and blocks on one schedule (the rate of WPL's average return, --return-average-rate, stays fixed)"""
    return_average_rate: float | None = None
    """rate of WPL's historical average return (none: --policy-lr, as in the paper)"""
    wpl_baseline: Literal["action", "depth"] = "depth"
    """WPL's average return: per depth (the default: R - TR then estimates Q(a) - V, the gradient of Abdallah & Lesser's WPL) or per (depth, action) (one literal reading of the paper's Algorithm 3, which on a stationary routing problem does not find the best route; see agents/wpl.py)"""
    wpl_weighting: WPLWeighting = "paper"
    """sign of WPL's gradient weighting: paper (section 3.1.2 and Algorithm 3: a positive gradient scaled by pi, a negative one by 1 - pi; agents become pure as in Fig. 9) or abdallah-lesser (appendix 7.4, Abdallah & Lesser's WPL: the other way round; agents stay mixed). A resumed run keeps the rule it was trained with"""
    min_prob: float = 0.0
    """floor on every allowed block's probability after each WPL update (0: none)"""
    gamma: float = 1.0
    """discount of the collaboration rewards in the returns"""

    # --- routing path
    aec: bool = False
    """route sample by sample through the PettingZoo AEC env (the reference interface, about 2-3x slower) instead of one minibatch per step (the batched path: the same game, rewards and block training; agents act on a minibatch's samples with the policy of its start and learn after it). A resumed run keeps its path"""

    # --- evaluation, run folder, machine
    eval_stochastic: bool = True
    """also evaluate the stochastic (sampled) policy each epoch, besides the greedy one"""
    seed: int = 0
    """seed of the run: network weights, data order, agents"""
    output_dir: str = "runs"
    """folder that receives the run folder"""
    run_name: str | None = None
    """name of the run folder (default: wpl-<dataset>-s<seed>-<timestamp>)"""
    resume: str | None = None
    """continue the run in this folder from its last checkpoint (set --epochs beyond it to train longer); the folder's run kind, config.json and checkpoint are checked before anything is written"""
    checkpoint: bool = True
    """write a checkpoint after every epoch"""
    tensorboard: bool = True
    """log to RUN_DIR/tb with TensorBoard when it is installed (config.json records whether it was)"""
    progress: bool = True
    """draw a progress bar on stderr (terminals only)"""
    device: str | None = None
    """torch device of the routing network (e.g. cuda; none: cpu, or with --resume the run's device)"""
    torch_threads: int | None = 1
    """torch intra-op threads (none: torch's default); 1 keeps results the same on any core count, and more gain little here"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_seed("--seed", self.seed)
        check_block_training(self)
        check_number("--rho", self.rho, low=0, high=1)
        check_number("--policy-lr", self.policy_lr, low=0, low_open=True)
        check_number("--return-average-rate", self.return_average_rate, low=0, high=1, low_open=True)
        check_number("--min-prob", self.min_prob, low=0, high=1, high_open=True)
        check_number("--gamma", self.gamma, low=0, high=1)
        for flag, rate in (
            ("--reinforce-lr", self.reinforce_lr),
            ("--qlearning-lr", self.qlearning_lr),
            ("--qlearning-mlp-lr", self.qlearning_mlp_lr),
        ):
            check_number(flag, rate, low=0, low_open=True)
        check_number("--epsilon", self.epsilon, low=0, high=1)
        if self.router == "single" and self.learner == "wpl":
            raise ValueError(
                "--router single: a tabular WPL router sees only the depth, so one router for all tasks "
                "could not route by task. Use --router per_task (one WPL per task) or dispatched, or a "
                "learner that sees the task (the paper's single-agent approximators): --learner "
                "reinforce-mlp or qlearning-mlp"
            )
        if self.router_update == "minibatch" and self.learner not in ("reinforce-mlp", "qlearning-mlp"):
            raise ValueError(
                f"--router-update minibatch applies to the MLP routers (--learner reinforce-mlp or "
                f"qlearning-mlp), not --learner {self.learner}, whose tabular update is trace by trace"
            )
        if self.router_update == "minibatch" and self.aec:
            raise ValueError(
                "--router-update minibatch needs the batched path: the AEC path (--aec) hands the "
                "routers one sample's trace at a time"
            )
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"--torch-threads must be >= 1 or none, got {self.torch_threads}")


def make_env(args: Args, dataset: MultiTaskDataset) -> Any:
    return routing_env.env(
        dataset=dataset,
        router=args.router,
        routing=args.routing,
        collaboration_reward=args.rho,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        lr_decay_every=args.lr_decay_every,
        lr_decay_factor=args.lr_decay_factor,
        aggregator=args.aggregator,
        conv_layers=args.conv_layers,
        hidden_width=args.hidden_width,
        blocks_per_layer=args.blocks_per_layer,
        device=resolve_device(args.device),
    )


def learner_factory(args: Args) -> AgentFactory:
    """The router learners of ``--learner`` (appendix 7.3: the approximators are MLPs of 64 hidden units)."""
    if args.learner == "reinforce-mlp":
        return functools.partial(
            Reinforce, representation="mlp", lr=args.reinforce_lr, update=args.router_update
        )
    if args.learner == "qlearning-mlp":
        return functools.partial(
            QLearning,
            representation="mlp",
            lr=args.qlearning_mlp_lr,
            epsilon=args.epsilon,
            update=args.router_update,
        )
    if args.learner == "qlearning-table":
        return functools.partial(
            QLearning, representation="table", lr=args.qlearning_lr, epsilon=args.epsilon
        )
    return functools.partial(
        WPL,
        lr=args.policy_lr,
        gamma=args.gamma,
        return_average_rate=args.return_average_rate,
        baseline=args.wpl_baseline,
        weighting=args.wpl_weighting,
        min_prob=args.min_prob,
    )


def make_router(args: Args, env: Any) -> MultiAgentRouter:
    if args.learner == "wpl":
        return MultiAgentRouter.from_env(env, router_factory=learner_factory(args), seed=args.seed)
    # the REINFORCE / Q-learning MLPs (and the dispatcher's) run on the network's device
    return MultiAgentRouter.from_env(
        env,
        router_factory=learner_factory(args),
        dispatcher_factory=functools.partial(Dispatcher, lr=args.reinforce_lr, update=args.router_update),
        seed=args.seed,
        device=resolve_device(args.device),
    )


@contextmanager
def evaluation_rngs(router: Mapping[str, RouterAgent], seed: int, epoch: int) -> Iterator[None]:
    """Sample the stochastic evaluation from generators of its own, so that evaluating does
    not change the random stream training continues with."""
    children = np.random.SeedSequence([seed, epoch, 1]).spawn(len(router))
    saved = {agent_id: learner.rng for agent_id, learner in router.items()}
    try:
        for (_, learner), child in zip(router.items(), children, strict=True):
            learner.rng = np.random.default_rng(child)
        yield
    finally:
        for agent_id, learner in router.items():
            learner.rng = saved[agent_id]


def evaluate_policy(
    env: Any, router: MultiAgentRouter, *, greedy: bool, split: Literal["test", "validation"] = "test"
) -> tuple[float, list[float]]:
    """Route the whole test (or validation) split once (no training); accuracy overall and per task.

    ``env`` is the AEC env or a :class:`routing_env.BatchedRoutingEnv`; either way the
    pass starts with ``{"mode": "eval", "split": split}``, which resets the evaluation counts.
    """
    options = {"mode": "eval", "split": split}
    state = env.aec_env if isinstance(env, routing_env.BatchedRoutingEnv) else env.unwrapped
    size = len(state.dataset.splits()[split])
    if isinstance(env, routing_env.BatchedRoutingEnv):
        evaluate_batched(env, router, greedy=greedy, options=options)
    else:
        evaluate(env, router, num_samples=size, greedy=greedy, options=options)
    result = state.evaluation()
    if not result["complete"] or result["samples"] != size:
        raise RuntimeError(f"the evaluation scored {result['samples']} samples, not the whole {split} split")
    return result["accuracy"], result["accuracy_per_task"]


def pure_fraction(router: MultiAgentRouter) -> float | None:
    """The share of WPL router agents whose policy is pure (:meth:`agents.WPL.is_pure`); None without WPL."""
    learners = [learner for learner in router.values() if isinstance(learner, WPL)]
    return sum(learner.is_pure() for learner in learners) / len(learners) if learners else None


def policy_lr(args: Args, epoch: int) -> float:
    """The WPL policy learning rate of epoch ``epoch`` (0-based) under ``--policy-lr-schedule``."""
    if args.policy_lr_schedule == "constant":
        return args.policy_lr
    # the blocks' schedule (the env's StepDecay), read at this epoch from the initial rate
    return StepDecay(every=args.lr_decay_every, factor=args.lr_decay_factor).lr_at(args.policy_lr, epoch)


def set_policy_lr(router: MultiAgentRouter, args: Args, epoch: int) -> None:
    """Give every WPL learner the policy learning rate of ``epoch`` (a resumed run recomputes it)."""
    rate = policy_lr(args, epoch)
    for learner in router.values():
        if isinstance(learner, WPL):
            learner.lr = rate


def greedy_routes(router: MultiAgentRouter) -> dict[str, list[int]]:
    """The argmax route of each tabular router (block per depth), for the summary."""
    routes = {}
    for agent_id, learner in router.items():
        policy = getattr(learner, "policy", None)
        if isinstance(policy, np.ndarray) and policy.ndim == 2:
            routes[agent_id] = [int(a) for a in policy.argmax(axis=1)]
    return routes


def main(args: Args) -> dict[str, Any]:
    """Train (or resume) a run; return its summary (also written to RUN_DIR/summary.json).

    The run folder is claimed (a new run) or checked in full (``--resume``: the run's
    kind, options and checkpoint) before anything is written, and stays locked while
    the run trains, so that a second process cannot write into it.
    """
    name = args.run_name or f"wpl-{args.dataset}-s{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    kind, legacy = (
        "wpl",
        {
            "aec": True,
            "aggregator": "mean",
            "wpl_weighting": "abdallah-lesser",
            "router_update": "trace",
            "validation_fraction": None,
        },
    )
    if args.resume is not None and run_kind(args.resume) == "paper-agents":
        # a REINFORCE / Q-learning run of the former in-process paper runner: the same env,
        # learners and checkpoint as a --learner run, its learner options nested in config.json
        kind = "paper-agents"
        legacy.update(read_config(args.resume).get("learner_options", {}))
    with open_run(
        args,
        kind=kind,
        name=name,
        checkpoint_keys=CHECKPOINT_KEYS,
        legacy_options=legacy,
    ) as run:
        return train_run(run)


#: Where the paper states each WPL weighting (for messages).
WEIGHTING_SOURCES = {
    "paper": "section 3.1.2 and Algorithm 3 of the paper",
    "abdallah-lesser": "appendix 7.4 of the paper, Abdallah & Lesser's WPL",
}

#: What a checkpoint of this script holds besides ``epoch`` and ``config``.
CHECKPOINT_KEYS = ("wall_time_s", "env", "agents", "rng")


def train_run(run: RunFolder) -> dict[str, Any]:
    """Train the run in ``run`` (claimed or checked by :func:`open_run`) from its checkpoint on."""
    args: Args = run.args
    run_dir, checkpoint = run.path, run.checkpoint
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    seed_everything(args.seed)

    dataset = load_run_dataset(args)
    fingerprint = data_fingerprint(dataset)
    if checkpoint is not None:  # before anything is written: a run resumes on its own data only
        check_data_fingerprint(checkpoint, dataset, run_dir=run_dir)
    aec_env = make_env(args, dataset)
    router = make_router(args, aec_env)
    # the batched path plays the same game on the same engine; checkpoints are the env's
    env: Any = aec_env if args.aec else routing_env.BatchedRoutingEnv(env=aec_env)
    run_epoch = train if args.aec else train_batched
    env_state = aec_env.unwrapped

    start_epoch, wall_before = 0, 0.0
    if checkpoint is not None:  # loaded before any file is written: a failure leaves the run as it was
        env_state.load_state_dict(checkpoint["env"])
        router.load_state_dict(checkpoint["agents"])
        set_global_rng_state(checkpoint["rng"])
        start_epoch, wall_before = int(checkpoint["epoch"]), float(checkpoint["wall_time_s"])
    has_validation = dataset.validation is not None
    metrics = MetricsCSV(
        run_dir / METRICS_FILE,
        metric_columns(dataset.num_tasks, validation=has_validation, purity=args.learner == "wpl"),
        optional=("pure_fraction",),
    )
    writer = tensorboard_writer(run_dir / "tb", enabled=None if args.tensorboard and run.trains else False)
    metrics.check_epochs(start_epoch)  # before anything is written: the rows of the epochs trained
    if run.trains:
        run.write_config(
            extra={
                "dataset_sizes": dataset_sizes(dataset),
                "data_fingerprint": fingerprint,
                "machine": machine_info(),
                "tensorboard_used": writer is not None,
            }
        )
        metrics.keep_epochs(start_epoch)  # rows written after the checkpoint are redone
    if checkpoint is not None:
        print(f"resuming {run_dir} after epoch {start_epoch}", file=sys.stderr)
        if args.learner == "wpl":
            print(
                f"the run keeps the WPL weighting it was trained with: {args.wpl_weighting} "
                f"({WEIGHTING_SOURCES[args.wpl_weighting]})",
                file=sys.stderr,
            )
        if not run.trains:
            print(
                f"the run already has {start_epoch} epochs; pass --epochs N > {start_epoch} to train on "
                "(nothing was changed)",
                file=sys.stderr,
            )
    progress = Progress(enabled=args.progress)
    print(
        f"{dataset.name}: {dataset.num_tasks} tasks, {len(dataset.train)} train / {len(dataset.test)} test samples; "
        f"{len(router)} {args.learner} agents ({args.router}, {args.routing}, {'AEC' if args.aec else 'batched'} path); "
        f"run folder {run_dir}",
        file=sys.stderr,
    )

    session_start = time.perf_counter()
    for epoch in range(start_epoch, args.epochs):
        epoch_start = time.perf_counter()
        label = f"epoch {epoch + 1}/{args.epochs}"

        def show(
            episode: RunStats, total: RunStats, label: str = label, started: float = epoch_start
        ) -> None:
            progress.update(
                label, total.num_samples, len(dataset.train), started, f"train acc {total.accuracy:.3f}"
            )

        # 1. route every training sample once; the env trains the blocks, the agents learn the routes
        set_policy_lr(router, args, epoch)
        stats = run_epoch(
            env, router, num_samples=len(dataset.train), seed=args.seed if epoch == 0 else None, callback=show
        )
        lr = env_state.block_lr  # the rate this epoch trained with (the env decays it lazily)
        progress.clear()
        train_per_task = [stats.accuracy_per_task.get(t, float("nan")) for t in range(dataset.num_tasks)]

        # 2. route the validation split (greedy), then the test split: greedy (argmax) policy,
        # then the sampled policy
        val_acc, val_per_task = None, None
        if has_validation:
            val_acc, val_per_task = evaluate_policy(env, router, greedy=True, split="validation")
        test_acc, test_per_task = evaluate_policy(env, router, greedy=True)
        stoch_acc, stoch_per_task = None, None
        if args.eval_stochastic:
            with evaluation_rngs(router, args.seed, epoch):
                stoch_acc, stoch_per_task = evaluate_policy(env, router, greedy=False)
        env_state.set_mode("train")

        # 3. log and checkpoint
        now = time.perf_counter()
        row = metrics_row(
            epoch=epoch + 1,
            samples=env_state.samples_routed,
            updates=env_state.block_updates,
            lr=lr,
            train_accuracy=stats.accuracy,
            train_accuracy_per_task=train_per_task,
            test_accuracy=test_acc,
            test_accuracy_per_task=test_per_task,
            test_accuracy_stochastic=stoch_acc,
            test_accuracy_stochastic_per_task=stoch_per_task,
            validation_accuracy=val_acc,
            validation_accuracy_per_task=val_per_task,
            pure_fraction=pure_fraction(router),
            epoch_time_s=now - epoch_start,
            wall_time_s=wall_before + now - session_start,
        )
        metrics.append(row)
        if writer is not None:
            for key in (
                "train_accuracy",
                "validation_accuracy",
                "test_accuracy",
                "test_accuracy_stochastic",
                "lr",
            ):
                if row[key] is not None:
                    writer.add_scalar(key, row[key], epoch + 1)
            for t in range(dataset.num_tasks):
                writer.add_scalar(f"test_accuracy_per_task/{t}", test_per_task[t], epoch + 1)
            writer.flush()
        stoch_text = f" (stochastic {100 * stoch_acc:.2f}%)" if stoch_acc is not None else ""
        val_text = f"  validation {100 * val_acc:.2f}%" if val_acc is not None else ""
        print(
            f"{label}: train {100 * stats.accuracy:.2f}%{val_text}  test {100 * test_acc:.2f}%{stoch_text}  "
            f"lr {lr:.2g}  {now - epoch_start:.1f}s",
            flush=True,
        )
        if args.checkpoint:
            save_checkpoint(
                run_dir / CHECKPOINT_FILE,
                {
                    "epoch": epoch + 1,
                    "wall_time_s": row["wall_time_s"],
                    "env": env_state.state_dict(),
                    "agents": router.state_dict(),
                    "rng": global_rng_state(),
                    "config": dataclasses.asdict(args),
                    "data_fingerprint": fingerprint,
                },
            )
    if writer is not None:
        writer.close()

    return summarize(run_dir, metrics, router, dataset, per_task=args.router == "per_task")


def summarize(
    run_dir: Path, metrics: MetricsCSV, router: MultiAgentRouter, dataset: MultiTaskDataset, *, per_task: bool
) -> dict[str, Any]:
    """Print the final per-task table; write and return RUN_DIR/summary.json."""
    rows = metrics.rows()
    if not rows:
        raise RuntimeError(f"{run_dir} has no finished epoch to summarize")
    last = rows[-1]

    def value(key: str) -> float | None:
        return float(last[key]) if last[key] != "" else None

    tasks = range(dataset.num_tasks)
    routes = greedy_routes(router)
    columns: dict[str, list[Any]] = {
        "train": [value(f"train_accuracy_task_{t}") for t in tasks] + [value("train_accuracy")],
        "test (greedy)": [value(f"test_accuracy_task_{t}") for t in tasks] + [value("test_accuracy")],
        "test (stochastic)": [value(f"test_accuracy_stochastic_task_{t}") for t in tasks]
        + [value("test_accuracy_stochastic")],
    }
    if per_task and len(routes) == dataset.num_tasks:  # router_t routes task t
        columns["greedy route"] = [" ".join(map(str, routes[f"router_{t}"])) for t in tasks] + [""]
    if "validation_accuracy" in last:
        columns = {
            "validation": [value(f"validation_accuracy_task_{t}") for t in tasks]
            + [value("validation_accuracy")],
            **columns,
        }
    names = [f"{t}: {dataset.task_names[t]}" for t in tasks] + ["all tasks"]
    print(summary_table(names, columns, title=f"accuracy (%) after epoch {last['epoch']}; {run_dir}"))
    summary = {
        "run_dir": str(run_dir),
        "epochs": int(last["epoch"]),
        "train_accuracy": value("train_accuracy"),
        "test_accuracy": value("test_accuracy"),
        "test_accuracy_stochastic": value("test_accuracy_stochastic"),
        "validation_accuracy": value("validation_accuracy") if "validation_accuracy" in last else None,
        "test_accuracy_per_task": [value(f"test_accuracy_task_{t}") for t in tasks],
        "wall_time_s": value("wall_time_s"),
        "greedy_routes": routes,
    }
    write_summary(run_dir, summary)
    return summary


if __name__ == "__main__":
    run_script(main, Args)
