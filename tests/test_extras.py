"""A missing optional dependency gives an error naming the extra that installs it (issue 16).

Each library is made missing with ``sys.modules[name] = None`` (its import then raises
``ImportError``); the integrations' own cases are in tests/integrations/test_wrappers.py.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

import routing_env
from agents import MultiAgentRouter, train
from routing_env.datasets import digits_mtl
from routing_env.experiments.metrics import tensorboard_writer
from routing_env.extras import import_extra, install_command, missing_extra
from routing_env.recording import PolicyRecorder, load_recording

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_script(relative: str, name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def test_the_message_names_the_extra_and_the_package():
    err = missing_extra(feature="writing Parquet", extra="parquet", package="pyarrow", instead="use CSV")
    assert isinstance(err, ImportError)
    assert str(err) == (
        "writing Parquet needs pyarrow, which is not installed; "
        "install the extra with: pip install 'routing-env[parquet]' (or use CSV)"
    )
    assert install_command("plots") == "pip install 'routing-env[plots]'"


def test_import_extra_returns_the_module_or_names_the_extra(monkeypatch):
    assert import_extra("json", feature="f", extra="x", package="p") is sys.modules["json"]
    monkeypatch.setitem(sys.modules, "some_optional_lib", None)
    with pytest.raises(
        ImportError, match=r"^f needs p, which is not installed; .*'routing-env\[x\]'$"
    ) as err:
        import_extra("some_optional_lib", feature="f", extra="x", package="p")
    assert isinstance(err.value.__cause__, ImportError)  # the original error is kept
    # a missing parent package counts even when the submodule was imported before
    monkeypatch.setitem(sys.modules, "json", None)
    with pytest.raises(ImportError, match="f needs p"):
        import_extra("json.decoder", feature="f", extra="x", package="p")


def test_parquet_without_pyarrow_names_the_parquet_extra(digits, tmp_path, monkeypatch):
    env = routing_env.env(dataset=digits, batch_size=16, hidden_width=32)
    router = MultiAgentRouter.from_env(env, seed=0)
    recorder = PolicyRecorder(env, policies=router, max_rows=None)
    train(recorder, router, num_samples=5, seed=0)
    for name in ("pyarrow", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(
        ImportError, match=r"pip install 'routing-env\[parquet\]' \(or export to a \.csv path\)"
    ):
        recorder.export(tmp_path / "rec.parquet")
    (tmp_path / "other.parquet").write_bytes(b"PAR1")
    with pytest.raises(ImportError, match=r"reading Parquet needs pyarrow.*routing-env\[parquet\]"):
        load_recording(tmp_path / "other.parquet")
    assert load_recording(recorder.export(tmp_path / "rec.csv")).num_actions == env.unwrapped.num_actions


def test_digits_without_scikit_learn_says_it_is_a_dependency(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(
        ImportError, match=r"scikit-learn, a dependency of routing-env.*pip install routing-env"
    ):
        digits_mtl()


def test_tensorboard_missing_is_a_note_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert tensorboard_writer(tmp_path) is None
    assert "pip install 'routing-env[tensorboard]'" in capsys.readouterr().err


def scripts_using_matplotlib() -> list[str]:
    """Every example script outside examples/paper/ that imports matplotlib (directly or
    through ``import_extra``)."""
    pattern = re.compile(r"^\s*(import matplotlib|from matplotlib|.*import_extra\(\s*\"matplotlib)", re.M)
    return [
        path.relative_to(EXAMPLES).as_posix()
        for path in sorted(EXAMPLES.glob("**/*.py"))
        if not path.relative_to(EXAMPLES).as_posix().startswith("paper/") and pattern.search(path.read_text())
    ]


def test_the_figure_scripts_are_found():
    # the discovery below must not come back empty (its test would then run nothing)
    assert {"figures/fig12_rho_sweep.py", "figures/purity_sweep.py"} <= set(scripts_using_matplotlib())


@pytest.mark.parametrize("relative", scripts_using_matplotlib())
def test_a_script_without_matplotlib_names_the_plots_extra(relative, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)
    name = relative.replace("/", "_").removesuffix(".py")
    with pytest.raises(ImportError, match=rf"examples/{relative} needs matplotlib.*routing-env\[plots\]"):
        load_script(relative, f"extras_test_{name}")


@pytest.mark.parametrize(
    "script, missing, extra",
    [
        ("tianshou_routers", "tianshou.data", "tianshou"),
        ("torchrl_routers", "torchrl.collectors", "torchrl"),
        ("rllib_routers", "ray", "rllib"),
        ("sweep", "ray", "tune"),
    ],
)
def test_an_integration_example_without_its_library_exits_naming_the_extra(
    script, missing, extra, monkeypatch
):
    module = load_script(f"{script}.py", f"extras_test_{script}")
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(SystemExit) as exit_:
        module.main(module.Args())
    assert str(exit_.value).startswith(f"examples/{script}.py needs ")
    assert f"pip install 'routing-env[{extra}]'" in str(exit_.value)
