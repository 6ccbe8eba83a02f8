"""The verdict's decision rule against known answers, by simulation: identical sides are almost never told apart, a
side 20 % slower almost always is, in both directions; a side that failed, wobbled, was limited by its generator
or had a backlog is never named; every dimension gets a line with an interval or a reason."""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import pytest

from loadtest.report.decision import ratio_interval
from loadtest.report.verdict import MARGINS, decide, verdict

RUNS = 400
NOISE = 0.05  # trial-to-trial spread (CV) of a settled point: its last 3 trials agree within 10 %


def simulate(factor: float, lower_is_better: bool, noise: float = NOISE, n: int = 5, seed: int = 0) -> dict[Any, int]:
    """How often each side is named over RUNS simulated benchmarks: TorchServe's true value is `factor` x TF's."""
    rng = np.random.default_rng(seed)
    named: dict[Any, int] = {"tf": 0, "torch": 0, None: 0}
    for _ in range(RUNS):
        tf = list(100 * rng.lognormal(0, noise, n))
        torch = list(100 * factor * rng.lognormal(0, noise, n))
        named[decide("sim", {"tf": tf, "torch": torch}, "x", lower_is_better, 0.05)["ahead"]] += 1
    return named


@pytest.mark.parametrize("lower_is_better", [True, False])
def test_identical_sides_are_named_in_at_most_5_percent(lower_is_better: bool) -> None:
    for noise in (NOISE, 0.10, 0.20):  # noisier than a settled point: still no more false winners
        named = simulate(1.0, lower_is_better, noise)
        assert named["tf"] + named["torch"] <= 0.05 * RUNS, (noise, named)


@pytest.mark.parametrize(
    ("lower_is_better", "factor", "expected"),
    [
        (True, 1.2, "tf"),  # TorchServe's latency / CPU / memory / start-up 20 % higher: TF side ahead
        (True, 1 / 1.2, "torch"),
        (False, 1.2, "torch"),  # TorchServe's throughput 20 % higher: TorchServe ahead
        (False, 1 / 1.2, "tf"),
    ],
)
def test_a_side_20_percent_worse_is_named_in_at_least_95_percent(
    lower_is_better: bool, factor: float, expected: str
) -> None:
    named = simulate(factor, lower_is_better)
    assert named[expected] >= 0.95 * RUNS and named[{"tf": "torch", "torch": "tf"}[expected]] == 0, named


@pytest.mark.parametrize("lower_is_better", [True, False])
def test_either_side_of_the_margin(lower_is_better: bool) -> None:
    """Nearly noiseless trials: 3 % apart is inside the 5 % margin (no winner), 8 % apart is beyond it."""
    base = [100.0, 100.2, 99.8, 100.1, 99.9]
    for factor, named in ((1.03, False), (1 / 1.03, False), (1.08, True), (1 / 1.08, True)):
        line = decide("margin", {"tf": base, "torch": [v * factor for v in base]}, "x", lower_is_better, 0.05)
        assert (line["ahead"] is not None) is named, (factor, line["text"])
        if named:
            torch_higher = factor > 1
            assert line["ahead"] == ("torch" if torch_higher != lower_is_better else "tf")
            assert line["ratio"] == pytest.approx(1.08, abs=0.01) and "[" in line["text"]


def test_overlapping_trials_name_no_winner() -> None:
    tf, torch = [1.0, 0.8, 1.3, 1.1, 0.9], [1.1, 0.9, 1.4, 1.2, 1.0]
    line = decide("latency", {"tf": tf, "torch": torch}, "ms", True, 0.05)
    assert line["ahead"] is None and line["text"].startswith("no clear difference") and line["interval"][0] < 1.05


def test_the_interval_is_reproducible_and_honest_about_small_samples() -> None:
    a, b = [1.0, 1.1, 0.9, 1.05, 0.95], [1.2, 1.3, 1.1, 1.25, 1.15]
    assert ratio_interval(a, b, 7) == ratio_interval(a, b, 7)
    r = ratio_interval(a, b, 7)
    assert r.low < statistics.mean(b) / statistics.mean(a) < r.high


# ---- the verdict over a summary ----------------------------------------------------------------------------------
def point(target: str, users: int, p50: float, rps: float, cpu: float, trials: int = 5, **extra: Any) -> dict[str, Any]:
    wobble = [1.0, 1.01, 0.99, 1.005, 0.995, 1.0, 1.0][:trials]
    side = target.split("-")[0]
    p50s, rpss, cpus = [p50 * w for w in wobble], [rps * w for w in wobble], [cpu * w for w in wobble]
    return {
        "target": target, "batching": "off", "rows": 1, "users": users, "trials": trials, "stable": True,
        "requests": 10_000, "failures": 0, "backlogged": 0, "warnings": [],
        "p50": {"median": p50, "min": min(p50s), "max": max(p50s)},
        "rps": {"median": rps, "min": min(rpss), "max": max(rpss)},
        "trial_values": {"p50": p50s, "rps": rpss, "cpu_us_per_request": {side: cpus}},
    } | extra  # fmt: skip


