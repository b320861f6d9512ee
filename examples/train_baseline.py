"""Train a baseline of the paper, or one beyond it, with plain PyTorch (no RL).

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, section 4: the same
SimpleConvNet trunk as the routed network, followed by a static multi-task head
(:mod:`routing_env.baselines`):

- ``task-specific-1-fc``: shared fc layers, a separate last fc layer per task;
- ``task-specific-all-fc``: a separate set of all fc layers per task;
- ``cross-stitch-all-fc``: one column of fc layers per task, cross-stitch units between
  them (Misra et al., 2016);
- ``soft-mixture-all-fc``: the routed network's blocks, mixed by a per-layer softmax.

Beyond the paper:

- ``mmoe-all-fc``: multi-gate mixture of experts (Ma et al., KDD 2018): shared experts at
  each hidden fc layer (``--blocks-per-layer``, default one per task as routing-all-fc),
  mixed by an input-conditioned softmax gate per task, and a classifier per task;
- ``gumbel-router-all-fc``: routing-all-fc's blocks with a differentiable router: per-task
  logits per depth, straight-through Gumbel-softmax in training with the temperature
  decaying exponentially from ``--gumbel-tau-start`` at the first optimizer step to
  ``--gumbel-tau-end`` at the last one of the run's epochs (a resume with more epochs than
  the run was started for recomputes it on the longer schedule: it rises to that
  schedule's value at the step reached, then decays to ``--gumbel-tau-end`` again),
  greedy routes (argmax) in evaluation, printed at the end and kept in summary.json.
  ``--gumbel-logits-lr`` gives the logits a learning rate of their own (as the RL routers
  have theirs): at the blocks' 1e-3 they barely move in a few epochs on digits-MTL.

The data, minibatches, optimizer settings and learning-rate schedule match
``examples/train_wpl.py`` option for option (same defaults), so both get the same
training budget, and the run folder has the same layout and ``metrics.csv`` format
(``test_accuracy_stochastic`` is empty: a baseline has no policy). ``--resume`` works as
in ``train_wpl.py``: the run's kind, options and checkpoint are checked before anything
is written (a ``train_wpl.py`` run is refused with the command that resumes it),
``config.json`` never records fewer epochs than it did, and the run folder is locked
while a run trains, so a second run with the same ``--run-name`` is refused.

    python examples/train_baseline.py --model task-specific-all-fc
    python examples/train_baseline.py --model cross-stitch-all-fc --dataset cifar-mtl --data-root ~/data
    python examples/train_baseline.py --model gumbel-router-all-fc --gumbel-tau-start 1.0 --gumbel-tau-end 0.1
    python examples/train_baseline.py --resume runs/task-specific-1-fc-digits-mtl-s0-20250101-120000 --epochs 40
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from routing_env.baselines import (
    BaselineModel,
    DeviceSplit,
    EpochStats,
    GumbelRouterFC,
    build_baseline,
    evaluate_model,
    model_optimizer,
    train_epoch,
)
from routing_env.datasets import MultiTaskDataset
from routing_env.experiments import (
    CHECKPOINT_FILE,
    DEFAULT_EPOCHS,
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
    resolve_device,
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
    """Train a multi-task baseline without an RL router (task-specific / cross-stitch / soft-mixture / MMoE / Gumbel router)."""

    model: Literal[
        "task-specific-1-fc",
        "task-specific-all-fc",
        "cross-stitch-all-fc",
        "soft-mixture-all-fc",
        "mmoe-all-fc",
        "gumbel-router-all-fc",
    ] = "task-specific-1-fc"
    """baseline architecture after the shared SimpleConvNet trunk (paper section 4; mmoe-all-fc and gumbel-router-all-fc: beyond the paper)"""

    # --- data: the fields of DatasetOptions (--dataset, --data-root, ...) come first
    validation_fraction: float | None = 0.1
    """share of the training images set aside as a validation split (stratified per task and class, drawn with --data-seed), in (0, 0.5]; its accuracy is reported each epoch, and hyper-parameters are chosen on it, never on the test split (none: no validation split)"""

    # --- budget and training (the same defaults as examples/train_wpl.py)
    epochs: int | None = None
    """training epochs, one pass over the training samples each (none: 20; with --resume: the run's own). With --resume it is the epoch to train up to: config.json keeps the larger of it and the run's recorded epochs, and a resume that trains nothing changes no file"""
    batch_size: int = 64
    """samples per optimizer step"""
    optimizer: Literal["sgd", "adam"] = "adam"
    """optimizer (the paper: sgd)"""
    lr: float = 1e-3
    """learning rate (the paper: 1e-2 with sgd)"""
    momentum: float = 0.0
    """sgd momentum"""
    weight_decay: float = 0.0
    """L2 weight decay"""
    lr_decay_every: int | None = 10
    """multiply the learning rate by --lr-decay-factor every this many epochs (none: constant; the paper: 20)"""
    lr_decay_factor: float = 0.1
    """factor of each learning-rate decay (the paper: divide by 10 every 20 epochs)"""

    # --- network
    conv_layers: int | None = None
    """conv layers of the SimpleConvNet trunk (none: as the routing env picks: 4, fewer for images under 16x16)"""
    hidden_width: int = 128
    """units of the hidden fc layers"""
    cross_stitch_self_weight: float = 0.9
    """initial diagonal of the cross-stitch units (off-diagonal: the rest, spread evenly)"""
    blocks_per_layer: int | None = None
    """experts (mmoe-all-fc) or blocks (gumbel-router-all-fc) per routed fc layer (none: one per task, as routing-all-fc); the other models have one column per task"""
    gumbel_tau_start: float = 1.0
    """gumbel-router-all-fc: Gumbel-softmax temperature of the first optimizer step"""
    gumbel_tau_end: float = 0.1
    """gumbel-router-all-fc: temperature of the run's last optimizer step (exponential decay in between)"""
    gumbel_logits_lr: float | None = None
    """gumbel-router-all-fc: learning rate of the route logits, a second parameter group of the same optimizer, decayed with the blocks' (none: 0.1; at the blocks' Adam 1e-3 the logits moved < 0.1 in 3 digits-MTL epochs and the router stayed at the 90% majority rate, at 0.1 it reached 99.19% on digits-MTL after 3 epochs and 99.35% on MNIST-MTL after 1)"""

    # --- run folder, machine
    seed: int = 0
    """seed of the run: initial weights and data order"""
    output_dir: str = "runs"
    """folder that receives the run folder"""
    run_name: str | None = None
    """name of the run folder (default: <model>-<dataset>-s<seed>-<timestamp>)"""
    resume: str | None = None
    """continue the run in this folder from its last checkpoint (set --epochs beyond it to train longer); the folder's run kind, config.json and checkpoint are checked before anything is written"""
    checkpoint: bool = True
    """write a checkpoint after every epoch"""
    tensorboard: bool = True
    """log to RUN_DIR/tb with TensorBoard when it is installed (config.json records whether it was)"""
    progress: bool = True
    """draw a progress bar on stderr (terminals only)"""
    device: str | None = None
    """torch device (e.g. cuda; none: cpu, or with --resume the run's device)"""
    torch_threads: int | None = 1
    """torch intra-op threads (none: torch's default); 1 keeps results the same on any core count, and more gain little here"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_seed("--seed", self.seed)
        check_block_training(self)
        check_number("--cross-stitch-self-weight", self.cross_stitch_self_weight, low=0, high=1)
        check_number("--gumbel-tau-start", self.gumbel_tau_start, low=0, low_open=True)
        check_number("--gumbel-tau-end", self.gumbel_tau_end, low=0, low_open=True)
        check_number("--gumbel-logits-lr", self.gumbel_logits_lr, low=0, low_open=True)
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"--torch-threads must be >= 1 or none, got {self.torch_threads}")
        if self.blocks_per_layer is not None:
            if self.blocks_per_layer < 1:
                raise ValueError(f"--blocks-per-layer must be >= 1 or none, got {self.blocks_per_layer}")
            if self.model not in ("mmoe-all-fc", "gumbel-router-all-fc"):
                raise ValueError(
                    f"--blocks-per-layer applies to mmoe-all-fc and gumbel-router-all-fc; {self.model} "
                    "has one column per task"
                )
        if self.gumbel_logits_lr is not None:
            if self.model != "gumbel-router-all-fc":
                raise ValueError(f"--gumbel-logits-lr applies to gumbel-router-all-fc, not {self.model}")
            if not self.gumbel_logits_lr > 0:
                raise ValueError(f"--gumbel-logits-lr must be > 0 or none, got {self.gumbel_logits_lr}")
        if not (self.gumbel_tau_start > 0 and self.gumbel_tau_end > 0):
            raise ValueError(
                f"--gumbel-tau-start and --gumbel-tau-end must be > 0, got {self.gumbel_tau_start}, "
                f"{self.gumbel_tau_end}"
            )


def make_model(args: Args, dataset: MultiTaskDataset, *, epochs: int | None = None) -> BaselineModel:
    """The run's model on its device.

    ``epochs`` (default: ``args.epochs``, or :data:`DEFAULT_EPOCHS` if that is None) sets
    the budget the Gumbel router's temperature decays over: that many epochs of optimizer
    steps, counted as :func:`train_epoch` takes them.
    """
    steps_per_epoch = -(-len(dataset.train) // args.batch_size)
    return build_baseline(
        args.model,
        dataset=dataset,
        conv_layers=args.conv_layers,
        hidden_width=args.hidden_width,
        cross_stitch_self_weight=args.cross_stitch_self_weight,
        seed=args.seed,
        blocks_per_layer=args.blocks_per_layer,
        gumbel_tau_start=args.gumbel_tau_start,
        gumbel_tau_end=args.gumbel_tau_end,
        gumbel_anneal_steps=int(epochs or args.epochs or DEFAULT_EPOCHS) * steps_per_epoch,
    ).to(resolve_device(args.device))


#: The route logits' learning rate of gumbel-router-all-fc when --gumbel-logits-lr is none.
GUMBEL_LOGITS_LR = 0.1


def gumbel_logits_lr(args: Args) -> float | None:
    """The learning rate of the Gumbel router's logits (None: one parameter group at --lr)."""
    if args.gumbel_logits_lr is not None:
        return args.gumbel_logits_lr
    return GUMBEL_LOGITS_LR if args.model == "gumbel-router-all-fc" else None


def main(args: Args) -> dict[str, Any]:
    """Train (or resume) a baseline run; return its summary (also in RUN_DIR/summary.json).

    The run folder is claimed (a new run) or checked in full (``--resume``: the run's
    kind, options and checkpoint) before anything is written, and stays locked while
    the run trains, so that a second process cannot write into it.
    """
    name = args.run_name or f"{args.model}-{args.dataset}-s{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    with open_run(
        args,
        kind="baseline",
        name=name,
        checkpoint_keys=CHECKPOINT_KEYS,
        legacy_options={"validation_fraction": None},
    ) as run:
        return train_run(run)


