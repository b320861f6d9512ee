"""examples/paper/stability.py: the largest epoch-to-epoch drop per model, and the spread over seeds."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .example_scripts import load_paper

PAPER = Path(__file__).resolve().parents[2] / "examples" / "paper"


@pytest.fixture(scope="module", autouse=True)
def _paper_on_path() -> Iterator[None]:
    sys.path.insert(0, str(PAPER))
    yield
    sys.path.remove(str(PAPER))


#: test accuracy (fraction) by model and seed, epochs 1..4; validation and purity for routing
TEST = {
    ("routing-all-fc", 0): [0.90, 0.95, 0.93, 0.96],  # falls 2 points into epoch 3
    ("routing-all-fc", 1): [0.90, 0.94, 0.945, 0.94],  # falls 0.5 into epoch 4
    ("task-specific-1-fc", 0): [0.92, 0.95, 0.96, 0.97],  # never falls
    ("task-specific-1-fc", 1): [0.92, 0.95, 0.96, 0.965],
}


def write(path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(
            fh, fieldnames=["model", "seed", "epoch", "test_accuracy", "validation_accuracy", "pure_fraction"]
        )
        writer.writeheader()
        for (model, seed), values in TEST.items():
            for epoch, value in enumerate(values, start=1):
                routing = model == "routing-all-fc"
                writer.writerow(
                    {
                        "model": model,
                        "seed": seed,
                        "epoch": epoch,
                        "test_accuracy": value,
                        "validation_accuracy": value - 0.01 if routing else "",
                        "pure_fraction": (0.5 if epoch == 3 else 1.0) if routing else "",
                    }
                )


def test_the_largest_drop_and_the_spread(tmp_path: Path) -> None:
    stability = load_paper("stability")
    write(tmp_path / "fig.csv")
    rows = {
        r["model"]: r for r in stability.stability_rows(stability.read_csv(tmp_path / "fig.csv"), after=2)
    }
    routing, baseline = rows["routing-all-fc"], rows["task-specific-1-fc"]
    assert routing["largest_drop"] == pytest.approx(2.0)  # seed 0, epoch 2 -> 3
    assert routing["mean_largest_drop"] == pytest.approx((2.0 + 0.5) / 2)
    assert routing["validation_largest_drop"] == pytest.approx(2.0)
    assert routing["final_range"] == pytest.approx(2.0) and routing["lowest_pure_pct"] == pytest.approx(50.0)
    assert baseline["largest_drop"] == pytest.approx(-0.5)  # its worst step is a rise of 0.5
    assert baseline["validation_largest_drop"] is None and baseline["lowest_pure_pct"] is None
    # after epoch 3 only the drop into epoch 4 counts
    late = {
        r["model"]: r for r in stability.stability_rows(stability.read_csv(tmp_path / "fig.csv"), after=3)
    }
    assert late["routing-all-fc"]["largest_drop"] == pytest.approx(0.5)


def test_the_table_goes_into_a_block(tmp_path: Path) -> None:
    stability = load_paper("stability")
    write(tmp_path / "fig.csv")
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- stab:begin -->\nold\n<!-- stab:end -->\nafter\n", encoding="utf-8")
    stability.main(stability.Args(csv=str(tmp_path / "fig.csv"), after=2, output=str(doc), block="stab"))
    text = doc.read_text(encoding="utf-8")
    assert "old" not in text and "| routing-all-fc | 2 | 4 | 2.00 (1.25) | 2.00 | 1.41 (2.00) | 50 |" in text
    assert text.startswith("before\n<!-- stab:begin -->\n<!-- python examples/paper/stability.py --csv ")
    with pytest.raises(ValueError, match="--block"):
        stability.Args(csv="x.csv", output=str(doc))
