"""The open-loop SLO search as a bracket: the highest offered rate that held and the lowest that broke.

MLPerf-Server-like: exactly `arrivals` Poisson arrivals a step at the offered rate, latency from the scheduled send.
A step holds when every request was answered right and the p99 of the answers is within the bound. The rate
doubles until a step breaks, then the bracket [held, broken] is bisected (geometric mean) until its ends are within
`resolution` of each other or the refinement steps run out. Every step is measured once: no step is retried, so a
noisy tail counts the same whichever way it falls. The answer is the bracket, never one number: the true capacity
lies between its ends (as far as p99's own uncertainty allows: each step reports p99's 95 % interval from its order
statistics, whose width is set by the number of arrivals).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadtest.measure import latency

Run = Callable[[str, float, int], dict[str, Any]]  # (target, rate, arrivals) -> the lean driver's result
LATE_SHARE = 0.10  # sends' p99 lateness over this share of the bound: the generator may have broken the step


@dataclass
class SearchPlan:
    slo_ms: float
    start_rps: float = 100.0
    growth: float = 2.0
    max_steps: int = 8
    refine_steps: int = 4
    resolution: float = 0.10
    arrivals: int = 600
    down_steps: int = 3  # when the first rate breaks: divide by `growth` up to this many times to find one that holds


def generator_behind(r: dict[str, Any], slo_ms: float) -> bool:
    """The sends' own p99 lateness is a material part of the bound. Latency counts from the schedule, so lateness
    only ever adds to it: a step that holds despite it held; one that broke may have been broken by the generator.
    (A uvloop timer wakes up to ~1 ms late: sends > 1 ms late are common and harmless against a 50 ms bound.)"""
    lateness = (r.get("send_lateness") or {}).get("p99")
    if lateness is None:  # an older driver: its count of sends > 1 ms late
        return bool(r.get("late_sends", 0) > 0.01 * max(r["requests"], 1))
    return bool(lateness > LATE_SHARE * slo_ms)


def step_reason(r: dict[str, Any], slo_ms: float) -> str:
    """Why a step broke, or 'holds'. A backlog and failures break it (errors are never within an SLO)."""
    p99 = r["latency"]["p99"]
    if r.get("backlogged"):
        return f"the server fell behind: {r['backlogged']} arrivals found 512 requests in flight"
    if r["failures"]:
        return f"{r['failures']} failures"
    if p99 is not None and p99 <= slo_ms:
        return "holds"
    if generator_behind(r, slo_ms):
        lateness = (r.get("send_lateness") or {}).get("p99")
        return "the generator fell behind its schedule" + (f" (p99 {lateness} ms late)" if lateness else "")
    return f"p99 over {slo_ms:g} ms"


def measure_step(run: Run, target: str, rate: float, plan: SearchPlan) -> dict[str, Any]:
    r = run(target, rate, plan.arrivals)
    reason = step_reason(r, plan.slo_ms)
    p99_interval: list[float | None] = [None, None]
    if r.get("hdr"):
        p99_interval = latency.percentile_interval_ms(latency.decode(r["hdr"]), 99.0)
    return {
        "offered_rps": round(rate, 1),
        "achieved_rps": r["rps"],
        "p99_ms": r["latency"]["p99"],
        "p99_interval_ms": p99_interval,
        "p50_ms": r["latency"]["p50"],
        "requests": r["requests"],
        "failures": r["failures"],
        "backlogged": r.get("backlogged", 0),
        "late_sends": r.get("late_sends", 0),
        "send_lateness_p99_ms": (r.get("send_lateness") or {}).get("p99"),
        "failure_samples": r.get("failure_samples", [])[:3],
        "held": reason == "holds",
        "reason": reason,
    }


def search(run: Run, target: str, plan: SearchPlan, log: Callable[[str], None]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []

    def attempt(rate: float) -> bool:
        st = measure_step(run, target, rate, plan)
        steps.append(st)
        ci = st["p99_interval_ms"]
        log(
            f"   SLO {target}: offered {rate:7.1f} req/s -> {st['achieved_rps']:7.1f}, p99 {st['p99_ms']} ms "
            f"[{ci[0]}–{ci[1] if ci[1] is not None else '?'}] ({st['requests']} queries): {st['reason']}"
        )
        return bool(st["held"])

    held: float | None = None
    broken: float | None = None
    rate = plan.start_rps
    for _ in range(plan.max_steps):
        if not attempt(rate):
            broken = rate
            break
        held = rate
        rate *= plan.growth
    for _ in range(plan.down_steps if held is None else 0):  # the first step broke: look below it for a rate held
        rate /= plan.growth
        if attempt(rate):
            held = rate
            break
        broken = rate
    for _ in range(plan.refine_steps):
        if held is None or broken is None or broken <= held * (1 + plan.resolution):
            break
        mid = math.sqrt(held * broken)
        if attempt(mid):
            held = mid
        else:
            broken = mid
    return {
        "target": target,
        "slo_p99_ms": plan.slo_ms,
        "bracket": [_r(held), _r(broken)],  # [last rate held, first rate broken]; None: none held / none broke
        "max_rps_within_slo": _r(held),  # the bracket's lower end, for readers of older summaries
        "steps": steps,
        "arrivals": f"open loop, Poisson, exactly {plan.arrivals} a step",
        "arrivals_per_step": plan.arrivals,
        "p99_rank_interval": list(latency.quantile_ranks(plan.arrivals, 0.99)),
    }


def _r(rate: float | None) -> float | None:
    return round(rate, 1) if rate is not None else None