#: What a checkpoint of this script holds besides ``epoch`` and ``config``.
CHECKPOINT_KEYS = ("wall_time_s", "samples", "updates", "model", "optimizer", "data_rng", "rng")


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
    # the temperature decays over the epochs the run is trained for (config.json's, or more)
    model = make_model(args, dataset, epochs=run.recorded_epochs)
    optimizer = model_optimizer(
        model,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        routing_lr=gumbel_logits_lr(args),
    )
    lr_schedule = StepDecay(every=args.lr_decay_every, factor=args.lr_decay_factor)
    # the data order: its own generator, drawn from the run seed
    data_rng = np.random.default_rng(np.random.SeedSequence([args.seed, 2]))

    start_epoch, wall_before, samples, updates = 0, 0.0, 0, 0
    if checkpoint is not None:  # loaded before any file is written: a failure leaves the run as it was
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        data_rng.bit_generator.state = checkpoint["data_rng"]
        set_global_rng_state(checkpoint["rng"])
        start_epoch, wall_before = int(checkpoint["epoch"]), float(checkpoint["wall_time_s"])
        samples, updates = int(checkpoint["samples"]), int(checkpoint["updates"])
    metrics = MetricsCSV(
        run_dir / METRICS_FILE, metric_columns(dataset.num_tasks, validation=dataset.validation is not None)
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
        if not run.trains:
            print(
                f"the run already has {start_epoch} epochs; pass --epochs N > {start_epoch} to train on "
                "(nothing was changed)",
                file=sys.stderr,
            )
    progress = Progress(enabled=args.progress)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"{dataset.name}: {dataset.num_tasks} tasks, {len(dataset.train)} train / {len(dataset.test)} test samples; "
        f"{args.model} ({n_params:,} parameters); run folder {run_dir}",
        file=sys.stderr,
    )

    # both splits held on the model's device once: no minibatch is copied from the host
    train_data = DeviceSplit(dataset=dataset, split=dataset.train, device=args.device)
    test_data = DeviceSplit(dataset=dataset, split=dataset.test, device=args.device)
    validation_data = (
        None
        if dataset.validation is None
        else DeviceSplit(dataset=dataset, split=dataset.validation, device=args.device)
    )
    session_start = time.perf_counter()
    for epoch in range(start_epoch, args.epochs):
        epoch_start = time.perf_counter()
        label = f"epoch {epoch + 1}/{args.epochs}"
        drawn = [0.0]  # when the bar was last drawn

        def show(
            stats: EpochStats, label: str = label, started: float = epoch_start, drawn: list[float] = drawn
        ) -> None:
            # the running accuracy is read from the device (a wait there): only when the bar is redrawn
            now = time.perf_counter()
            if now - drawn[0] < progress.min_interval_s:
                return
            drawn[0] = now
            progress.update(
                label,
                stats.samples,
                len(dataset.train),
                started,
                f"train acc {stats.accuracy:.3f}",
                force=True,
            )

        lr = optimizer.param_groups[0]["lr"]
        stats = train_epoch(
            model,
            optimizer,
            dataset,
            batch_size=args.batch_size,
            rng=data_rng,
            device=args.device,  # resolved at the start of main()
            callback=show if progress.enabled else None,
            data=train_data,
        )
        lr_schedule.step(optimizer, epoch=epoch + 1)
        progress.clear()
        samples += stats.samples
        updates += stats.updates
        validation = (
            None
            if validation_data is None
            else evaluate_model(model, dataset, device=args.device, data=validation_data)
        )
        test = evaluate_model(model, dataset, device=args.device, data=test_data)

        now = time.perf_counter()
        row = metrics_row(
            epoch=epoch + 1,
            samples=samples,
            updates=updates,
            lr=lr,
            train_accuracy=stats.accuracy,
            train_accuracy_per_task=stats.accuracy_per_task,
            test_accuracy=test.accuracy,
            test_accuracy_per_task=test.accuracy_per_task,
            validation_accuracy=None if validation is None else validation.accuracy,
            validation_accuracy_per_task=None if validation is None else validation.accuracy_per_task,
            epoch_time_s=now - epoch_start,
            wall_time_s=wall_before + now - session_start,
        )
        metrics.append(row)
        if writer is not None:
            for key in ("train_accuracy", "validation_accuracy", "test_accuracy", "lr"):
                if row[key] is not None:
                    writer.add_scalar(key, row[key], epoch + 1)
            for t in range(dataset.num_tasks):
                writer.add_scalar(f"test_accuracy_per_task/{t}", test.accuracy_per_task[t], epoch + 1)
            writer.flush()
        val_text = "" if validation is None else f"  validation {100 * validation.accuracy:.2f}%"
        print(
            f"{label}: train {100 * stats.accuracy:.2f}%{val_text}  test {100 * test.accuracy:.2f}%  "
            f"lr {lr:.2g}  {now - epoch_start:.1f}s",
            flush=True,
        )
        if args.checkpoint:
            save_checkpoint(
                run_dir / CHECKPOINT_FILE,
                {
                    "epoch": epoch + 1,
                    "wall_time_s": row["wall_time_s"],
                    "samples": samples,
                    "updates": updates,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "data_rng": data_rng.bit_generator.state,
                    "rng": global_rng_state(),
                    "config": dataclasses.asdict(args),
                    "data_fingerprint": fingerprint,
                },
            )
    if writer is not None:
        writer.close()
    routes = model.head.routes().tolist() if isinstance(model.head, GumbelRouterFC) else None
    return summarize(run_dir, metrics, dataset, args.model, routes=routes)