def summary(tf: dict[str, Any] | None = None, torch: dict[str, Any] | None = None) -> dict[str, Any]:
    """TorchServe 2x faster everywhere, unless a point is replaced."""
    points = [point("tf-direct", u, 2.0, 500.0 * u**0.5, 1200.0) for u in (1, 16)]
    points += [point("torch-direct", u, 1.0, 1000.0 * u**0.5, 600.0) for u in (1, 16)]
    for replacement in (tf, torch):
        if replacement:
            points = [p for p in points if (p["target"], p["users"]) != (replacement["target"], replacement["users"])]
            points.append(replacement)
    starts = {"tf": [3.0, 3.2, 2.9, 3.1, 3.0], "torch": [9.0, 12.0, 8.5, 10.0, 11.0]}
    rss = {"tf": [620.0, 622, 619, 621, 620], "torch": [450.0, 447, 452, 449, 451]}
    return {
        "options": {"rows": [1], "slo_ms": 50},
        "points": points,
        "startup": {
            side: {"start_to_first_prediction_s": statistics.median(starts[side]), "start_samples_s": starts[side],
                   "idle_rss_mb": statistics.median(rss[side]), "idle_rss_samples_mb": rss[side]}
            for side in ("tf", "torch")
        },
        "slo": [
            {"target": "tf-direct", "batching": "off", "bracket": [400, 436], "steps": []},
            {"target": "torch-direct", "batching": "off", "bracket": [566, 617], "steps": []},
        ],
    }  # fmt: skip


def test_every_dimension_gets_a_line_with_an_interval() -> None:
    lines = verdict(summary())
    dims = [line["dimension"].split(" (")[0] for line in lines]
    assert dims == ["latency at low load", "max throughput", "server CPU per request", "memory at idle",
                    "start-up", "rate within the SLO"]  # fmt: skip
    ahead = {line["dimension"].split(" (")[0]: line["ahead"] for line in lines}
    assert ahead == {"latency at low load": "torch", "max throughput": "torch", "server CPU per request": "torch",
                     "memory at idle": "torch", "start-up": "tf", "rate within the SLO": "torch"}  # fmt: skip
    for line in lines[:5]:
        assert "95 % interval over 5 and 5" in line["text"], line["text"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"failures": 6000}, "6,000 failed requests"),
        ({"stable": False}, "did not settle"),
        ({"warnings": ["the load generator used 95% of a core: it may be the limit"]}, "generator"),
        ({"backlogged": 12}, "backlog"),
        ({"trials": 3}, "3 trials"),
    ],
)
def test_no_winner_where_a_side_failed_wobbled_or_was_limited(change: dict[str, Any], reason: str) -> None:
    """TorchServe 2x better on every trial, but its point had failures / no settling / a generator warning / a
    backlog / too few trials: no side is named on the dimensions that read that point, and the line says why."""
    trials = change.get("trials", 5)
    bad = point("torch-direct", 1, 1.0, 1000.0, 600.0, trials=trials) | change
    bad["users"] = 1
    lines = {line["dimension"].split(" (")[0]: line for line in verdict(summary(torch=bad))}
    latency = lines["latency at low load"]
    assert latency["ahead"] is None and latency["text"].startswith("no verdict") and reason in latency["text"]
    assert lines["max throughput"]["ahead"] == "torch"  # the 16-user point, untouched, still decides throughput


def test_a_summary_without_trial_values_gets_reasons_not_verdicts() -> None:
    old = summary()
    for p in old["points"]:
        del p["trial_values"]
    lines = verdict(old)
    assert all(line["ahead"] is None and "per-trial values" in line["text"] for line in lines[:3])


def test_an_slo_bracket_that_broke_on_failures_or_the_generator_is_no_verdict() -> None:
    s = summary()
    s["slo"][1] = {"target": "torch-direct", "batching": "off", "bracket": [566, 617], "steps": [
        {"offered_rps": 617, "held": False, "reason": "the generator fell behind its schedule"}]}  # fmt: skip
    (line,) = [v for v in verdict(s) if v["dimension"].startswith("rate within")]
    assert line["ahead"] is None and "generator fell behind" in line["text"]
    assert MARGINS["slo"] == 0.10
