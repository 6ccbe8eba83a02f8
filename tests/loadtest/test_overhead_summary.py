"""The hop instrument's arithmetic on known runs: added latency is each round's hop p50 minus the same round's
direct p50, then the median and range of those differences (not the difference of two medians)."""

from __future__ import annotations

from loadtest.overhead import summarize

DIRECT = [5.0, 9.0, 6.0]  # the machine drifts between rounds
GATEWAY_ADDS = [0.3, 0.5, 0.2]  # what the gateway added in each round
PASSTHROUGH_ADDS = [0.2, 0.2, 0.2]


def runs() -> list[dict]:  # type: ignore[type-arg]
    out = []
    for trial, direct in enumerate(DIRECT):
        for route, p50 in (
            ("direct", direct),
            ("gateway", direct + GATEWAY_ADDS[trial]),
            ("passthrough", direct + PASSTHROUGH_ADDS[trial]),
        ):
            for b in ("tf", "torch"):
                out.append(
                    {
                        "route": f"{b}-{route}",
                        "rows": 64,
                        "trial": trial,
                        "p50": p50,
                        "p99": p50 + 1,
                        "rps": 100.0,
                        "failures": 0,
                        "cpu_us": {"gateway": 900.0, "passthrough": 800.0},
                        "client_cpu_us": 150.0 + trial,
                    }
                )
    return out


def test_added_latency_is_paired_within_rounds() -> None:
    tf = summarize(runs(), [64])["table"][0]
    # paired: median of [0.3, 0.5, 0.2]; unpaired it would be median(5.3, 9.5, 6.2) - median(5, 9, 6) = 0.2
    assert tf["gateway_added_p50_ms"] == 0.3 and tf["gateway_added_p50_range"] == [0.2, 0.5]
    assert tf["passthrough_added_p50_ms"] == 0.2 and tf["ratio_p50"] == 1.5
    assert tf["gateway_added_p99_ms"] == 0.3 and tf["gateway_cpu_us"] == 900 and tf["direct_p50_ms"] == 6.0
    assert tf["client_cpu_us"] == 151
