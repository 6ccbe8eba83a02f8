"""The soak benchmark: constant load through the gateway to both backends for minutes (loopback only).

Reports the error count (target 0), p99 drift from the start to the end of the run, and the gateway's
resident memory at start and end (growth would mean a leak).
"""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import threading
import time
from pathlib import Path

import psutil

from loadtest.bench import warm_up
from loadtest.drive.locust_run import locust_command, locust_env, parse_stats
from loadtest.measure import latency
from loadtest.targets import TARGETS
from stack.config import ROOT, StackConfig
from stack.launcher import NativeStack
from stack.registry import model as registry_model


def _sample_rss(pid: int, stop: threading.Event, samples: list[tuple[float, int]], every_s: float) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        samples.append((time.time(), proc.memory_info().rss))
        stop.wait(every_s)


def p99_drift(history_csv: Path) -> dict[str, float | None]:
    """Median rolling p99 over the first and the last fifth of the run (ramp-up rows skipped)."""
    with history_csv.open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["Name"] == "Aggregated" and r["99%"] not in ("N/A", "", "0")]
    values = [float(r["99%"]) for r in rows][2:]
    if len(values) < 5:
        return {"start_p99_ms": None, "end_p99_ms": None, "drift_ms": None}
    fifth = max(1, len(values) // 5)
    start, end = statistics.median(values[:fifth]), statistics.median(values[-fifth:])
    return {"start_p99_ms": start, "end_p99_ms": end, "drift_ms": round(end - start, 2)}


def soak(
    minutes: float, users: int, out: Path, stack: NativeStack | None = None, sample_every_s: float = 5.0, log=print
) -> dict[str, object]:  # type: ignore[no-untyped-def]
    out.mkdir(parents=True, exist_ok=True)
    own = stack is None
    cfg = StackConfig.load()
    stack = stack or NativeStack(cfg, run_dir=out / "stack", models=[registry_model(cfg.model_name)])
    if own:
        log("== starting the native stack")
        stack.up(log=lambda line: log("   " + line))
    try:
        cfg = stack.cfg
        warm_up(cfg, ["gateway-tf", "gateway-torch"], 1)
        pid = stack.pid_of("gateway")
        samples: list[tuple[float, int]] = []
        stop = threading.Event()
        sampler = threading.Thread(target=_sample_rss, args=(pid, stop, samples, sample_every_s), daemon=True)
        sampler.start()
        seconds = minutes * 60
        log(f"== soak: {users} users through the gateway to both backends for {seconds:.0f}s")
        prefix = out / "soak"
        cmd = locust_command(
            users, seconds, prefix, [TARGETS["gateway-tf"], TARGETS["gateway-torch"]], "--csv-full-history"
        )
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            env=locust_env(cfg, 1, hdr_out=Path(f"{prefix}_hdr.json")),
            capture_output=True,
            text=True,
            timeout=seconds + 120,
        )
        stop.set()
        sampler.join(timeout=10)
        if proc.returncode != 0:
            raise RuntimeError(f"locust exited {proc.returncode}: {proc.stderr[-2000:]}")
        total = parse_stats(prefix)
        exact_file = Path(f"{prefix}_hdr.json")
        hdrs = [v["hdr"] for v in json.loads(exact_file.read_text()).values()] if exact_file.exists() else []
        exact = latency.summary(latency.merge(hdrs))
        drift = p99_drift(Path(f"{prefix}_stats_history.csv"))
        rss_start, rss_end = samples[0][1], samples[-1][1]
        result: dict[str, object] = {
            "minutes": minutes, "users": users, "requests": total["requests"], "errors": total["failures"],
            "error_samples": total["failure_samples"], "rps": total["rps"], "p50_ms": exact.get("p50"),
            "p99_ms": exact.get("p99"),
            **drift,
            "gateway_rss_start_mb": round(rss_start / 2**20, 1), "gateway_rss_end_mb": round(rss_end / 2**20, 1),
            "gateway_rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 1),
            "rss_samples": len(samples),
        }  # fmt: skip
    finally:
        if own:
            log("== stopping the native stack")
            stack.down(log=lambda line: log("   " + line))
    (out / "soak.json").write_text(json.dumps(result, indent=2))
    lines = ["# Soak: constant load through the gateway to both backends", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in result.items()]
    (out / "soak.md").write_text("\n".join(lines) + "\n")
    log(
        f"== soak: {result['requests']} requests, {result['errors']} errors, p99 {result['start_p99_ms']} -> "
        f"{result['end_p99_ms']} ms, gateway RSS {result['gateway_rss_start_mb']} -> {result['gateway_rss_end_mb']} MB"
    )
    log(f"== written {out / 'soak.md'}")
    return result
