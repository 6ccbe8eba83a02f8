"""The verdict: per dimension, which side is ahead and by how much, only where the spreads don't overlap."""

from __future__ import annotations

from typing import Any

SIDES = {"tf": "TF side", "torch": "TorchServe"}


def compare(a: dict[str, float], b: dict[str, float], lower_is_better: bool, margin: float = 0.0) -> str | None:
    """'a' or 'b' when its whole range is better than the other's (and by more than `margin` of the median, for
    single measurements with no range); None: no clear difference."""
    if lower_is_better:
        if a["max"] < b["min"] and b["median"] > a["median"] * (1 + margin):
            return "a"
        if b["max"] < a["min"] and a["median"] > b["median"] * (1 + margin):
            return "b"
    else:
        if a["min"] > b["max"] and a["median"] > b["median"] * (1 + margin):
            return "a"
        if b["min"] > a["max"] and b["median"] > a["median"] * (1 + margin):
            return "b"
    return None


def _fmt(s: dict[str, float], unit: str) -> str:
    if s["min"] == s["max"]:
        return f"{s['median']:g} {unit}"
    return f"{s['median']:g} {unit} [{s['min']:g}–{s['max']:g}]"


def _generator_limited(search: dict[str, Any]) -> bool:
    broken = [st for st in search["steps"] if not st["held"]]
    return any("generator" in st.get("reason", "") for st in broken)


def _single(value: float) -> dict[str, float]:
    return {"median": value, "min": value, "max": value}


def _line(
    dimension: str, tf: dict[str, float], torch: dict[str, float], unit: str, lower: bool, margin: float = 0.0
) -> dict[str, Any]:
    winner = compare(tf, torch, lower, margin)
    shown = f"TF side {_fmt(tf, unit)}, TorchServe {_fmt(torch, unit)}"
    if winner is None:
        return {"dimension": dimension, "ahead": None, "text": f"no clear difference ({shown})"}
    ahead, behind = (tf, torch) if winner == "a" else (torch, tf)
    ratio = (behind["median"] / ahead["median"]) if lower else (ahead["median"] / behind["median"])
    side = "tf" if winner == "a" else "torch"
    return {
        "dimension": dimension,
        "ahead": side,
        "ratio": round(ratio, 2),
        "text": f"{SIDES[side]} ahead, {ratio:.2f}× ({shown})",
    }


def verdict(summary: dict[str, Any]) -> list[dict[str, Any]]:
    points = [p for p in summary["points"] if p["batching"] == "off" and p["rows"] == min(summary["options"]["rows"])]
    direct = {side: [p for p in points if p["target"] == f"{side}-direct"] for side in SIDES}
    out: list[dict[str, Any]] = []
    if not all(direct.values()):
        return out
    low = min(p["users"] for p in direct["tf"])
    at = {side: next(p for p in direct[side] if p["users"] == low) for side in SIDES}
    out.append(
        _line(
            f"latency at low load (p50, {low} user{'s' if low > 1 else ''})",
            at["tf"]["p50"],
            at["torch"]["p50"],
            "ms",
            True,
        )
    )
    best = {side: max(direct[side], key=lambda p: p["rps"]["median"]) for side in SIDES}
    out.append(_line("max throughput (best concurrency)", best["tf"]["rps"], best["torch"]["rps"], "req/s", False))
    searches = {s["target"].split("-")[0]: s for s in summary.get("slo", []) if s["batching"] == "off"}
    slo = {side: s["max_rps_within_slo"] for side, s in searches.items()}
    if slo.get("tf") and slo.get("torch"):
        dimension = f"rate within the SLO (p99 ≤ {summary['options']['slo_ms']:g} ms, open loop)"
        limited = [SIDES[side] for side, s in searches.items() if _generator_limited(s)]
        if limited:
            text = (
                f"no verdict: the load generator fell behind its schedule in {' and '.join(limited)}'s search, so "
                f"those figures are lower bounds (TF side {slo['tf']:g} req/s, TorchServe {slo['torch']:g} req/s)"
            )
            out.append({"dimension": dimension, "ahead": None, "text": text})
        else:
            out.append(_line(dimension, _single(slo["tf"]), _single(slo["torch"]), "req/s", False, 0.10))
    mid = {side: max((p for p in direct[side] if p["users"] <= 16), key=lambda p: p["users"]) for side in SIDES}
    cpu = {side: mid[side]["cpu_us_per_request"].get(side) for side in SIDES}
    if all(cpu.values()):
        out.append(_line(f"server CPU per request ({mid['tf']['users']} users)", cpu["tf"], cpu["torch"], "µs", True))  # type: ignore[arg-type]
    start = summary.get("startup") or {}
    if "tf" in start and "torch" in start:
        tf, ts = start["tf"], start["torch"]
        rss = (tf.get("idle_rss") or _single(tf["idle_rss_mb"]), ts.get("idle_rss") or _single(ts["idle_rss_mb"]))
        out.append(_line("memory at idle (process tree RSS)", *rss, "MB", True, 0.20))
        starts = (
            tf.get("start_s") or _single(tf["start_to_first_prediction_s"]),
            ts.get("start_s") or _single(ts["start_to_first_prediction_s"]),
        )
        out.append(_line("start-up (process start to first correct prediction)", *starts, "s", True, 0.20))
    return out
