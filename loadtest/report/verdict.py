"""The verdict: per dimension, a side named only where the data allow it, and why not where they don't.

A dimension gets no verdict when either side's point had failed requests, did not settle, may have been limited by
the load generator, or has fewer than MIN_VALUES trials (starts, for memory and start-up). Otherwise the ratio of
the sides' means gets a bootstrap interval (loadtest/report/decision.py) and a side is named only when the whole
interval clears 1 by the dimension's margin. The SLO rate is a bracket per side [last rate held, first rate broken]
(loadtest/slo.py): a side is named only when its bracket is above the other's by the margin. Every dimension gets a
line, with the interval or the reason for no verdict.
"""

from __future__ import annotations

from typing import Any

from loadtest.report.decision import MIN_VALUES, advantage, ratio_interval, seed_for, winner

SIDES = {"tf": "TF side", "torch": "TorchServe"}
MARGINS = {"latency": 0.05, "throughput": 0.05, "cpu": 0.05, "memory": 0.10, "startup": 0.20, "slo": 0.10}


def _n(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def point_refusals(point: dict[str, Any], side: str) -> list[str]:
    """Why this point can't carry a verdict: failures, a backlog, no settling, the generator as a possible limit."""
    name, out = SIDES[side], []
    if point.get("failures"):
        out.append(f"{name} had {point['failures']:,} failed requests of {point.get('requests', 0):,}")
    if point.get("backlogged"):
        out.append(f"{name}'s generator had a backlog ({point['backlogged']} arrivals not sent)")
    if not point.get("stable", False):
        out.append(f"{name}'s point did not settle over {point.get('trials', 0)} trials")
    generator = [w for w in point.get("warnings", []) if "generator" in w]
    if generator:
        out.append(f"{name}: {generator[0]}")
    return out


def decide(
    dimension: str,
    values: dict[str, list[float]],
    unit: str,
    lower_is_better: bool,
    margin: float,
    reasons: list[str] | None = None,
    what: str = "trials",
) -> dict[str, Any]:
    """One verdict line from each side's values (one per trial or start)."""
    line: dict[str, Any] = {"dimension": dimension, "ahead": None, "margin": margin, "reasons": list(reasons or [])}
    means = {s: sum(v) / len(v) for s, v in values.items() if v}
    shown = ", ".join(f"{SIDES[s]} {_n(means[s])} {unit}" for s in SIDES if s in means)
    for s in SIDES:
        if len(values.get(s, [])) < MIN_VALUES:
            line["reasons"].append(f"{SIDES[s]} has {len(values.get(s, []))} {what} (≥ {MIN_VALUES} needed)")
    if line["reasons"]:
        line["text"] = f"no verdict: {'; '.join(line['reasons'])}" + (f" ({shown})" if shown else "")
        return line
    r = ratio_interval(values["tf"], values["torch"], seed_for(dimension))
    side = winner(r, lower_is_better, margin)
    line["interval"] = [round(r.low, 3), round(r.high, 3)]
    basis = (
        f"TorchServe ÷ TF side {r.value:.2f} [{r.low:.2f}–{r.high:.2f}], 95 % interval over {r.n_tf} and "
        f"{r.n_torch} {what}"
    )
    if side is None:
        line["text"] = f"no clear difference: {basis}: not beyond {1 + margin:.2f}× either way ({shown})"
        return line
    factor, low, high = advantage(r, side, lower_is_better)
    line |= {"ahead": side, "ratio": round(factor, 2), "ratio_interval": [round(low, 2), round(high, 2)]}
    line["text"] = (
        f"{SIDES[side]} ahead, {factor:.2f}× [{low:.2f}–{high:.2f}] (95 % interval over {r.n_tf} and {r.n_torch} "
        f"{what}, beyond the {margin * 100:g} % margin; {shown})"
    )
    return line


def _trial_values(point: dict[str, Any], key: str, side: str | None = None) -> list[float]:
    values = point.get("trial_values", {}).get(key, [])
    if side is not None:
        values = values.get(side, []) if isinstance(values, dict) else []
    return [float(v) for v in values]


def _sweep_line(
    dimension: str, at: dict[str, dict[str, Any]], key: str, unit: str, lower: bool, margin: float, cpu: bool = False
) -> dict[str, Any]:
    reasons = [r for side in SIDES for r in point_refusals(at[side], side)]
    if not all("trial_values" in p for p in at.values()):
        reasons.append("this summary has no per-trial values (written before the interval rule)")
    values = {side: _trial_values(at[side], key, side if cpu else None) for side in SIDES}
    return decide(dimension, values, unit, lower, margin, reasons)


def bracket(search: dict[str, Any]) -> tuple[float | None, float | None]:
    """[last rate held, first rate broken] of an SLO search (rebuilt from its steps for older summaries)."""
    if "bracket" in search:
        held, broken = search["bracket"]
        return held, broken
    steps = search.get("steps", [])
    held = max((st["offered_rps"] for st in steps if st["held"]), default=None)
    broken = min(
        (st["offered_rps"] for st in steps if not st["held"] and st["offered_rps"] > (held or 0)), default=None
    )
    return held, broken


def slo_line(summary: dict[str, Any]) -> dict[str, Any]:
    slo_ms = summary["options"].get("slo_ms")
    dimension = f"rate within the SLO (p99 ≤ {slo_ms:g} ms, open loop)" if slo_ms else "rate within the SLO"
    margin = MARGINS["slo"]
    line: dict[str, Any] = {"dimension": dimension, "ahead": None, "margin": margin, "reasons": []}
    searches = {s["target"].split("-")[0]: s for s in summary.get("slo", []) if s["batching"] == "off"}
    if not all(side in searches for side in SIDES):
        line["reasons"].append("not measured for both sides")
        line["text"] = "no verdict: not measured for both sides"
        return line
    brackets = {side: bracket(searches[side]) for side in SIDES}
    for side, (_held, broken) in brackets.items():
        if broken is None:
            continue
        step = next((st for st in searches[side]["steps"] if st["offered_rps"] == broken), None)
        if step and not step["reason"].startswith("p99 over"):
            line["reasons"].append(f"{SIDES[side]}'s first broken step ({_n(broken)} req/s): {step['reason']}")

    def show(side: str) -> str:
        held, broken = brackets[side]
        return f"{SIDES[side]} [{_n(held) if held else 'none held'}–{_n(broken) if broken else 'never broke'}]"

    shown = f"{show('tf')} and {show('torch')} req/s"
    line["brackets"] = {side: list(b) for side, b in brackets.items()}
    if line["reasons"]:
        line["text"] = f"no verdict: {'; '.join(line['reasons'])} ({shown})"
        return line
    for side, other in (("tf", "torch"), ("torch", "tf")):
        held, (_, other_broken) = brackets[side][0], brackets[other]
        if held is not None and other_broken is not None and held >= other_broken * (1 + margin):
            line |= {"ahead": side, "ratio": round(held / other_broken, 2)}
            line["text"] = (
                f"{SIDES[side]} ahead, at least {held / other_broken:.2f}×: its last rate held is above the other's "
                f"first rate broken by more than {margin * 100:g} % ({shown}: [last held–first broken])"
            )
            return line
    line["text"] = (
        f"no clear difference: the brackets are not {margin * 100:g} % apart ({shown}: [last held–first broken])"
    )
    return line


def _startup_lines(summary: dict[str, Any]) -> list[dict[str, Any]]:
    memory = "memory at idle (cgroup memory or PSS of the tree)"
    start = "start-up (process start to first correct prediction)"
    s = summary.get("startup") or {}
    if not all(side in s for side in SIDES):
        return [_missing(memory, "start-up not measured (--no-startup)"), _missing(start, "not measured")]

    def samples(side: str, key: str, single: str) -> list[float]:
        return [float(v) for v in s[side].get(key, [s[side][single]])]

    rss = {side: samples(side, "idle_rss_samples_mb", "idle_rss_mb") for side in SIDES}
    starts = {side: samples(side, "start_samples_s", "start_to_first_prediction_s") for side in SIDES}
    return [
        decide(memory, rss, "MB", True, MARGINS["memory"], what="starts"),
        decide(start, starts, "s", True, MARGINS["startup"], what="starts"),
    ]


def _missing(dimension: str, why: str) -> dict[str, Any]:
    return {"dimension": dimension, "ahead": None, "reasons": [why], "text": f"no verdict: {why}"}


def verdict(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Six lines: latency, throughput, CPU, memory, start-up, SLO rate; each names a side or says why not."""
    rows = min(summary["options"]["rows"])
    points = [p for p in summary["points"] if p["batching"] == "off" and p["rows"] == rows]
    direct = {side: [p for p in points if p["target"] == f"{side}-direct"] for side in SIDES}
    out: list[dict[str, Any]] = []
    if all(direct.values()):
        low = min(p["users"] for p in direct["tf"])
        at = {side: next((p for p in direct[side] if p["users"] == low), direct[side][0]) for side in SIDES}
        dim = f"latency at low load (p50, {low} user{'s' if low > 1 else ''})"
        out.append(_sweep_line(dim, at, "p50", "ms", True, MARGINS["latency"]))
        best = {side: max(direct[side], key=lambda p: p["rps"]["median"]) for side in SIDES}
        dim = f"max throughput (best concurrency: TF side {best['tf']['users']}, TorchServe {best['torch']['users']})"
        out.append(_sweep_line(dim, best, "rps", "req/s", False, MARGINS["throughput"]))
        mid = {side: max((p for p in direct[side] if p["users"] <= 16), key=lambda p: p["users"]) for side in SIDES}
        dim = f"server CPU per request ({mid['tf']['users']} users)"
        out.append(_sweep_line(dim, mid, "cpu_us_per_request", "µs", True, MARGINS["cpu"], cpu=True))
    else:
        why = "each side's direct point was not measured (targets tf-direct and torch-direct, batching off)"
        out += [_missing(d, why) for d in ("latency at low load", "max throughput", "server CPU per request")]
    out += _startup_lines(summary)
    out.append(slo_line(summary))
    return out
