"""Experiment tooling of the example scripts: command line, run folders, checkpoints, metrics.

Nothing here trains anything, and the environment does not import it:
``examples/train_wpl.py`` and ``examples/train_baseline.py`` hold the training loops and
import these pieces, one module per concern:

- :mod:`~routing_env.experiments.cli`: :func:`parse_args` (a tyro command line from a
  dataclass, each field's docstring its ``--help``), :class:`DatasetOptions` and
  :func:`load_run_dataset`.
- :mod:`~routing_env.experiments.runs`: :func:`open_run` (a new run's folder claimed
  atomically, or a run to resume checked in full), :class:`RunLock`, ``config.json``.
- :mod:`~routing_env.experiments.checkpoints`: :func:`save_checkpoint` /
  :func:`load_checkpoint` (atomic, ``weights_only=True``) and the global generators' state.
- :mod:`~routing_env.experiments.metrics`: :class:`MetricsCSV`, :func:`metrics_row`,
  :func:`summary_table`, :func:`tensorboard_writer`.
- :mod:`~routing_env.experiments.progress`: :class:`Progress` (tqdm).
- :mod:`~routing_env.experiments.devices`: :func:`resolve_device`, :func:`machine_info`.

The per-task subsets of quick runs are :func:`routing_env.datasets.subsample`.
"""

from routing_env.datasets.registry import DatasetName
from routing_env.datasets.subsample import subsample
from routing_env.experiments._files import DamagedFileError
from routing_env.experiments.checkpoints import (
    CHECKPOINT_FILE,
    global_rng_state,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    set_global_rng_state,
)
from routing_env.experiments.cli import (
    DataMismatchError,
    DatasetOptions,
    check_block_training,
    check_data_fingerprint,
    check_number,
    check_seed,
    data_fingerprint,
    dataset_sizes,
    load_run_dataset,
    parse_args,
    parse_per_class,
    run_script,
    user_error_message,
)
from routing_env.experiments.devices import machine_info, resolve_device
from routing_env.experiments.metrics import (
    METRICS_FILE,
    MetricsCSV,
    drop_a_cut_last_row,
    metric_columns,
    metrics_row,
    summary_table,
    tensorboard_writer,
    write_rows,
)
from routing_env.experiments.progress import Progress
from routing_env.experiments.runs import (
    CONFIG_FILE,
    DEFAULT_EPOCHS,
    LOCK_FILE,
    RENAMED_VALUES,
    RESUMABLE_OPTIONS,
    RUN_KINDS,
    SUMMARY_FILE,
    RunFolder,
    RunInUseError,
    RunLock,
    check_checkpoint,
    check_run_kind,
    claim_run_dir,
    create_run_dir,
    open_run,
    read_config,
    resolve_run_args,
    resume_args,
    run_kind,
    with_current_names,
    write_config,
    write_summary,
)

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "DEFAULT_EPOCHS",
    "LOCK_FILE",
    "METRICS_FILE",
    "RENAMED_VALUES",
    "RESUMABLE_OPTIONS",
    "RUN_KINDS",
    "SUMMARY_FILE",
    "DamagedFileError",
    "DataMismatchError",
    "DatasetName",
    "DatasetOptions",
    "MetricsCSV",
    "Progress",
    "RunFolder",
    "RunInUseError",
    "RunLock",
    "check_block_training",
    "check_checkpoint",
    "check_data_fingerprint",
    "check_number",
    "check_seed",
    "check_run_kind",
    "claim_run_dir",
    "create_run_dir",
    "data_fingerprint",
    "drop_a_cut_last_row",
    "dataset_sizes",
    "global_rng_state",
    "load_checkpoint",
    "load_run_dataset",
    "machine_info",
    "metric_columns",
    "metrics_row",
    "open_run",
    "parse_args",
    "parse_per_class",
    "read_config",
    "resolve_device",
    "resolve_run_args",
    "resume_args",
    "run_kind",
    "run_script",
    "save_checkpoint",
    "seed_everything",
    "set_global_rng_state",
    "subsample",
    "summary_table",
    "tensorboard_writer",
    "user_error_message",
    "with_current_names",
    "write_config",
    "write_rows",
    "write_summary",
]
