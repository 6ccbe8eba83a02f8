"""The gateway's cost as a hop, measured against yardsticks in one interleaved run (`python -m loadtest overhead`).

One sequential client (1 user, keep-alive; loadtest/drive/interleave.py) calls, at 1 and 64 rows per request, a
backend directly, through the gateway and through a bare aiohttp passthrough (bytes in/out,
loadtest/drive/passthrough.py) in turn, request by request, the same payload on all three. A round is one backend
for `duration_s`; rounds alternate the backends. Reported per backend and rows:
- p50/p99 added over the direct call in the same round (median and range over rounds), for the gateway and for the
  passthrough, and their ratio (the goal, issue 24: <= 1.25x at 1 row and at 64);
- the CPU µs per request of the gateway's and the passthrough's process trees, and the client's own (the goal:
  <= 400 µs of gateway CPU a request at 1 row).

Why request by request: with a few seconds per route in turn (the first design), the machine's drift between
those seconds (the direct p50 moved 4-6 ms at 64 rows) was larger than the hop being measured.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from loadtest.bench import _pid, run_driver
from loadtest.measure.processes import TreeMeter
from loadtest.report.decision import ratio_interval, seed_for
from stack.config import ROOT
from stack.launcher import NativeStack, free_port

GOALS = {1: 1.25, 64: 1.25}  # rows -> the most the gateway may add over the passthrough, as a ratio of added p50s
CPU_GOALS_US = {1: 400}  # rows -> the most gateway CPU a request may cost, µs
MIN_ADDED_MS = 0.02  # a passthrough adding less than this in some round: the ratio's denominator is noise


def hop_ratio(gateway: list[float], passthrough: list[float], name: str) -> dict[str, Any]:
    """The gateway's added p50 over the passthrough's, paired per round: the ratio of the means over rounds and its
    bootstrap interval (loadtest/report/decision.py). None where the passthrough added next to nothing in a round:
    a ratio over a denominator near 0 explodes without meaning anything."""
    if len(passthrough) < 2 or min(passthrough) < MIN_ADDED_MS:
        return {"ratio_p50": None, "ratio_p50_interval": None,
                "ratio_note": f"the passthrough added < {MIN_ADDED_MS} ms in a round, or too few rounds"}  # fmt: skip
    r = ratio_interval(passthrough, gateway, seed_for(name))
    return {"ratio_p50": round(r.value, 2), "ratio_p50_interval": [round(r.low, 2), round(r.high, 2)]}


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


def run_interleaved(routes: dict[str, tuple[str, str]], rows: int, duration_s: float) -> dict[str, Any]:
    """routes: name -> (kind, URL with path); loadtest/drive/interleave.py in its own process."""
    args = ["--rows", str(rows), "--duration", str(duration_s)]
    for name, (kind, url) in routes.items():
        args += ["--route", name, kind, url]
    return run_driver("interleave", args, duration_s, ", ".join(routes))


def measure_overhead(
    stack: NativeStack, rows_list: list[int], trials: int, duration_s: float, log: Callable[[str], None]
) -> dict[str, Any]:
    """`duration_s` per round: one backend, its three routes in turn (each gets about a third of the requests)."""
    cfg = stack.cfg
    proc, passthrough = start_passthrough(stack)
    direct = {
        "tf": f"{cfg.tf_rest_url}/v1/models/{cfg.model_name}:predict",
        "torch": f"{cfg.ts_inference_url}/predictions/{cfg.model_name}",
    }
    routes = {
        b: {
            f"{b}-direct": (b, direct[b]),
            f"{b}-gateway": (b, f"{cfg.gateway_url}/predict/{b}"),
            f"{b}-passthrough": (b, f"{passthrough}/{b}"),
        }
        for b in ("tf", "torch")
    }
    pids = {"gateway": _pid(stack, "gateway"), "passthrough": proc.pid}
    runs: list[dict[str, Any]] = []
    try:
        for rows in rows_list:
            for b in routes:  # warm every route and connection
                run_interleaved(routes[b], rows, 0.5)
            for trial in range(trials):
                for b in ("tf", "torch") if trial % 2 == 0 else ("torch", "tf"):
                    with TreeMeter(pids) as meter:
                        r = run_interleaved(routes[b], rows, duration_s)
                    for name, route in r["routes"].items():
                        hop = name.split("-", 1)[1]
                        n = max(route["requests"], 1)
                        tree = meter.result.get(hop)
                        runs.append({
                            "route": name, "rows": rows, "trial": trial, "p50": route["p50"], "p99": route["p99"],
                            "requests": route["requests"], "failures": route["failures"],
                            "failure_samples": route["failure_samples"],
                            "cpu_us": {hop: tree["cpu_s"] * 1e6 / n} if tree else {},
                            "client_cpu_us": r["generator_cpu_us_per_request"],
                        })  # fmt: skip
                    added = {
                        hop: r["routes"][f"{b}-{hop}"]["p50"] - r["routes"][f"{b}-direct"]["p50"]
                        for hop in ("gateway", "passthrough")
                    }
                    log(
                        f"   overhead [rows {rows} round {trial + 1}] {b:5s} direct p50 "
                        f"{r['routes'][f'{b}-direct']['p50']:.3f} ms, added: gateway {added['gateway']:+.3f} ms, "
                        f"passthrough {added['passthrough']:+.3f} ms"
                    )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return summarize(runs, rows_list)


def summarize(runs: list[dict[str, Any]], rows_list: list[int]) -> dict[str, Any]:
    """Added latency as paired differences: each round's hop p50 minus the same round's direct p50 (the routes of a
    round were called in turn, request by request), then the median and range over rounds. The machine drifts
    between rounds; pairing keeps that drift out of the difference. The gateway-to-passthrough ratio is of the
    means of those differences over rounds, with a bootstrap interval."""

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
                **hop_ratio(added["gateway"], added["passthrough"], f"{b}-{rows}"), "goal": GOALS.get(rows),
                "gateway_cpu_us": round(cpu(f"{b}-gateway", rows, "gateway")), "cpu_goal_us": CPU_GOALS_US.get(rows),
                "passthrough_cpu_us": round(cpu(f"{b}-passthrough", rows, "passthrough")),
                "client_cpu_us": round(med(f"{b}-direct", rows, "client_cpu_us")),
            })  # fmt: skip
    return {"table": table, "runs": runs, "failures": sum(r["failures"] for r in runs)}
