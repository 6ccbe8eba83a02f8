"""The SLO search as a bracket: exactly N arrivals a step, doubling until the bound breaks, then geometric bisection;
no step measured twice; the answer [last rate held, first rate broken]; a winner only for brackets apart by the
margin."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.bench import BenchOptions, slo_search
from loadtest.report.verdict import slo_line


def fake_server(capacity: float, slo_ms: float):  # type: ignore[no-untyped-def]
    """Keeps p99 under the bound up to `capacity` req/s, then p99 blows up (open loop: the queue grows)."""
    offered: list[float] = []
    arrivals_seen: list[int] = []

    def measure(target: str, rate: float, arrivals: int) -> dict[str, Any]:
        offered.append(rate)
        arrivals_seen.append(arrivals)
        p99 = slo_ms / 2 if rate <= capacity else slo_ms * 3
        return {"rps": min(rate, capacity), "requests": arrivals, "failures": 0, "latency": {"p50": 1.0, "p99": p99}}

    return measure, offered, arrivals_seen


def _search(measure, target: str = "tf-direct", **kw):  # type: ignore[no-untyped-def]
    opts = BenchOptions(**{"slo_ms": 50, "slo_start_rps": 100, "slo_growth": 2, "slo_targets": [target], **kw})
    (result,) = slo_search(None, opts, "off", lambda _: None, measure)  # type: ignore[arg-type]
    return result


def test_doubling_then_bisection_to_a_bracket_with_exact_arrivals() -> None:
    measure, offered, arrivals = fake_server(capacity=700, slo_ms=50)
    result = _search(measure, slo_arrivals=600)
    # 800 broke; geometric bisection of [400, 800]: 566 held, 673 held, 734 broke: within 10 %, done
    assert [round(r) for r in offered] == [100, 200, 400, 800, 566, 673, 734]
    assert result["bracket"] == [672.7, 733.6]
    assert result["bracket"][0] <= 700 < result["bracket"][1]
    assert set(arrivals) == {600} and result["arrivals_per_step"] == 600
    assert result["p99_rank_interval"] == [589, 599]  # p99 of 600 lies between the 589th and 599th values (95 %)
    assert [s["reason"] for s in result["steps"]][3] == "p99 over 50 ms"


def test_no_step_is_measured_twice() -> None:
    """A failed step used to be measured again and a passing one never (best of two: a step that fails half the time
    passed 75 % of the time). Now a one-off stall at 200 req/s breaks that step, once, like any other."""
    measure, offered, _ = fake_server(capacity=1000, slo_ms=50)

    def one_stall(target: str, rate: float, arrivals: int) -> dict[str, Any]:
        r = measure(target, rate, arrivals)
        if rate == 200.0:
            r["latency"] = {"p50": 1.0, "p99": 220.0}
        return r

    result = _search(one_stall)
    assert len(offered) == len(set(offered))
    assert result["bracket"][1] == 200.0 and not any(s.get("retry") for s in result["steps"])


def test_nothing_holds() -> None:
    """The first rate broke: halved three times to find one that holds; none did, so the bracket has no lower end."""
    measure, offered, _ = fake_server(capacity=10, slo_ms=50)
    result = _search(measure)
    assert result["bracket"] == [None, 12.5] and offered == [100, 50, 25, 12.5]


def test_a_server_slower_than_the_first_rate_still_gets_a_bracket() -> None:
    """Capacity 60 req/s against a first step of 100: 100 broke, 50 held, then bisection between them."""
    measure, offered, _ = fake_server(capacity=60, slo_ms=50)
    result = _search(measure)
    assert offered[:2] == [100, 50]
    held, broken = result["bracket"]
    assert held is not None and broken is not None and held <= 60 < broken and broken <= held * 1.1


def test_failures_and_a_backlog_are_reasons_too() -> None:
    def broken(target: str, rate: float, arrivals: int) -> dict[str, Any]:
        base = {"rps": rate, "requests": arrivals, "latency": {"p50": 1.0, "p99": 2.0}, "failures": 0}
        if rate > 300:
            return base | {"failures": 40, "backlogged": 40}
        return base | ({"failures": 3} if rate > 150 else {})

    result = _search(broken, slo_refine_steps=0)
    assert [s["reason"] for s in result["steps"]] == ["holds", "3 failures"]
    result = _search(broken, slo_start_rps=400, slo_refine_steps=0)
    assert result["steps"][0]["reason"].startswith("the server fell behind: 40 arrivals")


def _verdict(tf_capacity: float, torch_capacity: float) -> dict[str, Any]:
    searches = []
    for target, capacity in (("tf-direct", tf_capacity), ("torch-direct", torch_capacity)):
        measure, _, _ = fake_server(capacity, slo_ms=50)
        searches.append(_search(measure, target))
    return slo_line({"options": {"slo_ms": 50}, "slo": searches})


@pytest.mark.parametrize(("tf", "torch"), [(599, 601), (601, 599), (700, 700), (560, 590)])
def test_capacities_the_grid_cannot_tell_apart_name_no_winner(tf: float, torch: float) -> None:
    """True capacities 599 vs 601 req/s were "TorchServe ahead, 1.20x" when one number per side from a 25 % grid
    was compared; the brackets overlap, so no side is named."""
    line = _verdict(tf, torch)
    assert line["ahead"] is None and line["text"].startswith("no clear difference"), line["text"]


@pytest.mark.parametrize(("tf", "torch", "ahead"), [(400, 600, "torch"), (600, 400, "tf"), (300, 1000, "torch")])
def test_capacities_far_apart_name_the_faster(tf: float, torch: float, ahead: str) -> None:
    line = _verdict(tf, torch)
    assert line["ahead"] == ahead, line["text"]
    assert "[last held–first broken]" in line["text"]


def test_a_late_generator_breaks_nothing_that_held_and_is_named_where_it_may_have() -> None:
    """Sends 1-2 ms late (a uvloop timer) are no reason against a 50 ms bound: the step holds. A step whose p99 broke
    while the sends themselves were 20 ms late (p99) says the generator may have broken it."""

    def late(target: str, rate: float, arrivals: int) -> dict[str, Any]:
        p99 = 10.0 if rate <= 200 else 80.0
        lateness = 1.6 if rate <= 200 else 20.0
        return {"rps": rate, "requests": arrivals, "failures": 0, "late_sends": arrivals // 2,
                "latency": {"p50": 1.0, "p99": p99}, "send_lateness": {"p99": lateness}}  # fmt: skip

    result = _search(late, slo_refine_steps=0)
    assert [s["reason"] for s in result["steps"]] == [
        "holds", "holds", "the generator fell behind its schedule (p99 20.0 ms late)"
    ]  # fmt: skip
