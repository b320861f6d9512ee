"""examples/paper/epoch_table.py: a figure's accuracy by epoch over seeds, and the docs' tables it wrote."""

from __future__ import annotations

import csv
import math
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from .example_scripts import load_paper

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "examples" / "paper"
RESULTS_MD = ROOT / "docs" / "results.md"


@pytest.fixture(scope="module", autouse=True)
def _paper_on_path() -> Iterator[None]:
    sys.path.insert(0, str(PAPER))  # the scripts import paper_runs from their own folder
    yield
    sys.path.remove(str(PAPER))


def load() -> ModuleType:
    return load_paper("epoch_table")


#: accuracy (fraction) by (model, seed, epoch): counts out of 1,000 so every value is exact
ACC = {
    ("routing-all-fc", 0, 1): 0.900, ("routing-all-fc", 0, 2): 0.950,
    ("routing-all-fc", 1, 1): 0.900, ("routing-all-fc", 1, 2): 0.940,
    ("routing-all-fc", 2, 1): 0.910, ("routing-all-fc", 2, 2): 0.960,
    ("cross-stitch-all-fc", 0, 1): 0.930, ("cross-stitch-all-fc", 0, 2): 0.970,
    ("cross-stitch-all-fc", 1, 1): 0.920, ("cross-stitch-all-fc", 1, 2): 0.960,
    ("cross-stitch-all-fc", 2, 1): 0.940, ("cross-stitch-all-fc", 2, 2): 0.975,
    ("soft-mixture-all-fc", 0, 1): 0.900, ("soft-mixture-all-fc", 0, 2): 0.930,
    ("soft-mixture-all-fc", 1, 1): 0.900, ("soft-mixture-all-fc", 1, 2): 0.900,
}  # fmt: skip


def write_figure_csv(path: Path) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["model", "seed", "epoch", "test_accuracy"])
        writer.writeheader()
        for (model, seed, epoch), acc in ACC.items():
            writer.writerow({"model": model, "seed": seed, "epoch": epoch, "test_accuracy": acc})
    return path


def test_table_holds_mean_std_and_paired_differences(tmp_path):
    et = load()
    table = et.main(et.Args(csv=str(write_figure_csv(tmp_path / "fig.csv")), per_seed="routing-all-fc"))
    lines = table.splitlines()
    assert lines[0] == (
        "| model | epoch 1 | epoch 2 | routing-all-fc minus it at epoch 2 (per seed) | 95% interval |"
    )
    # routing at epoch 1: 90, 90, 91 -> mean 90.33, std 0.58; epoch 2: 95, 94, 96 -> 95.00 +- 1.00
    assert lines[2] == "| routing-all-fc | 90.33 +- 0.58 | **95.00 +- 1.00** | | |"
    # routing minus cross-stitch at epoch 2: -2, -2, -1.5; mean -1.83, std 0.29, t(2) = 4.30
    half = 4.302652729911275 * math.sqrt(1 / 12) / math.sqrt(3)
    assert lines[3] == (
        "| cross-stitch-all-fc | 93.00 +- 1.00 | **96.83 +- 0.76** | -1.83 (-2.00, -2.00, -1.50) | "
        f"[{-11 / 6 - half:+.2f}, {-11 / 6 + half:+.2f}] |"
    )
    # two seeds only: no interval is called, the note says so
    assert lines[4] == (
        "| soft-mixture-all-fc | 90.00 +- 0.00 | **91.50 +- 2.12** | +3.00 (+2.00, +4.00) | "
        "too few seeds to call (n=2 < 3) |"
    )
    assert lines[6:] == [
        "| model | seed | epoch 1 | epoch 2 |",
        "|---|---|---|---|",
        "| routing-all-fc | 0 | 90.00 | 95.00 |",
        "| routing-all-fc | 1 | 90.00 | 94.00 |",
        "| routing-all-fc | 2 | 91.00 | 96.00 |",
    ]


