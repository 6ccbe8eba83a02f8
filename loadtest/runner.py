"""The benchmark: a concurrency sweep over every target, an SLO search per backend, batching on/off.

Locust runs headless as a subprocess per (target, concurrency) so each measurement starts clean; targets are
interleaved at every concurrency level so that machine noise hits both backends alike.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from loadtest.payloads import payloads
from loadtest.targets import PATHS, TARGETS
from stack.config import ROOT, StackConfig
from stack.launcher import NativeStack

LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"
PERCENTILES = ["50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%"]
DIRECT = {"tf": "tf-direct", "torch": "torch-direct"}
VIA_GATEWAY = {"tf": "gateway-tf", "torch": "gateway-torch"}


class StageFailed(RuntimeError):
    """A benchmark stage failed; the message says which and why."""


@dataclass
class BenchOptions:
    users: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    duration_s: float = 8.0
    targets: list[str] = field(default_factory=lambda: list(TARGETS))
    batch_size: int = 1
    batching: list[str] = field(default_factory=lambda: ["off"])
    slo_ms: float | None = 50.0
    slo_users: int = 16
    slo_duration_s: float = 6.0
    slo_start_rps: float = 50.0
    slo_growth: float = 2.0
    slo_max_steps: int = 8
    slo_refine_steps: int = 2
    slo_targets: list[str] = field(default_factory=lambda: ["tf-direct", "torch-direct"])


@dataclass
class Measurement:
    target: str
    users: int
    batching: str
    requests: int
    failures: int
    rps: float
    p50: float
    p90: float
    p99: float
    max: float
    avg: float
    percentiles: dict[str, float]
    failure_samples: list[str]
    rate_per_user: float = 0.0


def locust_env(cfg: StackConfig, batch_size: int, rate_per_user: float = 0.0) -> dict[str, str]:
    return {
        **os.environ,
        "LOADTEST_TF_URL": cfg.tf_rest_url,
        "LOADTEST_TS_URL": cfg.ts_inference_url,
        "LOADTEST_GATEWAY_URL": cfg.gateway_url,
        "LOADTEST_MODEL_NAME": cfg.model_name,
        "LOADTEST_BATCH_SIZE": str(batch_size),
        "LOADTEST_RATE_PER_USER": str(rate_per_user),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def locust_command(users: int, duration_s: float, out_prefix: Path, classes: list[str], *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "-u", str(users), "-r", str(max(users, 1) * 10), "-t", f"{max(duration_s, 1):.0f}s",
        "--csv", str(out_prefix), "--html", f"{out_prefix}.html", "--only-summary", "--stop-timeout", "2",
        "--exit-code-on-error", "0", "--loglevel", "WARNING", *extra, *classes,
    ]  # fmt: skip


def run_locust(
    cfg: StackConfig,
    target: str,
    users: int,
    duration_s: float,
    out_prefix: Path,
    batch_size: int,
    batching: str,
    rate_per_user: float = 0.0,
) -> Measurement:
    """One headless locust run of one target; its CSVs and HTML land next to `out_prefix`."""
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    cmd = locust_command(users, duration_s, out_prefix, [TARGETS[target]])
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        env=locust_env(cfg, batch_size, rate_per_user),
        capture_output=True,
        text=True,
        timeout=duration_s + 120,
    )
    if proc.returncode != 0:
        raise StageFailed(f"locust run {target} x{users} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return parse_stats(out_prefix, target, users, batching, rate_per_user)


def parse_stats(prefix: Path, target: str, users: int, batching: str, rate_per_user: float = 0.0) -> Measurement:
    stats_file = Path(f"{prefix}_stats.csv")
    if not stats_file.exists():
        raise StageFailed(f"locust wrote no {stats_file.name}")
    with stats_file.open() as fh:
        rows = {r["Name"]: r for r in csv.DictReader(fh)}
    agg = rows.get("Aggregated")
    if agg is None:
        raise StageFailed(f"{stats_file.name} has no Aggregated row")
    failures_file = Path(f"{prefix}_failures.csv")
    samples: list[str] = []
    if failures_file.exists():
        with failures_file.open() as fh:
            samples = [f"{r['Occurrences']}x {r['Error']}" for r in csv.DictReader(fh)][:5]

    def num(key: str) -> float:
        value = agg.get(key, "")
        return float(value) if value not in ("", "N/A") else 0.0

    return Measurement(
        target=target, users=users, batching=batching,
        requests=int(num("Request Count")), failures=int(num("Failure Count")), rps=num("Requests/s"),
        p50=num("50%"), p90=num("90%"), p99=num("99%"), max=num("Max Response Time"),
        avg=num("Average Response Time"), percentiles={p: num(p) for p in PERCENTILES},
        failure_samples=samples, rate_per_user=rate_per_user,
    )  # fmt: skip


def warm_up(cfg: StackConfig, targets: list[str], batch_size: int, n: int = 20) -> None:
    """A few requests per target so first-connection and lazy-init costs stay out of the figures."""
    body = payloads(batch_size)[0].body
    bases = {"tf-direct": cfg.tf_rest_url, "torch-direct": cfg.ts_inference_url}
    urls = {t: bases.get(t, cfg.gateway_url) + PATHS[t].format(model=cfg.model_name) for t in targets}
    with httpx.Client(timeout=10, headers={"content-type": "application/json"}) as client:
        for target in targets:
            for _ in range(n):
                r = client.post(urls[target], content=body)
                if r.status_code != 200:
                    raise StageFailed(f"warm-up of {target} answered {r.status_code}: {r.text[:300]}")


def sweep(
    cfg: StackConfig, opts: BenchOptions, out: Path, batching: str, log: Callable[[str], None]
) -> list[Measurement]:
    results = []
    total = len(opts.users) * len(opts.targets)
    done = 0
    for level, users in enumerate(opts.users):
        # Rotate the order at each level: neither backend always goes first (or right after the other).
        order = opts.targets[level % len(opts.targets) :] + opts.targets[: level % len(opts.targets)]
        for target in order:
            done += 1
            log(f"   [{done}/{total}] batching {batching}: {target} with {users} users for {opts.duration_s:.0f}s")
            m = run_locust(
                cfg,
                target,
                users,
                opts.duration_s,
                out / "csv" / f"{batching}-{target}-u{users}",
                opts.batch_size,
                batching,
            )
            log(f"      {m.rps:8.1f} req/s  p50 {m.p50:6.1f} ms  p99 {m.p99:6.1f} ms  failures {m.failures}")
            results.append(m)
    return results


def slo_search(
    cfg: StackConfig,
    opts: BenchOptions,
    out: Path,
    batching: str,
    log: Callable[[str], None],
    measure: Callable[..., Measurement] | None = None,
) -> list[dict[str, object]]:
    """MLPerf-Server-like: raise the offered rate until p99 breaks the bound (doubling), then bisect between the
    last rate that held and the first that broke; report the best achieved rate that held."""
    assert opts.slo_ms is not None
    slo_ms = opts.slo_ms
    found = []
    for target in opts.slo_targets:
        steps: list[dict[str, object]] = []

        def attempt(rate: float, target: str = target, steps: list[dict[str, object]] = steps) -> tuple[bool, float]:
            def once() -> tuple[Measurement, str]:
                m = (measure or run_locust)(
                    cfg,
                    target,
                    opts.slo_users,
                    opts.slo_duration_s,
                    out / "csv" / f"{batching}-slo-{target}-{len(steps)}",
                    opts.batch_size,
                    batching,
                    rate_per_user=rate / opts.slo_users,
                )
                reason = (
                    f"{m.failures} failures"
                    if m.failures
                    else "cannot keep up with the offered rate"
                    if m.rps < 0.9 * rate
                    else f"p99 over {slo_ms:.0f} ms"
                    if m.p99 > slo_ms
                    else "holds"
                )
                log(
                    f"   SLO {target}: offered {rate:7.1f} req/s -> {m.rps:7.1f} req/s, p99 {m.p99:.1f} ms "
                    f"({m.requests} requests): {reason}"
                )
                steps.append({
                    "offered_rps": round(rate, 1), "achieved_rps": m.rps, "p99_ms": m.p99, "failures": m.failures,
                    "requests": m.requests, "held": reason == "holds", "reason": reason,
                })  # fmt: skip
                return m, reason

            m, reason = once()
            if reason.startswith("p99 over"):
                # One tail is not a verdict: a step that broke the bound on latency alone is measured once more
                # and fails only if the repeat fails too.
                m, reason = once()
                steps[-1]["retry"] = True
            return reason == "holds", m.rps

        best: float | None = None
        low, high, rate = 0.0, None, opts.slo_start_rps
        for _ in range(opts.slo_max_steps):
            held, achieved = attempt(rate)
            if not held:
                high = rate
                break
            best, low = max(best or 0.0, achieved), rate
            rate *= opts.slo_growth
        for _ in range(opts.slo_refine_steps if high is not None and low > 0 else 0):
            mid = (low + high) / 2  # type: ignore[operator]
            held, achieved = attempt(mid)
            if held:
                best, low = max(best or 0.0, achieved), mid
            else:
                high = mid
        found.append(
            {"target": target, "batching": batching, "slo_p99_ms": slo_ms, "max_rps_within_slo": best, "steps": steps}
        )
    return found


def batching_overrides(mode: str, cfg: StackConfig, rows_per_request: int = 1) -> dict[str, str]:
    """'off': no server-side batching on either side. 'on': the same budget on both, counted in *rows*.

    TF Serving's max_batch_size counts rows; TorchServe's batchSize counts requests. So the mode is one row budget
    (TF_MAX_BATCH_SIZE, raised to the request's rows if smaller: TF Serving refuses a request larger than its
    batch) and TorchServe gets as many requests as fit in it; both wait the same time for a batch to fill."""
    if mode == "off":
        return {"TF_BATCHING": "false", "TS_BATCH_SIZE": "1"}
    max_rows = max(cfg.tf_max_batch_size, rows_per_request)
    return {
        "TF_BATCHING": "true",
        "TF_MAX_BATCH_SIZE": str(max_rows),
        "TS_BATCH_SIZE": str(max(1, max_rows // rows_per_request)),
        "TS_MAX_BATCH_DELAY_MS": str(max(1, round(cfg.tf_batch_timeout_micros / 1000))),
    }


def verify_settings(mode: str, stack: NativeStack) -> dict[str, dict[str, object]]:
    """Ask the running servers what they use; refuse to measure a mode they don't run."""
    from stack.effective import expected, mismatches

    try:
        actual = stack.effective()
    except (httpx.HTTPError, ValueError, OSError) as exc:
        raise StageFailed(f"batching {mode}: could not read the servers' settings back: {exc}") from exc
    problems = mismatches(expected(stack.cfg), actual)
    if problems:
        raise StageFailed(
            f"batching {mode}: the servers do not run what this mode asked for, so it is not measured: "
            + "; ".join(problems)
        )
    return actual


