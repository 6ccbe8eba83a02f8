"""The benchmark's plan: dimensions x trials, interleaved, with a stability rule; then the open-loop SLO search.

For each batching mode (and, with batching on, each rows-per-request value, since TorchServe's batch counts
requests) a native stack is started, the servers are asked what they run with (refused if it is not what the mode
asked for), warmed up, and measured:
- start-up and footprint of each server, started alone (once per benchmark);
- the sweep: for every rows-per-request value and concurrency level, `trials` rounds over every target, the order
  rotated each round (ABAB, never AAABBB); a point whose throughput or p50 spreads more than `stable_within` over
  its trials gets more rounds, up to `max_trials`, and is marked unstable if it never settles;
- every run records exact latencies (HDR), the CPU time and peak memory of each server's process tree, the
  gateway's and the load generator's, and the servers' own latency metrics;
- the SLO search: open-loop Poisson arrivals, doubling then bisection, per direct target.
Everything lands in summary.json; loadtest/report/ turns that into the report without importing this module.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from loadtest.drive.locust_run import run_locust
from loadtest.measure import latency, server_metrics
from loadtest.measure.processes import TreeMeter
from loadtest.payloads import payloads
from loadtest.targets import PATHS, TARGETS
from stack.config import ROOT, StackConfig
from stack.launcher import NativeStack, free_port_overrides
from stack.registry import ModelSpec, load_registry
from stack.registry import model as registry_model

BACKEND_OF = {"tf-direct": "tf", "torch-direct": "torch", "gateway-tf": "tf", "gateway-torch": "torch"}
Log = Callable[[str], None]


class StageFailed(RuntimeError):
    """A benchmark stage failed; the message says which and why."""


@dataclass
class BenchOptions:
    users: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    rows: list[int] = field(default_factory=lambda: [1, 64])
    duration_s: float = 2.5
    trials: int = 3
    max_trials: int = 4
    stable_within: float = 0.10
    targets: list[str] = field(default_factory=lambda: list(TARGETS))
    batching: list[str] = field(default_factory=lambda: ["off"])
    driver: str = "lean"
    startup: bool = True
    overhead: bool = True
    overhead_trials: int = 3
    slo_ms: float | None = 50.0
    slo_targets: list[str] = field(default_factory=lambda: ["tf-direct", "torch-direct"])
    slo_start_rps: float = 100.0
    slo_growth: float = 2.0
    slo_max_steps: int = 8
    slo_refine_steps: int = 2
    slo_duration_s: float = 5.0
    slo_min_queries: int = 600
    models: list[str] = field(default_factory=list)  # registered names; empty: the default model


# ---- one run -----------------------------------------------------------------------------------------------------
def target_url(cfg: StackConfig, target: str) -> tuple[str, str]:
    bases = {"tf-direct": cfg.tf_rest_url, "torch-direct": cfg.ts_inference_url}
    return bases.get(target, cfg.gateway_url), PATHS[target].format(model=cfg.model_name)


def check_kind(target: str) -> str:
    return BACKEND_OF.get(target, "compare")


def run_lean(
    cfg: StackConfig, target: str, users: int, duration_s: float, rows: int, rate: float = 0.0,
    arrivals: int = 0, grace: float = 2.0,
) -> dict[str, Any]:  # fmt: skip
    """The lean driver in its own process (its CPU is its own, and it reports it)."""
    base, path = target_url(cfg, target)
    return run_lean_at(base, path, check_kind(target), users, duration_s, rows, rate, arrivals, grace)


def run_driver(module: str, args: list[str], duration_s: float, what: str) -> dict[str, Any]:
    """A load driver (`python -m loadtest.drive.<module>`) in its own process, its result JSON read back; a driver
    that fails is a StageFailed naming `what` it was driving."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, "-m", f"loadtest.drive.{module}", "--out", out.name, *args]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=duration_s + 120)
        if proc.returncode != 0:
            raise StageFailed(f"load generator for {what} exited {proc.returncode}: {proc.stderr[-2000:]}")
        return dict(json.loads(Path(out.name).read_text()))


def run_lean_at(
    base: str, path: str, kind: str, users: int, duration_s: float, rows: int, rate: float = 0.0,
    arrivals: int = 0, grace: float = 2.0,
) -> dict[str, Any]:  # fmt: skip
    args = {"--url": base, "--path": path, "--kind": kind, "--users": users, "--rate": rate,
            "--duration": duration_s, "--rows": rows, "--arrivals": arrivals, "--grace": grace}  # fmt: skip
    expected_s = max(duration_s, arrivals / rate if rate else 0.0) + grace
    return run_driver("lean", [str(x) for kv in args.items() for x in kv], expected_s, f"{base}{path}")


