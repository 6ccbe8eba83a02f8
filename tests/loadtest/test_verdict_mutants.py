"""The verdict against known answers it can't fudge: noiseless trials, so every interval is a point and every line's
text is known by hand; each margin hit exactly (the boundary is "not beyond") and just beyond, in both directions;
each dimension's line, how its points are chosen, and every reason for no verdict, word for word.

Written for the mutation score (issue 28): each test here fails on a deliberate bug in loadtest/report/verdict.py
that the simulation tests in test_decision.py let through."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.report.verdict import MARGINS, _n, bracket, decide, point_refusals, slo_line, verdict


def flat(value: float, n: int = 5) -> list[float]:
    """n identical trials: the bootstrap interval of a ratio of two such sides is the ratio itself."""
    return [value] * n


# ---- numbers as shown ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("x", "shown"),
    [(999.4, "999"), (1000.0, "1,000"), (1500.2, "1,500"), (-2000.0, "-2,000"), (-999.0, "-999"), (0.012345, "0.0123")],
)
def test_numbers_have_three_figures_below_a_thousand_and_separators_above(x: float, shown: str) -> None:
    assert _n(x) == shown


# ---- one line from two sides' values ------------------------------------------------------------------------------
def test_a_line_naming_a_side_says_by_how_much_over_what_and_the_means() -> None:
    line = decide("latency", {"tf": flat(4.0), "torch": flat(2.0)}, "ms", True, 0.05)
    assert line == {
        "dimension": "latency",
        "ahead": "torch",
        "margin": 0.05,
        "reasons": [],
        "interval": [0.5, 0.5],
        "ratio": 2.0,
        "ratio_interval": [2.0, 2.0],
        "text": "TorchServe ahead, 2.00× [2.00–2.00] (95 % interval over 5 and 5 trials, beyond the 5 % margin; "
        "TF side 4 ms, TorchServe 2 ms)",
    }


@pytest.mark.parametrize(
    ("tf", "torch", "lower_is_better", "ahead", "factor"),
    [
        (100.0, 125.0, True, "tf", 1.25),  # TorchServe's values 25 % higher, lower is better: TF side
        (125.0, 100.0, True, "torch", 1.25),
        (100.0, 125.0, False, "torch", 1.25),  # higher is better: TorchServe
        (125.0, 100.0, False, "tf", 1.25),
    ],
)
def test_both_directions_name_the_better_side_with_its_advantage_above_one(
    tf: float, torch: float, lower_is_better: bool, ahead: str, factor: float
) -> None:
    line = decide("d", {"tf": flat(tf, 6), "torch": flat(torch, 7)}, "x", lower_is_better, 0.2, what="starts")
    assert line["ahead"] == ahead
    assert line["ratio"] == factor and line["ratio_interval"] == [factor, factor]
    assert line["interval"] == [round(torch / tf, 3)] * 2
    assert "95 % interval over 6 and 7 starts, beyond the 20 % margin" in line["text"]


@pytest.mark.parametrize("lower_is_better", [True, False])
@pytest.mark.parametrize(("tf", "torch"), [(100.0, 105.0), (105.0, 100.0)])
def test_a_ratio_exactly_at_the_margin_is_not_beyond_it(lower_is_better: bool, tf: float, torch: float) -> None:
    """105/100 is exactly 1 + 0.05 and 100/105 exactly 1 / (1 + 0.05): "beyond the margin" is strict."""
    line = decide("d", {"tf": flat(tf), "torch": flat(torch)}, "ms", lower_is_better, 0.05)
    assert line["ahead"] is None and "ratio" not in line
    assert line["interval"] == [round(torch / tf, 3)] * 2
    value = f"{torch / tf:.2f}"
    assert line["text"] == (
        f"no clear difference: TorchServe ÷ TF side {value} [{value}–{value}], 95 % interval over 5 and 5 trials: "
        f"not beyond 1.05× either way (TF side {_n(tf)} ms, TorchServe {_n(torch)} ms)"
    )


@pytest.mark.parametrize("lower_is_better", [True, False])
@pytest.mark.parametrize(("tf", "torch"), [(100.0, 105.1), (105.1, 100.0)])
def test_a_ratio_just_beyond_the_margin_names_a_side(lower_is_better: bool, tf: float, torch: float) -> None:
    line = decide("d", {"tf": flat(tf), "torch": flat(torch)}, "ms", lower_is_better, 0.05)
    torch_higher = torch > tf
    assert line["ahead"] == ("torch" if torch_higher != lower_is_better else "tf")
    assert line["ratio"] == 1.05 and line["ratio"] >= 1


def test_too_few_values_is_no_verdict_with_the_count_and_the_means() -> None:
    line = decide("m", {"tf": flat(600.0, 4), "torch": flat(500.0)}, "MB", True, 0.1, ["a reason"], what="starts")
    assert line == {
        "dimension": "m",
        "ahead": None,
        "margin": 0.1,
        "reasons": ["a reason", "TF side has 4 starts (≥ 5 needed)"],
        "text": "no verdict: a reason; TF side has 4 starts (≥ 5 needed) (TF side 600 MB, TorchServe 500 MB)",
    }
    line = decide("m", {"tf": [], "torch": flat(500.0)}, "MB", True, 0.1)
    assert line["text"] == "no verdict: TF side has 0 trials (≥ 5 needed) (TorchServe 500 MB)"
    line = decide("m", {"tf": flat(1.0)}, "MB", True, 0.1)
    assert line["text"] == "no verdict: TorchServe has 0 trials (≥ 5 needed) (TF side 1 MB)"
    line = decide("m", {}, "MB", True, 0.1)
    assert line["text"] == "no verdict: TF side has 0 trials (≥ 5 needed); TorchServe has 0 trials (≥ 5 needed)"


def test_the_reasons_given_are_not_changed_by_the_line() -> None:
    given = ["x"]
    decide("m", {"tf": [], "torch": []}, "MB", True, 0.1, given)
    assert given == ["x"]


# ---- why a point can't carry a verdict ------------------------------------------------------------------------------
def test_every_refusal_of_a_point_in_words() -> None:
    point = {
        "failures": 6000, "requests": 10_000, "backlogged": 12, "stable": False, "trials": 3,
        "warnings": ["CPU busy", "the load generator used 95% of a core", "generator again"],
    }  # fmt: skip
    assert point_refusals(point, "torch") == [
        "TorchServe had 6,000 failed requests of 10,000",
        "TorchServe's generator had a backlog (12 arrivals not sent)",
        "TorchServe's point did not settle over 3 trials",
        "TorchServe: the load generator used 95% of a core",
    ]
    assert point_refusals({"failures": 5}, "tf") == [
        "TF side had 5 failed requests of 0",
        "TF side's point did not settle over 0 trials",
    ]
    assert point_refusals({"stable": True, "failures": 0, "backlogged": 0, "warnings": ["CPU busy"]}, "tf") == []
    assert point_refusals({"stable": True}, "tf") == []


# ---- the whole verdict of a summary ---------------------------------------------------------------------------------
def pt(target: str, users: int, p50: float, rps: float, cpu: float, **extra: Any) -> dict[str, Any]:
    side = target.split("-")[0]
    return {
        "target": target, "batching": "off", "rows": 1, "users": users, "trials": 5, "stable": True,
        "requests": 10_000, "failures": 0, "backlogged": 0, "warnings": [], "rps": {"median": rps},
        "trial_values": {"p50": flat(p50), "rps": flat(rps), "cpu_us_per_request": {side: flat(cpu)}},
    } | extra  # fmt: skip


def summary() -> dict[str, Any]:
    points = [
        pt("tf-direct", 2, 4.0, 500.0, 1000.0),
        pt("tf-direct", 16, 8.0, 1000.0, 900.0),
        pt("tf-direct", 32, 16.0, 900.0, 800.0),
        pt("torch-direct", 2, 2.0, 700.0, 500.0),
        pt("torch-direct", 16, 4.0, 1500.0, 300.0),
        pt("torch-direct", 32, 8.0, 2000.0, 100.0),
        # Never read: batching on, or more rows than the fewest; each would change a line if it were.
        pt("tf-direct", 1, 0.1, 9000.0, 10.0, batching="on"),
        pt("tf-direct", 1, 0.1, 9000.0, 10.0, rows=8),
        pt("torch-direct", 8, 99.0, 10.0, 9000.0, batching="on"),
        pt("tf-gateway", 1, 0.1, 9000.0, 10.0),
    ]
    return {
        "options": {"rows": [8, 1], "slo_ms": 50},
        "points": points,
        "startup": {
            "tf": {
                "start_samples_s": flat(2.0),
                "idle_rss_samples_mb": flat(600.0),
                "start_to_first_prediction_s": 9,
                "idle_rss_mb": 9,
            },
            "torch": {
                "start_samples_s": flat(2.5),
                "idle_rss_samples_mb": flat(540.0),
                "start_to_first_prediction_s": 9,
                "idle_rss_mb": 9,
            },
        },
        "slo": [
            {"target": "tf-direct", "batching": "off", "bracket": [400, 500], "steps": []},
            {"target": "torch-direct", "batching": "off", "bracket": [550, 600], "steps": []},
            {"target": "tf-direct", "batching": "on", "bracket": [5000, 6000], "steps": []},
        ],
    }


def test_six_lines_each_with_its_points_margin_and_words() -> None:
    lines = verdict(summary())
    assert [(line["dimension"], line["ahead"], line["margin"]) for line in lines] == [
        ("latency at low load (p50, 2 users)", "torch", MARGINS["latency"]),
        ("max throughput (best concurrency: TF side 16, TorchServe 32)", "torch", MARGINS["throughput"]),
        ("server CPU per request (16 users)", "torch", MARGINS["cpu"]),
        ("memory at idle (cgroup memory or PSS of the tree)", "torch", MARGINS["memory"]),
        ("start-up (process start to first correct prediction)", "tf", MARGINS["startup"]),
        ("rate within the SLO (p99 ≤ 50 ms, open loop)", "torch", MARGINS["slo"]),
    ]
    assert MARGINS == {"latency": 0.05, "throughput": 0.05, "cpu": 0.05, "memory": 0.10, "startup": 0.20, "slo": 0.10}
    texts = [line["text"] for line in lines]
    assert texts == [
        "TorchServe ahead, 2.00× [2.00–2.00] (95 % interval over 5 and 5 trials, beyond the 5 % margin; "
        "TF side 4 ms, TorchServe 2 ms)",
        "TorchServe ahead, 2.00× [2.00–2.00] (95 % interval over 5 and 5 trials, beyond the 5 % margin; "
        "TF side 1,000 req/s, TorchServe 2,000 req/s)",
        "TorchServe ahead, 3.00× [3.00–3.00] (95 % interval over 5 and 5 trials, beyond the 5 % margin; "
        "TF side 900 µs, TorchServe 300 µs)",
        "TorchServe ahead, 1.11× [1.11–1.11] (95 % interval over 5 and 5 starts, beyond the 10 % margin; "
        "TF side 600 MB, TorchServe 540 MB)",
        "TF side ahead, 1.25× [1.25–1.25] (95 % interval over 5 and 5 starts, beyond the 20 % margin; "
        "TF side 2 s, TorchServe 2.5 s)",
        "TorchServe ahead, at least 1.10×: its last rate held is above the other's first rate broken by more than "
        "10 % (TF side [400–500] and TorchServe [550–600] req/s: [last held–first broken])",
    ]
    assert lines[5]["ratio"] == 1.1 and lines[5]["brackets"] == {"tf": [400, 500], "torch": [550, 600]}


def test_the_low_load_point_is_the_tf_sides_fewest_users_and_one_user_is_singular() -> None:
    s = summary()
    s["points"] += [pt("tf-direct", 1, 6.0, 100.0, 1000.0), pt("torch-direct", 1, 3.0, 100.0, 500.0)]
    (latency, *_) = verdict(s)
    assert latency["dimension"] == "latency at low load (p50, 1 user)"
    assert "TF side 6 ms, TorchServe 3 ms" in latency["text"]


def test_without_a_point_at_the_same_users_the_other_side_falls_back_to_its_first() -> None:
    s = summary()
    s["points"] = [p for p in s["points"] if (p["target"], p["users"]) != ("torch-direct", 2)]
    (latency, *_) = verdict(s)  # TorchServe's first direct point: 16 users, p50 4 ms
    assert latency["dimension"] == "latency at low load (p50, 2 users)"
    assert latency["ahead"] is None and "TF side 4 ms, TorchServe 4 ms" in latency["text"]


def test_cpu_is_read_at_the_most_users_up_to_16() -> None:
    s = summary()
    s["points"] += [pt("tf-direct", 17, 8.0, 10.0, 90.0), pt("torch-direct", 12, 8.0, 10.0, 2700.0)]
    cpu = verdict(s)[2]  # TF side at 16 (17 is over), TorchServe at 16 (more than 12)
    assert cpu["dimension"] == "server CPU per request (16 users)"
    assert cpu["ahead"] == "torch" and "TF side 900 µs, TorchServe 300 µs" in cpu["text"]


def test_cpu_values_are_each_sides_own() -> None:
    s = summary()
    for p in s["points"]:
        p["trial_values"]["cpu_us_per_request"] = {"tf": flat(100.0), "torch": flat(100.0)} | (
            {"tf": flat(900.0)} if p["target"] == "tf-direct" else {"torch": flat(300.0)}
        )
    assert verdict(s)[2]["ahead"] == "torch"
    for p in s["points"]:
        p["trial_values"]["cpu_us_per_request"] = flat(5.0)  # not per side: no values
    assert "TF side has 0 trials" in verdict(s)[2]["text"]


def test_a_refused_point_is_named_with_its_reasons_in_side_order() -> None:
    s = summary()
    for p in s["points"]:
        if p["users"] == 2:
            p["stable"] = False
    latency = verdict(s)[0]
    assert latency["ahead"] is None
    assert latency["reasons"] == [
        "TF side's point did not settle over 5 trials",
        "TorchServe's point did not settle over 5 trials",
    ]
    assert latency["text"].startswith("no verdict: TF side's point did not settle over 5 trials; TorchServe's")


def test_one_side_without_per_trial_values_is_enough_for_no_verdict() -> None:
    s = summary()
    for p in s["points"]:
        if p["target"] == "torch-direct":
            del p["trial_values"]
    line = verdict(s)[1]
    assert line["reasons"][0] == "this summary has no per-trial values (written before the interval rule)"
    assert line["ahead"] is None


def test_no_direct_points_and_no_startup_still_give_six_lines_saying_why() -> None:
    s = summary()
    s["points"] = [p for p in s["points"] if p["target"] != "torch-direct"]
    del s["startup"]
    lines = verdict(s)
    why = "each side's direct point was not measured (targets tf-direct and torch-direct, batching off)"
    assert lines[:5] == [
        {"dimension": "latency at low load", "ahead": None, "reasons": [why], "text": f"no verdict: {why}"},
        {"dimension": "max throughput", "ahead": None, "reasons": [why], "text": f"no verdict: {why}"},
        {"dimension": "server CPU per request", "ahead": None, "reasons": [why], "text": f"no verdict: {why}"},
        {
            "dimension": "memory at idle (cgroup memory or PSS of the tree)",
            "ahead": None,
            "reasons": ["start-up not measured (--no-startup)"],
            "text": "no verdict: start-up not measured (--no-startup)",
        },
        {
            "dimension": "start-up (process start to first correct prediction)",
            "ahead": None,
            "reasons": ["not measured"],
            "text": "no verdict: not measured",
        },
    ]
    s = summary()
    del s["startup"]["torch"]  # one side only: not measured either
    assert [line["text"] for line in verdict(s)[3:5]] == [
        "no verdict: start-up not measured (--no-startup)",
        "no verdict: not measured",
    ]


def test_startup_without_samples_is_one_start_each() -> None:
    s = summary()
    s["startup"] = {
        side: {"start_to_first_prediction_s": 2.0, "idle_rss_mb": 600.0} for side in ("tf", "torch")
    }  # a summary from before repeated starts
    memory, start = verdict(s)[3:5]
    assert memory["text"] == (
        "no verdict: TF side has 1 starts (≥ 5 needed); TorchServe has 1 starts (≥ 5 needed) "
        "(TF side 600 MB, TorchServe 600 MB)"
    )
    assert start["text"].endswith("(TF side 2 s, TorchServe 2 s)")


# ---- the SLO rate: brackets ------------------------------------------------------------------------------------------
def step(rate: float, held: bool, reason: str = "") -> dict[str, Any]:
    return {"offered_rps": rate, "held": held, "reason": reason or ("holds" if held else "p99 over 50 ms")}


def test_a_bracket_is_read_or_rebuilt_from_the_steps() -> None:
    assert bracket({"bracket": [1, 2], "steps": [step(5, True)]}) == (1, 2)
    steps = [step(100, True), step(200, True), step(150, False), step(200, False), step(400, False), step(300, False)]
    assert bracket({"steps": steps}) == (200, 300)  # broken: the lowest above the last held
    assert bracket({"steps": [step(100, False), step(50, False)]}) == (None, 50)
    assert bracket({"steps": [step(100, True)]}) == (100, None)
    assert bracket({}) == (None, None)


def slo_summary(tf: Any, torch: Any, slo_ms: float | None = 50) -> dict[str, Any]:
    def search(target: str, b: Any) -> dict[str, Any]:
        return {"target": target, "batching": "off", "bracket": b[:2], "steps": b[2] if len(b) > 2 else []}

    return {"options": {"slo_ms": slo_ms}, "slo": [search("tf-direct", tf), search("torch-direct", torch)]}


@pytest.mark.parametrize(
    ("tf", "torch", "ahead"),
    [
        ([400, 500], [550, 600], "torch"),  # 550 = 500 x 1.1 exactly: named
        ([550, 600], [400, 500], "tf"),
        ([400, 500], [549, 600], None),  # just under
        ([549, 600], [400, 500], None),
    ],
)
def test_the_slo_margin_both_ways(tf: list[float], torch: list[float], ahead: str | None) -> None:
    line = slo_line(slo_summary(tf, torch))
    assert line["ahead"] == ahead and line["margin"] == 0.1 and line["reasons"] == []
    if ahead is None:
        assert line["text"] == (
            f"no clear difference: the brackets are not 10 % apart (TF side [{_n(tf[0])}–{_n(tf[1])}] and "
            f"TorchServe [{_n(torch[0])}–{_n(torch[1])}] req/s: [last held–first broken])"
        )
        assert "ratio" not in line
    else:
        assert line["ratio"] == 1.1 and line["text"].startswith(f"{'TF side' if ahead == 'tf' else 'TorchServe'} ahead")


def test_an_open_bracket_names_no_one_it_cannot_compare() -> None:
    line = slo_line(slo_summary([None, 50], [5000, None]))
    assert line["ahead"] == "torch" and line["ratio"] == 100.0
    assert "(TF side [none held–50] and TorchServe [5,000–never broke] req/s" in line["text"]
    line = slo_line(slo_summary([None, None], [None, None]))
    assert line["ahead"] is None and line["text"].startswith("no clear difference")
    assert line["brackets"] == {"tf": [None, None], "torch": [None, None]}


def test_the_slo_line_names_the_bound_or_says_it_was_not_measured() -> None:
    assert slo_line(slo_summary([1, 2], [1, 2], 0.5))["dimension"] == "rate within the SLO (p99 ≤ 0.5 ms, open loop)"
    assert slo_line(slo_summary([1, 2], [1, 2], None))["dimension"] == "rate within the SLO"
    s = slo_summary([400, 500], [550, 600])
    s["slo"][1]["batching"] = "on"
    assert slo_line(s) == {
        "dimension": "rate within the SLO (p99 ≤ 50 ms, open loop)",
        "ahead": None,
        "margin": 0.1,
        "reasons": ["not measured for both sides"],
        "text": "no verdict: not measured for both sides",
    }


def test_a_first_broken_step_not_broken_by_p99_is_no_verdict() -> None:
    tf = [400, 500, [step(400, True), step(500, False, "3 failures")]]
    torch = [550, 600, [step(600, False, "p99 over 50 ms")]]
    line = slo_line(slo_summary(tf, torch))
    assert line["ahead"] is None
    assert line["reasons"] == ["TF side's first broken step (500 req/s): 3 failures"]
    assert line["text"] == (
        "no verdict: TF side's first broken step (500 req/s): 3 failures "
        "(TF side [400–500] and TorchServe [550–600] req/s)"
    )
    # A step at another rate than the bracket's broken end is not the one that broke it.
    tf = [400, 500, [step(450, False, "3 failures")]]
    assert slo_line(slo_summary(tf, torch))["ahead"] == "torch"


def test_a_side_missing_from_the_cpu_values_has_none() -> None:
    s = summary()
    for p in s["points"]:
        if p["target"] == "torch-direct":
            p["trial_values"]["cpu_us_per_request"] = {"tf": flat(300.0)}  # the other side's key only
    assert verdict(s)[2]["text"].startswith("no verdict: TorchServe has 0 trials (≥ 5 needed)")


def test_a_summary_without_slo_searches_says_not_measured() -> None:
    assert slo_line({"options": {}})["text"] == "no verdict: not measured for both sides"


def test_the_same_values_give_the_same_interval_every_time() -> None:
    """The bootstrap is seeded from the dimension's name: one summary.json, one verdict (noisy trials here)."""
    values = {"tf": [1.0, 1.3, 0.8, 1.1, 0.9], "torch": [1.2, 0.9, 1.5, 1.0, 1.3]}
    assert decide("latency", values, "ms", True, 0.05) == decide("latency", values, "ms", True, 0.05)