def summarize(
    run_dir: Path,
    metrics: MetricsCSV,
    dataset: MultiTaskDataset,
    model: str,
    *,
    routes: list[list[int]] | None = None,
) -> dict[str, Any]:
    """Print the final per-task table; write and return RUN_DIR/summary.json.

    ``routes``: a router's greedy routes (the block each task picks at each depth),
    printed and kept in the summary.
    """
    rows = metrics.rows()
    if not rows:
        raise RuntimeError(f"{run_dir} has no finished epoch to summarize")
    last = rows[-1]
    tasks = range(dataset.num_tasks)
    train_acc = [float(last[f"train_accuracy_task_{t}"]) for t in tasks] + [float(last["train_accuracy"])]
    test_acc = [float(last[f"test_accuracy_task_{t}"]) for t in tasks] + [float(last["test_accuracy"])]
    names = [f"{t}: {dataset.task_names[t]}" for t in tasks] + ["all tasks"]
    columns = {"train": train_acc, "test": test_acc}
    val_acc = None
    if last.get("validation_accuracy"):
        val_acc = [float(last[f"validation_accuracy_task_{t}"]) for t in tasks] + [
            float(last["validation_accuracy"])
        ]
        columns = {"train": train_acc, "validation": val_acc, "test": test_acc}
    print(
        summary_table(
            names,
            columns,
            title=f"{model}: accuracy (%) after epoch {last['epoch']}; {run_dir}",
        )
    )
    summary = {
        "run_dir": str(run_dir),
        "model": model,
        "epochs": int(last["epoch"]),
        "train_accuracy": train_acc[-1],
        "validation_accuracy": None if val_acc is None else val_acc[-1],
        "test_accuracy": test_acc[-1],
        "test_accuracy_per_task": test_acc[:-1],
        "wall_time_s": float(last["wall_time_s"]),
    }
    if routes is not None:
        print("greedy routes (block per depth): " + "; ".join(f"{t}: {r}" for t, r in enumerate(routes)))
        summary["routes"] = routes
    write_summary(run_dir, summary)
    return summary


if __name__ == "__main__":
    run_script(main, Args)
