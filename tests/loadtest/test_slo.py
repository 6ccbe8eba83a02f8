"""The SLO search: doubling until the bound breaks, then bisection; the best achieved rate that held."""

from __future__ import annotations

from pathlib import Path

from loadtest.runner import BenchOptions, Measurement, slo_search
from stack.config import StackConfig


def fake_server(capacity: float, slo_ms: float):  # type: ignore[no-untyped-def]
    """Keeps up (p99 under the bound) up to `capacity` req/s, then p99 blows up."""
    offered: list[float] = []

    def measure(cfg, target, users, duration, prefix, batch, batching, rate_per_user):  # type: ignore[no-untyped-def]
        rate = rate_per_user * users
        offered.append(rate)
        p99 = slo_ms / 2 if rate <= capacity else slo_ms * 3
        return Measurement(target, users, batching, 100, 0, min(rate, capacity), 1, 1, p99, p99, 1, {}, [], rate)

    return measure, offered


def test_doubling_then_bisection(tmp_path: Path) -> None:
    opts = BenchOptions(
        slo_ms=50,
        slo_users=10,
        slo_start_rps=100,
        slo_growth=2,
        slo_max_steps=8,
        slo_refine_steps=3,
        slo_targets=["tf-direct"],
    )
    measure, offered = fake_server(capacity=700, slo_ms=50)
    (result,) = slo_search(StackConfig.load(), opts, tmp_path, "off", lambda _: None, measure)
    assert offered[:4] == [100, 200, 400, 800]  # doubling until 800 breaks
    assert offered[4:] == [600, 700, 750, 750]  # bisection between 400 and 800; 750 broke on p99 alone: again
    assert result["max_rps_within_slo"] == 700
    assert [s["held"] for s in result["steps"]] == [True, True, True, False, True, True, False, False]
    assert result["steps"][3]["reason"] == "cannot keep up with the offered rate"
    assert result["steps"][-1]["reason"] == "p99 over 50 ms" and result["steps"][-1]["retry"] is True


def test_nothing_holds(tmp_path: Path) -> None:
    opts = BenchOptions(slo_ms=50, slo_users=10, slo_start_rps=100, slo_targets=["torch-direct"])
    measure, offered = fake_server(capacity=10, slo_ms=50)
    (result,) = slo_search(StackConfig.load(), opts, tmp_path, "on", lambda _: None, measure)
    assert result["max_rps_within_slo"] is None and offered == [100]


def test_one_tail_is_not_a_verdict(tmp_path: Path) -> None:
    """A single 220 ms tail at a low rate once cut a result from 1,325 to 177 req/s: the step is measured again."""
    measure, offered = fake_server(capacity=1000, slo_ms=50)
    stalls = {200.0}

    def one_stall(cfg, target, users, duration, prefix, batch, batching, rate_per_user):  # type: ignore[no-untyped-def]
        m = measure(cfg, target, users, duration, prefix, batch, batching, rate_per_user)
        if rate_per_user * users in stalls:
            stalls.discard(rate_per_user * users)
            m.p99 = 220.0
        return m

    opts = BenchOptions(slo_ms=50, slo_users=10, slo_start_rps=100, slo_refine_steps=0, slo_targets=["tf-direct"])
    (result,) = slo_search(StackConfig.load(), opts, tmp_path, "off", lambda _: None, one_stall)
    assert offered[:4] == [100, 200, 200, 400]
    assert result["max_rps_within_slo"] == 800