def _metrics_urls(cfg: StackConfig) -> dict[str, str]:
    from export.serving_config import TF_METRICS_PATH

    return {"tf": f"{cfg.tf_rest_url}{TF_METRICS_PATH}", "torch": f"{cfg.ts_metrics_url}/metrics"}


def _server_counters(cfg: StackConfig, backends: list[str]) -> dict[str, dict[str, float]]:
    urls, out = _metrics_urls(cfg), {}
    for b in backends:
        try:
            samples = server_metrics.scrape(urls[b])
        except httpx.HTTPError:
            continue
        out[b] = server_metrics.tf_counters(samples) if b == "tf" else server_metrics.torchserve_counters(samples)
    return out


def measure_run(
    stack: NativeStack,
    opts: BenchOptions,
    target: str,
    users: int,
    rows: int,
    batching: str,
    trial: int,
    csv_dir: Path,
) -> dict[str, Any]:
    """One measured run: the load, exact latencies, every process tree's CPU and memory, server-side time."""
    cfg = stack.cfg
    backends = [BACKEND_OF[target]] if target in BACKEND_OF else ["tf", "torch"]
    pids = {name: _pid(stack, name) for name in ("tf", "torch", "gateway")}
    before = _server_counters(cfg, backends)
    with TreeMeter(pids) as meter:
        if opts.driver == "locust":
            prefix = csv_dir / f"{batching}-r{rows}-{target}-u{users}-t{trial}"
            result = run_locust(cfg, target, users, opts.duration_s, prefix, rows)
            result["driver"] = "locust (FastHttpUser), exact latencies from its HDR hook"
        else:
            result = run_lean(cfg, target, users, opts.duration_s, rows)
    after = _server_counters(cfg, backends)
    result.setdefault("ok", result["requests"] - result["failures"])
    n = max(result["ok"], 1)  # CPU per *good* answer: failures are not served requests
    result |= {
        "target": target,
        "users": users,
        "rows": rows,
        "batching": batching,
        "trial": trial,
        "processes": meter.result,
        "cpu_us_per_request": {name: round(m["cpu_s"] * 1e6 / n, 1) for name, m in meter.result.items()},
        "server_time": {
            b: server_metrics.server_time(before[b], after[b]) for b in backends if b in before and b in after
        },
    }
    if "generator_cpu_s" in result:
        result["cpu_us_per_request"]["generator"] = round(result["generator_cpu_s"] * 1e6 / n, 1)
        result["generator_cpu_share"] = round(result["generator_cpu_s"] / max(result["wall_s"], 1e-9), 3)
    return result


def _pid(stack: NativeStack, name: str) -> int:
    names = {"tf": ("tf-serving", "tfserving-compat"), "torch": ("torchserve",), "gateway": ("gateway",)}[name]
    for proc, alive in stack.status():
        if proc.name in names and alive:
            return proc.pid
    return 0


# ---- the sweep ---------------------------------------------------------------------------------------------------
def spread(values: list[float]) -> float:
    """(max - min) / median: the stability rule's measure."""
    mid = statistics.median(values)
    return (max(values) - min(values)) / mid if mid else 0.0


def is_stable(runs: list[dict[str, Any]], within: float) -> bool:
    rps = [r["rps"] for r in runs]
    p50 = [r["latency"]["p50"] or 0.0 for r in runs]
    return spread(rps) <= within and spread(p50) <= within


def sweep(
    stack: NativeStack,
    opts: BenchOptions,
    rows: int,
    batching: str,
    out: Path,
    log: Log,
    measure: Callable[..., dict[str, Any]] = measure_run,
) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for level, users in enumerate(opts.users):
        by_target: dict[str, list[dict[str, Any]]] = {t: [] for t in opts.targets}
        pending = list(opts.targets)
        trial = 0
        while pending and trial < opts.max_trials:
            shift = (level + trial) % len(pending)
            for target in pending[shift:] + pending[:shift]:  # the order rotates every round
                r = measure(stack, opts, target, users, rows, batching, trial, out / "csv")
                by_target[target].append(r)
                runs.append(r)
                log(
                    f"   [{batching} rows {rows} users {users} trial {trial + 1}] {target:16s} {r['rps']:8.1f} req/s "
                    f"p50 {r['latency']['p50']} ms p99 {r['latency']['p99']} ms failures {r['failures']}"
                )
            trial += 1
            if trial >= opts.trials:
                pending = [t for t in pending if not is_stable(by_target[t], opts.stable_within)]
                if pending and trial < opts.max_trials:
                    log(f"   not yet stable within {opts.stable_within:.0%}: {', '.join(pending)}: another round")
    return runs


