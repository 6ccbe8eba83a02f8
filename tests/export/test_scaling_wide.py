"""The wide model's data-parallel run (`python -m export.scaling --model digits_wide`): one training split over
N workers, and a step's time split into compute and gradient all-reduce that adds up to the step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from export.scaling import split
from export.scaling.plan import GLOBAL_BATCH, make_plan
from stack.config import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scaling-wide")
    cmd = [sys.executable, "-m", "export.scaling", "--model", "digits_wide", "--workers", "1,2", "--epochs", "3",
           "--probe-rounds", "30", "--out", str(out / "report"), "--runs-dir", str(out / "runs"),
           "--timeout", "300"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out / "report"


def rows(report: Path) -> dict[tuple[str, int], dict]:  # type: ignore[type-arg]
    summary = json.loads((report / "summary.json").read_text())
    return {(r["framework"], r["workers"]): r for r in summary["rows"]}


def test_the_wide_model_trains_to_the_same_accuracy_at_one_and_two_workers(wide_run: Path) -> None:
    got = rows(wide_run)
    assert set(got) == {(fw, n) for fw in ("pytorch", "tensorflow") for n in (1, 2)}
    for fw in ("pytorch", "tensorflow"):
        one, two = got[(fw, 1)], got[(fw, 2)]
        assert one["model"] == "digits_wide" and one["parameters"] > 4_000_000, one
        assert one["global_batch"] == two["global_batch"] == 128
        assert one["final_accuracy"] >= 0.9, (fw, one["final_accuracy"])
        # one training split over two processes: the same test accuracy (450 rows: within 2 of them)
        assert two["final_accuracy"] == pytest.approx(one["final_accuracy"], abs=0.005), fw


def test_compute_and_allreduce_add_up_to_the_step_within_ten_percent(wide_run: Path) -> None:
    for (fw, n), r in rows(wide_run).items():
        assert r["probe_rounds"] == 30
        assert abs(r["split_error"]) <= 0.10, (fw, n, r["step_ms"], r["compute_ms"], r["allreduce_ms"])
        assert r["gradient_mb"] == pytest.approx(4 * r["parameters"] / 1e6)
    got = rows(wide_run)
    for fw in ("pytorch", "tensorflow"):
        # one worker has nobody to exchange gradients with; two exchange 17 MB a step
        assert got[(fw, 1)]["allreduce_share"] < got[(fw, 2)]["allreduce_share"], fw
        assert got[(fw, 2)]["predicted_efficiency"] is not None
    text = (wide_run / "report.md").read_text()
    assert "## Where a step's time goes" in text and text.count("| pytorch | 2 | 64 |") == 1
    assert "`digits_wide`" in text and "- Step split: pytorch at N=2" in text


def test_the_split_explains_efficiency_by_known_answers() -> None:
    made = [
        {"framework": "f", "workers": 1, "compute_ms": 100.0, "allreduce_share": 0.0},
        {"framework": "f", "workers": 2, "compute_ms": 50.0, "allreduce_share": 0.25},
        {"framework": "f", "workers": 4, "compute_ms": 40.0, "allreduce_share": 0.5},
        {"framework": "g", "workers": 2, "compute_ms": 10.0, "allreduce_share": 0.1},
    ]
    split.explain(made)
    assert [r["compute_split"] for r in made] == [1.0, 1.0, 0.625, None]
    assert [r["predicted_efficiency"] for r in made] == [1.0, 0.75, 0.3125, None]
    row = split.split_row({"probe": {"step": [0.1, 0.2, 0.1], "compute": [0.08] * 3, "allreduce": [0.01] * 3},
                           "gradient_bytes": 4_000_000})  # fmt: skip
    # rounds 0.09/0.1, 0.09/0.2, 0.09/0.1: the median ratio 0.9
    assert row["step_ms"] == pytest.approx(100) and row["split_error"] == pytest.approx(-0.1)
    assert row["allreduce_share"] == pytest.approx(1 / 9) and row["gradient_mb"] == 4.0


def test_the_seed_model_stays_the_default_and_a_bad_model_is_refused() -> None:
    plan = make_plan("pytorch", 2)
    assert (plan.model, plan.global_batch, plan.epochs, plan.hidden) == ("digits", GLOBAL_BATCH, 20, (64, 64))
    wide = make_plan("tensorflow", 4, "digits_wide")
    assert (wide.hidden, wide.learning_rate, wide.per_worker_batch) == ((2048, 2048), 1e-3, 32)
    with pytest.raises(ValueError, match="not a builtin model"):
        make_plan("pytorch", 1, "nope")
    done = subprocess.run([sys.executable, "-m", "export.scaling", "--model", "nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "not a builtin model" in done.stderr
    done = subprocess.run([sys.executable, "-m", "export.scaling", "--model", "digits_wide", "--workers", "3"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "does not split evenly" in done.stderr