def test_epochs_and_models_select_columns_and_rows(tmp_path):
    et = load()
    path = str(write_figure_csv(tmp_path / "fig.csv"))
    table = et.main(et.Args(csv=path, epochs="1", models="cross-stitch-all-fc,routing-all-fc"))
    lines = table.splitlines()
    assert lines[0].startswith("| model | epoch 1 | routing-all-fc minus it at epoch 1 ")
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| cross-stitch-all-fc", "| routing-all-fc"]
    assert "-2.67 (-3.00, -2.00, -3.00)" in lines[2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"models": "mmoe-all-fc"}, "model 'mmoe-all-fc' is not in the file"),
        ({"per_seed": "gumbel"}, "model 'gumbel' is not in the file"),
        ({"reference": "routing"}, "model 'routing' is not in the file"),
        ({"epochs": "3"}, r"epoch\(s\) \[3\] not in the file; it has epochs \[1, 2\]"),
    ],
)
def test_what_the_file_lacks_is_named(tmp_path, kwargs, message):
    et = load()
    with pytest.raises(ValueError, match=message):
        et.main(et.Args(csv=str(write_figure_csv(tmp_path / "fig.csv")), **kwargs))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": "0"}, "epochs start at 1"),
        ({"epochs": "1,x"}, "expected comma-separated ints"),
        ({"epochs": "2,2"}, "repeated"),
        ({"output": "x.md"}, "--output needs --block"),
        ({"output": "x.md", "block": "a b"}, "a block name is"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    et = load()
    with pytest.raises(ValueError, match=message):
        et.Args(csv="fig.csv", **kwargs)


def test_output_replaces_its_block_with_the_command_that_wrote_it(tmp_path):
    et = load()
    path = str(write_figure_csv(tmp_path / "fig.csv"))
    md = tmp_path / "results.md"
    md.write_text("# R\n\n<!-- t:begin -->\nold\n<!-- t:end -->\n\nprose after\n")
    args = et.Args(csv=path, epochs="2", output=str(md), block="t")
    table = et.main(args)
    text = md.read_text()
    assert (
        text == f"# R\n\n<!-- t:begin -->\n<!-- {args.command()} -->\n{table}<!-- t:end -->\n\nprose after\n"
    )
    assert f"--csv {path} --epochs 2 --output {md} --block t" in args.command()
    et.main(args)  # regenerating changes nothing
    assert md.read_text() == text
    missing = tmp_path / "other.md"
    missing.write_text("no block here\n")
    with pytest.raises(ValueError, match="no '<!-- t:begin -->'"):
        et.main(et.Args(csv=path, output=str(missing), block="t"))


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_the_command_line_prints_the_table(tmp_path):
    path = write_figure_csv(tmp_path / "fig.csv")
    done = subprocess.run(
        [sys.executable, str(PAPER / "epoch_table.py"), "--csv", str(path), "--epochs", "2"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert done.stdout.splitlines()[2] == "| routing-all-fc | **95.00 +- 1.00** | | |"


BLOCK = re.compile(
    r"<!-- (?P<name>[\w-]+):begin -->\n<!-- (?P<command>python examples/paper/epoch_table\.py [^\n]*) -->\n"
    r"(?P<body>.*?)<!-- (?P=name):end -->",
    re.S,
)


def test_docs_tables_are_what_their_commands_print_from_the_committed_csvs():
    """Every table epoch_table.py wrote into docs/results.md regenerates unchanged."""
    et = load()
    blocks = list(BLOCK.finditer(RESULTS_MD.read_text(encoding="utf-8")))
    assert len(blocks) >= 2, "docs/results.md should hold the Fashion-MTL Fig. 8 tables as epoch_table blocks"
    for block in blocks:
        argv = shlex.split(block["command"])[2:]
        args = et.parse_args(et.Args, argv)
        assert args.output == "docs/results.md" and args.block == block["name"]
        args.csv = str(ROOT / args.csv)
        args.output = None
        assert et.main(args) == block["body"], f"block {block['name']} differs from what its command prints"
