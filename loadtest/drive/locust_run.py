"""Locust, headless, one subprocess per run: what compose, k8s and users run, here with exact latencies.

Locust's own CSV/HTML stay as raw data; the latency figures come from the locustfile's HDR histograms
(LOADTEST_HDR_OUT), not from locust's whole-millisecond buckets.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from loadtest.targets import TARGETS
from stack.config import ROOT, StackConfig

LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"


class LocustFailed(RuntimeError):
    """Locust exited with an error or wrote no statistics."""


def locust_env(cfg: StackConfig, rows: int, rate_per_user: float = 0.0, hdr_out: Path | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "LOADTEST_TF_URL": cfg.tf_rest_url,
        "LOADTEST_TS_URL": cfg.ts_inference_url,
        "LOADTEST_GATEWAY_URL": cfg.gateway_url,
        "LOADTEST_MODEL_NAME": cfg.model_name,
        "LOADTEST_BATCH_SIZE": str(rows),
        "LOADTEST_RATE_PER_USER": str(rate_per_user),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    if hdr_out is not None:
        env["LOADTEST_HDR_OUT"] = str(hdr_out)
    return env


def run_seconds(duration_s: float) -> int:
    """Locust's -t takes whole seconds: a 2.5 s trial runs 3 s (rounding to nearest gave 2), and says so."""
    return max(1, math.ceil(duration_s))


def locust_command(users: int, duration_s: float, out_prefix: Path, classes: list[str], *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "-u", str(users), "-r", str(max(users, 1) * 10), "-t", f"{run_seconds(duration_s)}s",
        "--csv", str(out_prefix), "--html", f"{out_prefix}.html", "--only-summary", "--stop-timeout", "2",
        "--exit-code-on-error", "0", "--loglevel", "WARNING", *extra, *classes,
    ]  # fmt: skip


def run_locust(
    cfg: StackConfig,
    target: str,
    users: int,
    duration_s: float,
    out_prefix: Path,
    rows: int,
    rate_per_user: float = 0.0,
) -> dict[str, Any]:
    """One headless locust run of one target: requests, failures, rps, exact latency summary and encoded HDR."""
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    hdr_out = Path(f"{out_prefix}_hdr.json")
    proc = subprocess.run(
        locust_command(users, duration_s, out_prefix, [TARGETS[target]]),
        cwd=ROOT,
        env=locust_env(cfg, rows, rate_per_user, hdr_out),
        capture_output=True,
        text=True,
        timeout=duration_s + 120,
    )
    if proc.returncode != 0:
        raise LocustFailed(f"locust run {target} x{users} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    stats = parse_stats(out_prefix)
    exact = json.loads(hdr_out.read_text()).get(target, {}) if hdr_out.exists() else {}
    latency = {k: v for k, v in exact.items() if k != "hdr"}
    return {**stats, "latency": latency, "hdr": exact.get("hdr", ""), "duration_s": run_seconds(duration_s)}


def parse_stats(prefix: Path) -> dict[str, Any]:
    """Requests, good answers, failures, good answers per second and failure samples from locust's CSVs (its
    latency columns are not used)."""
    stats_file = Path(f"{prefix}_stats.csv")
    if not stats_file.exists():
        raise LocustFailed(f"locust wrote no {stats_file.name}")
    with stats_file.open() as fh:
        rows = {r["Name"]: r for r in csv.DictReader(fh)}
    agg = rows.get("Aggregated")
    if agg is None:
        raise LocustFailed(f"{stats_file.name} has no Aggregated row")
    failures_file = Path(f"{prefix}_failures.csv")
    samples: list[str] = []
    if failures_file.exists():
        with failures_file.open() as fh:
            samples = [f"{r['Occurrences']}x {r['Error']}" for r in csv.DictReader(fh)][:5]

    def num(key: str) -> float:
        value = agg.get(key, "")
        return float(value) if value not in ("", "N/A") else 0.0

    requests, failures = int(num("Request Count")), int(num("Failure Count"))
    return {
        "requests": requests,
        "ok": requests - failures,
        "failures": failures,
        "rps": round(max(0.0, num("Requests/s") - num("Failures/s")), 1),  # good answers per second
        "failure_samples": samples,
        "locust_p50_ms": num("50%"),  # locust's own whole-ms figure, kept to show the difference
    }
