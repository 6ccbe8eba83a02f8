"""The SLO search: doubling until the bound breaks, then bisection; the best rate that held; one tail is retried."""

from __future__ import annotations

from typing import Any

from loadtest.bench import BenchOptions, slo_search


def fake_server(capacity: float, slo_ms: float):  # type: ignore[no-untyped-def]
    """Keeps p99 under the bound up to `capacity` req/s, then p99 blows up (open loop: the queue grows)."""
    offered: list[float] = []

    def measure(target: str, rate: float, duration: float) -> dict[str, Any]:
        offered.append(rate)
        p99 = slo_ms / 2 if rate <= capacity else slo_ms * 3
        n = int(rate * duration)
        return {"rps": min(rate, capacity), "requests": n, "failures": 0, "latency": {"p50": 1.0, "p99": p99}}

    return measure, offered


def _search(measure, **kw):  # type: ignore[no-untyped-def]
    opts = BenchOptions(slo_ms=50, slo_start_rps=100, slo_growth=2, slo_targets=["tf-direct"], **kw)
    (result,) = slo_search(None, opts, "off", lambda _: None, measure)  # type: ignore[arg-type]
    return result


def test_doubling_then_bisection_and_each_steps_reason() -> None:
    measure, offered = fake_server(capacity=700, slo_ms=50)
    result = _search(measure, slo_max_steps=8, slo_refine_steps=3, slo_duration_s=1, slo_min_queries=600)
    # 800 broke on p99 alone: measured again; then bisection between 400 and 800 (750 also retried)
    assert offered == [100, 200, 400, 800, 800, 600, 700, 750, 750]
    assert result["max_rps_within_slo"] == 700
    assert [s["reason"] for s in result["steps"]][3:5] == ["p99 over 50 ms"] * 2 and result["steps"][4]["retry"]
    assert result["steps"][0]["requests"] == 600  # at least slo_min_queries a step: 6 s at 100 req/s


def test_nothing_holds() -> None:
    measure, offered = fake_server(capacity=10, slo_ms=50)
    result = _search(measure)
    assert result["max_rps_within_slo"] is None and offered == [100, 100]


def test_one_tail_is_not_a_verdict() -> None:
    """A single 220 ms tail at a low rate once cut a result from 1,325 to 177 req/s: the step is measured again."""
    measure, offered = fake_server(capacity=1000, slo_ms=50)
    stalls = {200.0}

    def one_stall(target: str, rate: float, duration: float) -> dict[str, Any]:
        r = measure(target, rate, duration)
        if rate in stalls:
            stalls.discard(rate)
            r["latency"] = {"p50": 1.0, "p99": 220.0}
        return r

    result = _search(one_stall, slo_refine_steps=0)
    assert offered[:4] == [100, 200, 200, 400]
    assert result["max_rps_within_slo"] == 800


def test_failures_and_a_backlog_are_reasons_too() -> None:
    def broken(target: str, rate: float, duration: float) -> dict[str, Any]:
        base = {"rps": rate, "requests": 100, "latency": {"p50": 1.0, "p99": 2.0}}
        return base | ({"failures": 3} if rate > 150 else {"failures": 0})

    result = _search(broken, slo_refine_steps=0)
    assert [s["reason"] for s in result["steps"]] == ["holds", "3 failures"]