@contextmanager
def _stack_for(
    mode: str,
    base: StackConfig,
    existing: NativeStack | None,
    run_dir: Path,
    rows_per_request: int,
    log: Callable[[str], None],
) -> Iterator[NativeStack]:
    if existing is not None:
        yield existing
        return
    cfg = StackConfig.load(batching_overrides(mode, base, rows_per_request))
    stack = NativeStack(cfg, run_dir=run_dir / f"stack-{mode}")
    log(f"== starting the native stack (batching {mode})")
    stack.up(log=lambda line: log("   " + line))
    try:
        yield stack
    finally:
        log("== stopping the native stack")
        stack.down(log=lambda line: log("   " + line))


def bench(
    opts: BenchOptions, out: Path, stack: NativeStack | None = None, log: Callable[[str], None] = print
) -> dict[str, object]:
    """Run everything, write `summary.json` and the report into `out`; the stack is always stopped."""
    from loadtest import report

    out.mkdir(parents=True, exist_ok=True)
    base = StackConfig.load()
    measurements: list[Measurement] = []
    slo: list[dict[str, object]] = []
    in_force: dict[str, object] = {}
    started = time.time()
    for mode in opts.batching:
        with _stack_for(mode, base, stack, out, opts.batch_size, log) as running:
            cfg = running.cfg
            in_force[mode] = verify_settings(mode, running)
            log(f"== settings in force, as the servers report them: {in_force[mode]}")
            log(f"== warm-up ({', '.join(opts.targets)})")
            warm_up(cfg, opts.targets, opts.batch_size)
            log(f"== concurrency sweep {opts.users}, {opts.duration_s:.0f}s per run")
            measurements += sweep(cfg, opts, out, mode, log)
            if opts.slo_ms:
                log(f"== SLO search: p99 <= {opts.slo_ms:.0f} ms, {opts.slo_users} paced users")
                slo += slo_search(cfg, opts, out, mode, log)
    summary = {
        "options": asdict(opts),
        "environment": report.environment(base, opts),
        "settings_in_force": in_force,
        "measurements": [asdict(m) for m in measurements],
        "slo": slo,
        "wall_s": round(time.time() - started, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    report.write_report(summary, out)
    overhead = report.gateway_overhead(summary["measurements"])  # type: ignore[arg-type]
    if overhead:
        log("== gateway added latency vs calling the backend directly (same concurrency):")
        for row in overhead:
            log(
                f"   {row['backend']:5s} [{row['batching']}] {row['users']:3d} users: +{row['added_p50_ms']} ms p50, "
                f"+{row['added_p99_ms']} ms p99, throughput x{row['throughput_ratio']}"
            )
    return summary