def aggregate(runs: list[dict[str, Any]], stable_within: float) -> list[dict[str, Any]]:
    """One point per (model, batching, rows, target, users): medians and min-max over trials, merged HDR percentiles."""
    groups: dict[tuple[str, str, int, str, int], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r.get("model", ""), r["batching"], r["rows"], r["target"], r["users"]), []).append(r)
    points = []
    for (model, batching, rows, target, users), rs in groups.items():

        def stat(values: list[float]) -> dict[str, float]:
            return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}

        merged_hist = latency.merge([r["hdr"] for r in rs if r.get("hdr")])
        merged = latency.summary(merged_hist)
        cpu_names = sorted({k for r in rs for k in r["cpu_us_per_request"]})
        server: dict[str, float | None] = {}
        for b in sorted({b for r in rs for b in r["server_time"]}):
            values = [r["server_time"][b]["mean_ms"] for r in rs if r["server_time"].get(b, {}).get("mean_ms")]
            server[b] = round(statistics.median(values), 3) if values else None
        point: dict[str, Any] = {
            "model": model,
            "batching": batching,
            "rows": rows,
            "target": target,
            "users": users,
            "trials": len(rs),
            "stable": is_stable(rs, stable_within) if len(rs) > 1 else False,
            "requests": sum(r["requests"] for r in rs),
            "failures": sum(r["failures"] for r in rs),
            "failure_samples": [s for r in rs for s in r["failure_samples"]][:5],
            "rps": stat([r["rps"] for r in rs]),
            "p50": stat([r["latency"]["p50"] or 0.0 for r in rs]),
            "p99": stat([r["latency"]["p99"] or 0.0 for r in rs]),
            "latency": merged,
            "cpu_us_per_request": {
                n: stat([r["cpu_us_per_request"][n] for r in rs if n in r["cpu_us_per_request"]]) for n in cpu_names
            },
            "peak_rss_mb": {
                n: max(r["processes"][n]["peak_rss_mb"] for r in rs if n in r["processes"])
                for n in sorted({n for r in rs for n in r["processes"]})
            },
            "server_mean_ms": server,
            "generator_cpu_share": statistics.median([r.get("generator_cpu_share", 0.0) for r in rs]),
            "driver": rs[0].get("driver", ""),
            "hdr": latency.encode(merged_hist),
        }
        point["warnings"] = warnings_for(point)
        points.append(point)
    return points


def warnings_for(point: dict[str, Any]) -> list[str]:
    out = []
    if point["generator_cpu_share"] > 0.8:
        out.append(f"the load generator used {point['generator_cpu_share']:.0%} of a core: it may be the limit")
    mean = point["latency"].get("mean")
    if point["users"] == 1 and mean and point["rps"]["median"] < 0.8 * 1000.0 / mean:
        out.append("1-user throughput is below 80% of 1/latency: time goes between requests (the generator?)")
    rps = point["rps"]
    if not point["stable"]:
        out.append(
            f"did not stabilise within {point['trials']} trials "
            f"(req/s spread {spread([rps['min'], rps['median'], rps['max']]):.0%})"
        )
    return out


