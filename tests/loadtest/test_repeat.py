"""Two runs' verdicts compared (loadtest/report/repeat.py): agreement per dimension, and the kind of disagreement."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.report import repeat


def named(side: str, ratio: float, low: float, high: float, dim: str = "max throughput (best concurrency: 16)") -> dict[
    str, Any
]:  # fmt: skip
    return {"dimension": dim, "ahead": side, "margin": 0.05, "reasons": [], "ratio": ratio,
            "ratio_interval": [low, high], "interval": [low, high]}  # fmt: skip


def unclear(low: float, high: float, dim: str = "max throughput (best concurrency: 64)") -> dict[str, Any]:
    return {"dimension": dim, "ahead": None, "margin": 0.05, "reasons": [], "interval": [low, high]}


def refused(why: str, dim: str = "max throughput") -> dict[str, Any]:
    return {"dimension": dim, "ahead": None, "reasons": [why], "text": f"no verdict: {why}"}


def compare(monkeypatch: pytest.MonkeyPatch, first: list[dict[str, Any]], second: list[dict[str, Any]]) -> list[
    dict[str, Any]
]:  # fmt: skip
    runs = {"a": first, "b": second}
    monkeypatch.setattr(repeat, "verdict", lambda summary: runs[summary["name"]])
    return repeat.compare({"name": "a"}, {"name": "b"}, ("A", "B"))


def test_the_same_outcome_agrees_whatever_the_runs_own_details(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = compare(monkeypatch, [named("torch", 1.3, 1.2, 1.4)], [named("torch", 1.25, 1.1, 1.4, dim="max throughput")])
    assert rows == [{"dimension": "max throughput", "first": "TorchServe ahead", "second": "TorchServe ahead",
                     "same": True, "why": ""}]  # fmt: skip
    rows = compare(monkeypatch, [unclear(0.9, 1.1)], [unclear(0.95, 1.02)])
    assert rows[0]["same"] and rows[0]["first"] == "no clear difference" and not rows[0]["why"]


def test_each_kind_of_disagreement_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    near = compare(monkeypatch, [unclear(0.98, 1.12)], [named("tf", 1.1, 1.06, 1.15)])[0]
    assert not near["same"] and near["why"].startswith("near the margin (5 %): B TF side ahead 1.10× [1.06–1.15]")
    assert "A TorchServe ÷ TF side [0.98–1.12], which does not clear it" in near["why"]
    opposite = compare(monkeypatch, [named("tf", 1.2, 1.1, 1.3)], [named("torch", 1.2, 1.1, 1.3)])[0]
    assert opposite["why"].startswith("contradiction: A TF side ahead 1.20× [1.10–1.30], B TorchServe ahead")
    one = compare(monkeypatch, [named("tf", 1.2, 1.1, 1.3)], [refused("TorchServe's point did not settle")])[0]
    assert one["why"] == "B refused: TorchServe's point did not settle"
    both = compare(monkeypatch, [refused("x")], [refused("y")])[0]
    assert both["same"] and both["why"] == "A refused: x; B refused: y"
    missing = compare(monkeypatch, [refused("x", dim="start-up")], [])[0]
    assert missing["why"] == "A refused: x; B refused: not in B"


def test_the_table_counts_agreement_and_decisions(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = compare(monkeypatch, [named("tf", 1.2, 1.1, 1.3), refused("x", dim="start-up")],
                   [named("tf", 1.2, 1.1, 1.3), refused("y", dim="start-up")])  # fmt: skip
    text = repeat.markdown(rows, ("A", "B"))
    assert text.splitlines()[0] == "| dimension | A | B | same | why not (or why neither decided) |"
    assert text.endswith("2 of 2 verdict lines agree (1 reached by both runs, 1 refused by both).")
    assert repeat.markdown(rows[:1], ("A", "B")).endswith("1 of 1 verdict lines agree.")
