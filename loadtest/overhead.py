"""The gateway's cost as a hop, measured against yardsticks in one interleaved run (`python -m loadtest overhead`).

A lean sequential client (1 user, keep-alive) calls, at 1 and 64 rows per request, round after round with the
order rotated: each backend directly, through the gateway, and through a bare aiohttp passthrough (bytes in/out,
loadtest/drive/passthrough.py). Reported per backend and rows:
- p50/p99 added over the direct call of the same round (paired differences, median and range over rounds), for
  the gateway and for the passthrough;
- their ratio (the goal: ≤ 1.25× at 1 row, ≤ 1.5× at 64);
- the CPU µs per request of the gateway's and the passthrough's process trees.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from loadtest.bench import _pid, run_lean_at
from loadtest.measure.processes import TreeMeter
from stack.config import ROOT
from stack.launcher import NativeStack, free_port

GOALS = {1: 1.25, 64: 1.5}


def start_passthrough(stack: NativeStack) -> tuple[subprocess.Popen[bytes], str]:
    cfg, port = stack.cfg, free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.drive.passthrough", "--port", str(port),
         "--tf-url", f"{cfg.tf_rest_url}/v1/models/{cfg.model_name}:predict",
         "--torch-url", f"{cfg.ts_inference_url}/predictions/{cfg.model_name}"],
        cwd=ROOT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=0.5)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the passthrough did not start")


def measure_overhead(
    stack: NativeStack, rows_list: list[int], trials: int, duration_s: float, log: Callable[[str], None]
) -> dict[str, Any]:
    cfg = stack.cfg
    proc, passthrough = start_passthrough(stack)
    paths = {"tf": f"/v1/models/{cfg.model_name}:predict", "torch": f"/predictions/{cfg.model_name}"}
    routes = {
        f"{b}-{hop}": (url, path, b)
        for b in ("tf", "torch")
        for hop, (url, path) in {
            "direct": (cfg.tf_rest_url if b == "tf" else cfg.ts_inference_url, paths[b]),
            "gateway": (cfg.gateway_url, f"/predict/{b}"),
            "passthrough": (passthrough, f"/{b}"),
        }.items()
    }
    pids = {"gateway": _pid(stack, "gateway"), "passthrough": proc.pid}
    runs: list[dict[str, Any]] = []
    try:
        for rows in rows_list:
            for url, path, backend in routes.values():  # warm every route and connection
                run_lean_at(url, path, backend, 1, 0.3, rows)
            for trial in range(trials):
                order = list(routes)
                shift = trial % len(order)
                for name in order[shift:] + order[:shift]:
                    url, path, backend = routes[name]
                    with TreeMeter(pids) as meter:
                        r = run_lean_at(url, path, backend, 1, duration_s, rows)
                    n = max(r["requests"], 1)
                    runs.append({
                        "route": name, "rows": rows, "trial": trial, "p50": r["latency"]["p50"],
                        "p99": r["latency"]["p99"], "rps": r["rps"], "failures": r["failures"],
                        "cpu_us": {k: m["cpu_s"] * 1e6 / n for k, m in meter.result.items()},
                    })  # fmt: skip
                    log(f"   overhead [rows {rows} trial {trial + 1}] {name:18s} p50 {r['latency']['p50']} ms")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return summarize(runs, rows_list)


def summarize(runs: list[dict[str, Any]], rows_list: list[int]) -> dict[str, Any]:
    """Added latency as paired differences: each round's hop p50 minus the same round's direct p50, then the median
    and range over rounds. The machine drifts between rounds (at 64 rows the direct p50 moved 4-6 ms); within a
    round it mostly doesn't, so pairing keeps that drift out of the difference."""

    def med(route: str, rows: int, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["route"] == route and r["rows"] == rows)

    def cpu(route: str, rows: int, tree: str) -> float:
        return statistics.median(r["cpu_us"][tree] for r in runs if r["route"] == route and r["rows"] == rows)

    def paired(route: str, rows: int, key: str) -> list[float]:
        by_trial = {(r["route"], r["trial"]): r[key] for r in runs if r["rows"] == rows}
        base = route.split("-")[0] + "-direct"
        return [
            v - by_trial[(base, trial)]
            for (name, trial), v in by_trial.items()
            if name == route and (base, trial) in by_trial
        ]

    table = []
    for rows in rows_list:
        for b in ("tf", "torch"):
            added = {hop: paired(f"{b}-{hop}", rows, "p50") for hop in ("gateway", "passthrough")}
            added99 = {hop: paired(f"{b}-{hop}", rows, "p99") for hop in ("gateway", "passthrough")}
            mid = {hop: statistics.median(v) for hop, v in added.items()}
            ratio = mid["gateway"] / mid["passthrough"] if mid["passthrough"] > 0 else None
            table.append({
                "backend": b, "rows": rows, "direct_p50_ms": round(med(f"{b}-direct", rows, "p50"), 3),
                "gateway_added_p50_ms": round(mid["gateway"], 3),
                "gateway_added_p50_range": [round(min(added["gateway"]), 3), round(max(added["gateway"]), 3)],
                "passthrough_added_p50_ms": round(mid["passthrough"], 3),
                "passthrough_added_p50_range": [
                    round(min(added["passthrough"]), 3), round(max(added["passthrough"]), 3)
                ],
                "gateway_added_p99_ms": round(statistics.median(added99["gateway"]), 3),
                "passthrough_added_p99_ms": round(statistics.median(added99["passthrough"]), 3),
                "ratio_p50": round(ratio, 2) if ratio is not None else None, "goal": GOALS.get(rows),
                "gateway_cpu_us": round(cpu(f"{b}-gateway", rows, "gateway")),
                "passthrough_cpu_us": round(cpu(f"{b}-passthrough", rows, "passthrough")),
            })  # fmt: skip
    return {"table": table, "runs": runs, "failures": sum(r["failures"] for r in runs)}