# ---- the SLO search (open loop) ----------------------------------------------------------------------------------
def slo_search(
    stack: NativeStack,
    opts: BenchOptions,
    batching: str,
    log: Log,
    measure: Callable[..., dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """MLPerf-Server-like: Poisson arrivals at the offered rate, latency from the scheduled send time; doubling until
    p99 breaks the bound (or errors appear), then bisection. A step broken by p99 alone is measured again."""
    assert opts.slo_ms is not None
    slo_ms, found = opts.slo_ms, []
    run = measure or (lambda target, rate, duration: run_lean(stack.cfg, target, 0, duration, 1, rate=rate))
    for target in opts.slo_targets:
        steps: list[dict[str, Any]] = []

        def attempt(rate: float, target: str = target, steps: list[dict[str, Any]] = steps) -> tuple[bool, float]:
            def once() -> tuple[dict[str, Any], str]:
                duration = max(opts.slo_duration_s, opts.slo_min_queries / rate)
                r = run(target, rate, duration)
                p99 = r["latency"]["p99"] or 0.0
                reason = (
                    f"{r['failures']} failures"
                    if r["failures"]
                    else f"the server fell behind: {r['backlogged']} arrivals found 512 requests in flight"
                    if r.get("backlogged")
                    else "the generator fell behind its schedule"
                    if r.get("late_sends", 0) > 0.01 * max(r["requests"], 1)
                    else f"p99 over {slo_ms:g} ms"
                    if p99 > slo_ms
                    else "holds"
                )
                log(
                    f"   SLO {target}: offered {rate:7.1f} req/s -> {r['rps']:7.1f}, p99 {p99} ms "
                    f"({r['requests']} queries): {reason}"
                )
                steps.append(
                    {
                        "offered_rps": round(rate, 1),
                        "achieved_rps": r["rps"],
                        "p99_ms": p99,
                        "p50_ms": r["latency"]["p50"],
                        "requests": r["requests"],
                        "failures": r["failures"],
                        "late_sends": r.get("late_sends", 0),
                        "failure_samples": r.get("failure_samples", [])[:3],
                        "held": reason == "holds",
                        "reason": reason,
                    }
                )
                return r, reason

            r, reason = once()
            if reason.startswith("p99 over"):
                r, reason = once()
                steps[-1]["retry"] = True
            return reason == "holds", r["rps"]

        best: float | None = None
        low, high, rate = 0.0, None, opts.slo_start_rps
        for _ in range(opts.slo_max_steps):
            held, _achieved = attempt(rate)
            if not held:
                high = rate
                break
            best, low = max(best or 0.0, rate), rate
            rate *= opts.slo_growth
        for _ in range(opts.slo_refine_steps if high is not None and low > 0 else 0):
            mid = (low + high) / 2  # type: ignore[operator]
            held, _ = attempt(mid)
            if held:
                best, low = max(best or 0.0, mid), mid
            else:
                high = mid
        found.append(
            {
                "target": target,
                "batching": batching,
                "slo_p99_ms": slo_ms,
                "max_rps_within_slo": best,
                "steps": steps,
                "arrivals": "open loop, Poisson",
                "min_queries": opts.slo_min_queries,
            }
        )
    return found


# ---- stacks and settings -----------------------------------------------------------------------------------------
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


def warm_up(cfg: StackConfig, targets: list[str], rows: int, n: int = 50) -> None:
    """Requests per target so first-connection and lazy-init costs stay out of the figures."""
    body = payloads(rows)[0].body
    with httpx.Client(timeout=10, headers={"content-type": "application/json"}) as client:
        for target in targets:
            base, path = target_url(cfg, target)
            for _ in range(n):
                r = client.post(base + path, content=body)
                if r.status_code != 200:
                    raise StageFailed(f"warm-up of {target} answered {r.status_code}: {r.text[:300]}")


@contextmanager
def stack_for(
    mode: str,
    rows: int,
    base: StackConfig,
    existing: NativeStack | None,
    run_dir: Path,
    log: Log,
    spec: ModelSpec | None = None,
) -> Iterator[NativeStack]:
    if existing is not None:
        yield existing
        return
    cfg = StackConfig.load({**(spec.stack_overrides() if spec else {}), **batching_overrides(mode, base, rows)})
    # The servers load only the model measured: another model's workers would take CPU and memory from it.
    suffix = f"-{spec.name}" if spec else ""
    stack = NativeStack(cfg, run_dir=run_dir / f"stack{suffix}-{mode}-r{rows}", models=[spec] if spec else None)
    log(f"== starting the native stack (batching {mode}{', model ' + spec.name if spec else ''})")
    stack.up(log=lambda line: log("   " + line))
    try:
        yield stack
    finally:
        log("== stopping the native stack")
        stack.down(log=lambda line: log("   " + line))


def stack_plan(opts: BenchOptions) -> list[tuple[str, list[int]]]:
    """Which stacks to start: batching off serves every rows value; on needs one per rows value (TorchServe's batch
    size counts requests, so the same row budget is a different setting for each rows-per-request)."""
    plan: list[tuple[str, list[int]]] = []
    for mode in opts.batching:
        plan += [(mode, list(opts.rows))] if mode == "off" else [(mode, [rows]) for rows in opts.rows]
    return plan


def _startup(base: StackConfig, out: Path, log: Log) -> dict[str, Any]:
    from loadtest.measure.startup import measure_startup

    log("== start-up and footprint (each server alone)")
    cfg = StackConfig.load({**batching_overrides("off", base), **free_port_overrides()})
    result = measure_startup(cfg, out / "startup")
    for side, r in result.items():
        log(
            f"   {side}: first correct prediction {r['start_to_first_prediction_s']} s after start, "
            f"idle {r['idle_rss_mb']} MB"
        )
    return result


def parameters(spec: ModelSpec) -> int | None:
    """Weights of an MLP the registry describes (builtin models); None for a user's model."""
    if not spec.hidden:
        return None
    widths = [spec.width, *spec.hidden, spec.classes]
    return sum(a * b + b for a, b in itertools.pairwise(widths))


def bench(opts: BenchOptions, out: Path, stack: NativeStack | None = None, log: Log = print) -> dict[str, Any]:
    """Run everything, write `summary.json` and the report into `out`; every stack it starts is stopped."""
    from loadtest import report
    from loadtest.measure.environment import environment

    out.mkdir(parents=True, exist_ok=True)
    base = StackConfig.load()
    started = time.time()
    runs: list[dict[str, Any]] = []
    slo: list[dict[str, Any]] = []
    in_force: dict[str, Any] = {}
    overhead: dict[str, Any] = {}
    startup = _startup(base, out, log) if opts.startup else {}
    registry = load_registry()
    specs = [registry_model(n, registry) for n in opts.models] or [registry[0]]
    for spec in specs:
        os.environ["LOADTEST_REFERENCE"] = str(spec.reference)  # the load generators' payloads and answers
        os.environ["LOADTEST_N_CLASSES"] = str(spec.classes)
        many = len(specs) > 1
        for mode, rows_list in stack_plan(opts):
            model_stack = stack if spec is specs[0] else None  # a running stack given serves the first model
            with stack_for(mode, rows_list[0], base, model_stack, out, log, spec) as running:
                key = mode if mode == "off" else f"{mode} (rows {rows_list[0]})"
                key = f"{spec.name}: {key}" if many else key
                in_force[key] = verify_settings(mode, running)
                log(f"== settings in force ({key}), as the servers report them: {in_force[key]}")
                for rows in rows_list:
                    log(f"== warm-up, rows {rows}")
                    warm_up(running.cfg, opts.targets, rows)
                    log(
                        f"== sweep: model {spec.name}, batching {mode}, rows {rows}, users {opts.users}, "
                        f"{opts.trials}+ trials x {opts.duration_s:g}s"
                    )
                    runs += [{**r, "model": spec.name} for r in sweep(running, opts, rows, mode, out, log)]
                gateway_targets = {"gateway-tf", "gateway-torch"} <= set(opts.targets)
                if opts.overhead and mode == "off" and gateway_targets and spec is specs[0]:
                    from loadtest.overhead import measure_overhead

                    log("== the gateway as a hop: direct vs gateway vs a bare passthrough, 1 user")
                    # A round's three routes share its seconds: twice a sweep point's.
                    overhead = measure_overhead(running, rows_list, opts.overhead_trials, opts.duration_s * 2, log)
                if opts.slo_ms and 1 in rows_list:
                    log(f"== SLO search: p99 <= {opts.slo_ms:g} ms, open-loop Poisson arrivals")
                    slo += [{**s, "model": spec.name} for s in slo_search(running, opts, mode, log)]
    os.environ.pop("LOADTEST_REFERENCE", None)
    os.environ.pop("LOADTEST_N_CLASSES", None)
    summary: dict[str, Any] = {
        "options": asdict(opts),
        "environment": environment(base, opts, {r: batching_overrides("on", base, r) for r in opts.rows}),
        "settings_in_force": in_force,
        "startup": startup,
        "points": aggregate(runs, opts.stable_within),
        "runs": [{k: v for k, v in r.items() if k != "hdr"} for r in runs],
        "slo": slo,
        "overhead": overhead,
        "models": [
            {"name": s.name, "width": s.width, "hidden": list(s.hidden or ()), "parameters": parameters(s)}
            for s in specs
        ],
        "wall_s": round(time.time() - started, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    report.write_report(summary, out)
    return summary