def test_ratios_are_shown_to_two_places_and_the_interval_to_three() -> None:
    line = decide("d", {"tf": flat(7.0), "torch": flat(3.0)}, "ms", True, 0.05)
    assert line["ratio"] == 2.33 and line["ratio_interval"] == [2.33, 2.33] and line["interval"] == [0.429, 0.429]
    line = slo_line(slo_summary([1000, 1100], [300, 600]))
    assert line["ahead"] == "tf" and line["ratio"] == 1.67


def test_a_bracket_broken_below_one_request_a_second_is_still_broken() -> None:
    assert bracket({"steps": [step(0.5, False)]}) == (None, 0.5)


def test_each_sides_first_broken_step_is_read_even_if_the_other_never_broke() -> None:
    tf = [500, None, [step(500, True)]]
    torch = [550, 600, [step(600, False, "2 failures")]]
    line = slo_line(slo_summary(tf, torch))
    assert line["reasons"] == ["TorchServe's first broken step (600 req/s): 2 failures"]
    tf = [400, 500, [step(500, False, "the generator fell behind its schedule")]]
    line = slo_line(slo_summary(tf, torch))
    assert line["text"].startswith(
        "no verdict: TF side's first broken step (500 req/s): the generator fell behind its schedule; "
        "TorchServe's first broken step (600 req/s): 2 failures ("
    )
