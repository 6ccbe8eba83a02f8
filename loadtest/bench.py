"""The benchmark's plan: dimensions x trials, interleaved, with a stability rule; then the open-loop SLO search.

For each batching mode (and, with batching on, each rows-per-request value, since TorchServe's batch counts
requests) a native stack is started, the servers are asked what they run with (refused if it is not what the mode
asked for), warmed up, and measured:
- start-up and footprint of each server, started alone (once per benchmark);
- the sweep: for every rows-per-request value and concurrency level, `trials` rounds over every target, the order
  rotated each round (ABAB, never AAABBB), after a warm-up under load of every target; a point settles when its
  last 3 trials (3 of the last 4) agree within `stable_within` on throughput and p50 (perf_analyzer's rule, on
  trials); one that has not gets more rounds, up to `max_trials`, and is marked unstable if it never settles; the
  points the verdict reads (each side direct, batching off, fewest rows) get at least `verdict_trials` (5) trials,
  the values its bootstrap interval resamples, and up to `verdict_max_trials`;
- every run records exact latencies (HDR), the CPU time and peak memory of each server's process tree, the
  gateway's and the load generator's, and the servers' own latency metrics;
- the SLO search: open-loop Poisson arrivals, exactly N a step, doubling then bisection to a bracket
  [last rate held, first rate broken] per direct target (loadtest/slo.py).
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

from loadtest import slo
from loadtest.drive.locust_run import run_locust
from loadtest.measure import latency, server_metrics
from loadtest.measure.processes import GroupMeter, Meter, TreeMeter, meter_for
from loadtest.payloads import payloads
from loadtest.progress import Progress, Stage
from loadtest.targets import PATHS, TARGETS
from stack import cgroups
from stack.cgroups import Cgroup
from stack.config import ROOT, StackConfig
from stack.deployments.base import Deployment, ServingURLs
from stack.launcher import NativeStack, free_port_overrides
from stack.registry import ModelSpec, load_registry
from stack.registry import model as registry_model

Running = NativeStack | Deployment  # a stack this bench started, or a deployment under test (stack/deployments)
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
    max_trials: int = 5
    verdict_trials: int = 5  # the points a verdict reads (direct, batching off, fewest rows) get at least these
    verdict_max_trials: int = 0  # ... and at most these; 0: one more than they get at least (or max_trials, if more)
    load_warmup_s: float = 2.0  # each target under load (the plan's most users) before the sweep; 0: none
    stable_within: float = 0.10
    targets: list[str] = field(default_factory=lambda: list(TARGETS))
    batching: list[str] = field(default_factory=lambda: ["off"])
    driver: str = "lean"
    startup: bool = True
    startup_repeats: int = 5
    overhead: bool = True
    overhead_trials: int = 3
    slo_ms: float | None = 50.0
    slo_targets: list[str] = field(default_factory=lambda: ["tf-direct", "torch-direct"])
    slo_start_rps: float = 100.0
    slo_growth: float = 2.0
    slo_max_steps: int = 8
    slo_refine_steps: int = 4
    slo_resolution: float = 0.10  # bisect until the bracket's ends are within 10 %
    slo_arrivals: int = 600  # exactly this many arrivals a step
    models: list[str] = field(default_factory=list)  # registered names; empty: the default model
    # The lean driver's windows (loadtest/drive/windows.py): a discarded warm-up, then windows until the last 3
    # agree within `stable_within` or `max_windows`; 0 s: one fixed `duration_s` run instead.
    window_s: float = 0.5
    warmup_s: float = 0.5
    max_windows: int = 5
    min_answers: int = 50
    plan_rate_rps: float = 10_000.0  # the capacity plan's target rate (loadtest/report/capacity.py)

    def verdict_bounds(self) -> tuple[int, int]:
        """The fewest and the most trials of a point the verdict reads."""
        least = max(self.trials, self.verdict_trials)
        return least, max(self.max_trials, self.verdict_max_trials or least + 1, least)


# ---- one run -----------------------------------------------------------------------------------------------------
def target_url(cfg: ServingURLs, target: str) -> tuple[str, str]:
    bases = {"tf-direct": cfg.tf_rest_url, "torch-direct": cfg.ts_inference_url}
    return bases.get(target, cfg.gateway_url), PATHS[target].format(model=cfg.model_name)


def check_kind(target: str) -> str:
    return BACKEND_OF.get(target, "compare")


def run_lean(
    cfg: ServingURLs, target: str, users: int, duration_s: float, rows: int, rate: float = 0.0,
    arrivals: int = 0, grace: float = 2.0,
) -> dict[str, Any]:  # fmt: skip
    """The lean driver in its own process (its CPU is its own, and it reports it)."""
    base, path = target_url(cfg, target)
    return run_lean_at(base, path, check_kind(target), users, duration_s, rows, rate, arrivals, grace)


def run_driver(
    module: str, args: list[str], duration_s: float, what: str, group: Cgroup | None = None
) -> dict[str, Any]:
    """A load driver (`python -m loadtest.drive.<module>`) in its own process (in `group`, if given, from before it
    execs), its result JSON read back; a driver that fails is a StageFailed naming `what` it was driving."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, "-m", f"loadtest.drive.{module}", "--out", out.name, *args]
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=duration_s + 120, preexec_fn=cgroups.preexec(group)
        )
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


def _metrics_urls(cfg: ServingURLs) -> dict[str, str]:
    from export.serving_config import TF_METRICS_PATH

    return {"tf": f"{cfg.tf_rest_url}{TF_METRICS_PATH}", "torch": f"{cfg.ts_metrics_url}/metrics"}


def _server_counters(cfg: ServingURLs, backends: list[str]) -> dict[str, dict[str, float]]:
    urls, out = _metrics_urls(cfg), {}
    for b in backends:
        try:
            samples = server_metrics.scrape(urls[b])
        except httpx.HTTPError:
            continue
        out[b] = server_metrics.tf_counters(samples) if b == "tf" else server_metrics.torchserve_counters(samples)
    return out


def part_meters(stack: Any) -> dict[str, Meter]:
    """A meter per part: on a native stack each server's cgroup (stack/cgroups.py) or, where none could be made,
    its process tree; a deployment's own meters otherwise (stack/deployments)."""
    if not isinstance(stack, NativeStack) and hasattr(stack, "meters"):
        return dict(stack.meters())
    names = {"tf": ("tf-serving", "tfserving-compat"), "torch": ("torchserve",), "gateway": ("gateway",)}
    found = {part: proc for proc, alive in stack.status() for part in names if alive and proc.name in names[part]}
    return {part: meter_for(proc.pid, proc.cgroup) for part, proc in found.items()}


def measure_windows(
    stack: Any, opts: BenchOptions, target: str, users: int, rows: int, batching: str, trial: int
) -> dict[str, Any]:
    """One measured run in windows (loadtest/drive/windows.py): the driver reads every part's meter, its own and
    the servers' counters at the edges of the windows it measures, so CPU, memory and server time cover exactly
    the span of the latency and req/s. The generator runs in its own cgroup where one can be made."""
    cfg = stack.cfg
    backends = [BACKEND_OF[target]] if target in BACKEND_OF else ["tf", "torch"]
    meters = part_meters(stack)
    readable = {name: m for name, m in meters.items() if m.spec().split(":")[0] in ("cgroup", "pid")}
    urls = _metrics_urls(cfg)
    base, path = target_url(cfg, target)
    args = ["--url", base, "--path", path, "--kind", check_kind(target), "--users", str(users), "--rows", str(rows),
            "--window", str(opts.window_s), "--warmup", str(opts.warmup_s), "--max-windows", str(opts.max_windows),
            "--min-answers", str(opts.min_answers), "--within", str(opts.stable_within)]  # fmt: skip
    for backend in backends:
        if backend in urls and not urls[backend].startswith("/"):
            args += ["--server-metrics", f"{backend}={urls[backend]}"]
    group = Cgroup.create(f"generator-{os.getpid()}")
    for name, meter in [*readable.items(), *([("generator", GroupMeter(group.path))] if group else [])]:
        args += ["--meter", f"{name}={meter.spec()}"]
    expected_s = opts.warmup_s + opts.max_windows * opts.window_s * 4 + 2.0
    others = {name: m for name, m in meters.items() if name not in readable}  # read around the run instead
    try:
        with TreeMeter(others) as around:
            result = run_driver("lean", args, expected_s, f"{base}{path}", group)
    finally:
        if group:
            group.remove()
    processes = {**result.pop("processes"), **around.result}
    counters = result.pop("server_counters")
    seconds = max(result["window"]["seconds"], 1e-9)
    record(result, (target, users, rows, batching, trial), processes, counters["before"], counters["after"])
    result["generator_cpu_share"] = round(result["generator_cpu_s"] / seconds, 3)
    result["metered_over"] = "the measured windows"
    return result


def record(
    result: dict[str, Any],
    point: tuple[str, int, int, str, int],
    processes: dict[str, Any],
    before: dict[str, Any],
    after: dict[str, Any],
) -> dict[str, Any]:
    """A run's result with its point (target, users, rows, batching, trial), each part's CPU per *good* answer
    (failures are not served requests), the servers' own time, and the generator's CPU per answer where the driver
    measured it (getrusage: exact for its one process; its cgroup's is in processes)."""
    target, users, rows, batching, trial = point
    n = max(result["ok"], 1)
    result |= {
        "target": target,
        "users": users,
        "rows": rows,
        "batching": batching,
        "trial": trial,
        "processes": processes,
        "cpu_us_per_request": {name: round(m["cpu_s"] * 1e6 / n, 1) for name, m in processes.items()},
        "server_time": {b: server_metrics.server_time(before[b], after[b]) for b in before if b in after},
    }
    if "generator_cpu_s" in result:
        result["cpu_us_per_request"]["generator"] = round(result["generator_cpu_s"] * 1e6 / n, 1)
    return result


def measure_run(
    stack: Running,
    opts: BenchOptions,
    target: str,
    users: int,
    rows: int,
    batching: str,
    trial: int,
    csv_dir: Path,
) -> dict[str, Any]:
    """One measured run: the load, exact latencies, every process tree's CPU and memory, server-side time."""
    if opts.driver == "lean" and opts.window_s:
        return measure_windows(stack, opts, target, users, rows, batching, trial)
    cfg = stack.cfg
    backends = [BACKEND_OF[target]] if target in BACKEND_OF else ["tf", "torch"]
    pids = _parts(stack)
    before = _server_counters(cfg, backends)
    with TreeMeter(pids) as meter:
        if opts.driver == "locust":
            prefix = csv_dir / f"{batching}-r{rows}-{target}-u{users}-t{trial}"
            result = run_locust(cfg, target, users, opts.duration_s, prefix, rows)  # type: ignore[arg-type]  # URLs only
            result["driver"] = "locust (FastHttpUser), exact latencies from its HDR hook"
        else:
            result = run_lean(cfg, target, users, opts.duration_s, rows)
    after = _server_counters(cfg, backends)
    result.setdefault("ok", result["requests"] - result["failures"])
    record(result, (target, users, rows, batching, trial), meter.result, before, after)
    if "generator_cpu_s" in result:
        result["generator_cpu_share"] = round(result["generator_cpu_s"] / max(result["wall_s"], 1e-9), 3)
    return result


def _parts(stack: Running) -> dict[str, Any]:
    """What meters each part: its pid on a native stack, the deployment's meter otherwise (none: not measured)."""
    if isinstance(stack, NativeStack):
        return {name: _pid(stack, name) for name in ("tf", "torch", "gateway")}
    return dict(stack.meters())


def _pid(stack: NativeStack, name: str) -> int:
    names = {"tf": ("tf-serving", "tfserving-compat"), "torch": ("torchserve",), "gateway": ("gateway",)}[name]
    for proc, alive in stack.status():
        if proc.name in names and alive:
            return proc.pid
    return 0


# ---- the sweep ---------------------------------------------------------------------------------------------------
AGREE = 3  # trials that must agree for a point to settle (perf_analyzer's stability window)


def spread(values: list[float]) -> float:
    """(max - min) / median: the stability rule's measure."""
    mid = statistics.median(values)
    return (max(values) - min(values)) / mid if mid else 0.0


def is_stable(runs: list[dict[str, Any]], within: float) -> bool:
    """perf_analyzer's rule on trials: the most recent `AGREE` (3) trials agree, req/s and p50 each spreading no
    more than `within` (range over median), with one outlier among the last 4 left out (one slow trial of four is
    the machine, not the point). A sliding window, as perf_analyzer's over its measurement windows
    (inference_profiler.cc, DetermineStability): more trials never make a point harder to settle, and a cold first
    trial is outlived. Fewer than 2 trials never settle; with 2 both must agree. A point with a trial that got no
    good answer never settles."""
    if len(runs) < 2 or any(_good(r) == 0 for r in runs):
        return False
    last = runs[-(AGREE + 1):]
    groups = itertools.combinations(last, AGREE) if len(last) > AGREE else [last]
    for kept in groups:
        rps = [r["rps"] for r in kept]
        p50 = [r["latency"]["p50"] or 0.0 for r in kept]
        if spread(rps) <= within and spread(p50) <= within:
            return True
    return False


def _good(run: dict[str, Any]) -> int:
    return int(run.get("ok", run.get("requests", 0) - run.get("failures", 0)))


def verdict_point(opts: BenchOptions, target: str, rows: int, batching: str) -> bool:
    """The points the report's verdict reads: each side called directly, batching off, the fewest rows."""
    return target in ("tf-direct", "torch-direct") and batching == "off" and rows == min(opts.rows)


def sweep(
    stack: Running,
    opts: BenchOptions,
    rows: int,
    batching: str,
    out: Path,
    log: Log,
    measure: Callable[..., dict[str, Any]] = measure_run,
    progress: Progress | None = None,
    model: str = "",
) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for level, users in enumerate(opts.users):
        key = ("sweep", model, batching, rows, users)
        by_target: dict[str, list[dict[str, Any]]] = {t: [] for t in opts.targets}
        wanted = {
            t: opts.verdict_bounds()
            if verdict_point(opts, t, rows, batching) else (opts.trials, opts.max_trials)
            for t in opts.targets
        }  # fmt: skip
        pending = list(opts.targets)
        trial = 0
        while pending:
            shift = (level + trial) % len(pending)
            for target in pending[shift:] + pending[:shift]:  # the order rotates every round
                r = measure(stack, opts, target, users, rows, batching, trial, out / "csv")
                by_target[target].append(r)
                runs.append(r)
                line = (
                    f"   [{batching} rows {rows} users {users} trial {trial + 1}] {target:16s} {r['rps']:8.1f} req/s "
                    f"p50 {r['latency']['p50']} ms p99 {r['latency']['p99']} ms failures {r['failures']}"
                )
                progress.step(key, line) if progress else log(line)
            trial += 1
            done = [t for t in pending if trial >= wanted[t][1]]
            settled = [t for t in pending if trial >= wanted[t][0] and is_stable(by_target[t], opts.stable_within)]
            pending = [t for t in pending if t not in done and t not in settled]
            if progress:  # the level's bound, tightened: only the targets still pending may take more rounds
                measured = sum(len(rs) for rs in by_target.values())
                progress.at_most(key, measured + sum(wanted[t][1] - trial for t in pending))
            unsettled = [t for t in pending if trial >= wanted[t][0]]
            if unsettled:
                log(f"   not yet stable within {opts.stable_within:.0%}: {', '.join(unsettled)}: another round")
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
        cpu_trials = {
            n: [r["cpu_us_per_request"][n] for r in rs if n in r["cpu_us_per_request"]]
            for n in sorted({k for r in rs for k in r["cpu_us_per_request"]})
        }
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
            "ok": sum(_good(r) for r in rs),
            "failures": sum(r["failures"] for r in rs),
            "unanswered": sum(r.get("unanswered", 0) for r in rs),
            "backlogged": sum(r.get("backlogged", 0) for r in rs),
            # one value per trial, in trial order: what the verdict's interval resamples
            "trial_values": {
                "rps": [r["rps"] for r in rs],
                "p50": [r["latency"]["p50"] or 0.0 for r in rs],
                "cpu_us_per_request": cpu_trials,
            },
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
            # trials whose windows agreed (loadtest/drive/windows.py); a fixed-length run has no windows to agree
            "windows_settled": sum(1 for r in rs if r.get("settled", True)),
            "metered_over": rs[0].get("metered_over", "the driver's whole run"),
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
    unsettled = point["trials"] - point.get("windows_settled", point["trials"])
    if unsettled:
        out.append(f"the windows of {unsettled} of {point['trials']} trials did not agree within the cap")
    rps = point["rps"]
    if not point["stable"]:
        out.append(
            f"did not stabilise within {point['trials']} trials "
            f"(req/s spread {spread([rps['min'], rps['median'], rps['max']]):.0%})"
        )
    return out


# ---- the SLO search (open loop) ----------------------------------------------------------------------------------
def slo_search(
    stack: Running,
    opts: BenchOptions,
    batching: str,
    log: Log,
    measure: Callable[[str, float, int], dict[str, Any]] | None = None,
    progress: Progress | None = None,
    model: str = "",
) -> list[dict[str, Any]]:
    """Per SLO target, the bracket [last rate held, first rate broken] (loadtest/slo.py)."""
    assert opts.slo_ms is not None
    plan = slo_plan(opts)
    costs: list[dict[str, float]] = []  # the server's cores per step, in the order the search measures them

    def metered(target: str, rate: float, arrivals: int) -> dict[str, Any]:
        backend = BACKEND_OF[target]
        with TreeMeter({backend: _parts(stack).get(backend, 0)}) as meter:
            r = run_lean(stack.cfg, target, 0, 0.0, 1, rate, arrivals)
        costs.append(step_cost(r, meter.result.get(backend)))
        return r

    out = []
    for target in opts.slo_targets:
        costs.clear()
        key = ("slo", model, batching, target)
        search = slo.search(measure or metered, target, plan, progress.stepping(key) if progress else log)
        if progress:
            progress.finish(key)
        if len(costs) == len(search["steps"]):
            search["steps"] = [{**st, **c} for st, c in zip(search["steps"], costs, strict=True)]
        out.append({**search, "batching": batching})
    return out


def slo_plan(opts: BenchOptions) -> slo.SearchPlan:
    assert opts.slo_ms is not None
    return slo.SearchPlan(opts.slo_ms, opts.slo_start_rps, opts.slo_growth, opts.slo_max_steps, opts.slo_refine_steps,
                          opts.slo_resolution, opts.slo_arrivals)  # fmt: skip


def slo_steps_at_most(plan: slo.SearchPlan) -> int:
    """The search's steps at most (loadtest/slo.py): doubling up to max_steps, or, when the first rate breaks, up to
    down_steps below it; then up to refine_steps of bisection."""
    return max(plan.max_steps, 1 + plan.down_steps) + plan.refine_steps


def step_cost(r: dict[str, Any], server: dict[str, Any] | None) -> dict[str, float]:
    """Cores busy during an SLO step: the server's CPU seconds and the generator's over the driver's wall time."""
    wall = max(float(r.get("wall_s") or 0.0), 1e-9)
    cost = {"generator_cpu_cores": round(float(r.get("generator_cpu_s", 0.0)) / wall, 4)}
    if server is not None:
        cost["server_cpu_cores"] = round(server["cpu_s"] / wall, 4)
    return cost


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


def verify_settings(mode: str, stack: Running) -> dict[str, dict[str, object]]:
    """Ask the running servers what they use; refuse to measure a mode they don't run. A deployment given by URLs
    alone has no configuration to hold them to: what could be read back is recorded, unchecked."""
    from stack.effective import expected, mismatches

    try:
        actual = stack.effective()
    except (httpx.HTTPError, ValueError, OSError) as exc:
        raise StageFailed(f"batching {mode}: could not read the servers' settings back: {exc}") from exc
    if isinstance(stack, NativeStack):
        wanted = stack.cfg
    elif (declared := getattr(stack, "stack_cfg", None)) is not None:  # compose: .env, as compose substitutes it
        wanted = StackConfig.load({**batching_overrides(mode, declared)})
    else:
        return actual
    problems = mismatches(expected(wanted), actual)
    if problems:
        raise StageFailed(
            f"batching {mode}: the servers do not run what this mode asked for, so it is not measured: "
            + "; ".join(problems)
        )
    return actual


def warm_up(
    cfg: ServingURLs, targets: list[str], rows: int, n: int = 50, load_s: float = 0.0, users: int = 1,
    log: Log | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every payload once per target (and at least `n` requests), so first-connection, lazy-init and first-payload
    costs stay out of the figures; then, for `load_s` seconds, each target under `users` concurrent users (the
    plan's most): TorchServe's JVM compiles its hot paths over thousands of requests, and the servers grow their
    pools under concurrency, which a short sequential pass leaves to the first trials (measured: a cold first
    trial ran at 60 % of the next four). Each run's own warm-up window then warms its connections. Returns the
    load runs (discarded from the figures, kept in the summary)."""
    bodies = [p.body for p in payloads(rows)]
    with httpx.Client(timeout=10, headers={"content-type": "application/json"}) as client:
        for target in targets:
            base, path = target_url(cfg, target)
            for i in range(max(n, len(bodies))):
                r = client.post(base + path, content=bodies[i % len(bodies)])
                if r.status_code != 200:
                    raise StageFailed(f"warm-up of {target} answered {r.status_code}: {r.text[:300]}")
    runs = []
    for target in targets if load_s > 0 else []:
        got = run_lean(cfg, target, users, load_s, rows)
        runs.append({"target": target, "users": users, "rows": rows, "seconds": load_s, "ok": got.get("ok"),
                     "failures": got["failures"], "rps": got["rps"]})  # fmt: skip
        if log:
            log(f"   warm-up under load: {target:16s} {users} users {load_s:g} s, {got['rps']:8.1f} req/s, "
                f"failures {got['failures']}")  # fmt: skip
    return runs


@contextmanager
def stack_for(
    mode: str,
    rows: int,
    base: StackConfig,
    existing: Running | None,
    run_dir: Path,
    log: Log,
    spec: ModelSpec | None = None,
) -> Iterator[Running]:
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


def native_description() -> dict[str, Any]:
    cores = os.cpu_count()
    return {"kind": "native", "cost": dict.fromkeys(("tf", "torch", "gateway"), "process tree (psutil)"),
            "server_cores": {"tf": cores, "torch": cores}, "generator_shares_machine": True, "local": True}  # fmt: skip


def stack_plan(opts: BenchOptions) -> list[tuple[str, list[int]]]:
    """Which stacks to start: batching off serves every rows value; on needs one per rows value (TorchServe's batch
    size counts requests, so the same row budget is a different setting for each rows-per-request)."""
    plan: list[tuple[str, list[int]]] = []
    for mode in opts.batching:
        plan += [(mode, list(opts.rows))] if mode == "off" else [(mode, [rows]) for rows in opts.rows]
    return plan


def bench_plan(opts: BenchOptions, stack: Running | None = None) -> list[Stage]:
    """The benchmark's steps, from the options alone, each stage at its upper bound (loadtest/progress.py): a start
    measurement, each stack started, each sweep level's trials (max_trials a point), the hop's rounds, each SLO
    search's steps at most, and the report. Seconds a step: estimates that the progress scales by the pace seen."""
    external = stack is not None and not isinstance(stack, NativeStack)
    trial_s = (opts.warmup_s + 3.6 * opts.window_s if opts.driver == "lean" and opts.window_s else opts.duration_s) + 1
    stages = [Stage(("startup",), 1, opts.startup_repeats * 2 * 8.0)] if opts.startup and not external else []
    gateway_targets = {"gateway-tf", "gateway-torch"} <= set(opts.targets)
    for i, model in enumerate(opts.models or [""]):  # a running stack given serves the first model
        for mode, rows_list in stack_plan(opts):
            if stack is None or i > 0:
                stages.append(Stage(("stack", model, mode, rows_list[0]), 1, 20.0))
            for rows in rows_list if opts.load_warmup_s > 0 else []:
                stages.append(Stage(("warmup", model, mode, rows), 1, len(opts.targets) * (opts.load_warmup_s + 1)))
            for rows, users in itertools.product(rows_list, opts.users):
                most = sum(opts.verdict_bounds()[1] if verdict_point(opts, t, rows, mode)
                           else opts.max_trials for t in opts.targets)  # fmt: skip
                stages.append(Stage(("sweep", model, mode, rows, users), most, trial_s))
            if opts.overhead and mode == "off" and gateway_targets and not external and i == 0:
                stages.append(Stage(("overhead",), len(rows_list) * opts.overhead_trials * 2, opts.duration_s * 2 + 1))
            if opts.slo_ms and 1 in rows_list:
                plan = slo_plan(opts)
                stages += [Stage(("slo", model, mode, t), slo_steps_at_most(plan), plan.arrivals / plan.start_rps + 3)
                           for t in opts.slo_targets]  # fmt: skip
    return [*stages, Stage(("report",), 1, 10.0)]


def _startup(base: StackConfig, out: Path, log: Log, repeats: int) -> dict[str, Any]:
    from loadtest.measure.startup import measure_startup

    log("== start-up and footprint (each server alone)")
    cfg = StackConfig.load({**batching_overrides("off", base), **free_port_overrides()})
    result = measure_startup(cfg, out / "startup", repeats=repeats)
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


def bench(opts: BenchOptions, out: Path, stack: Running | None = None, log: Log = print) -> dict[str, Any]:
    """Run everything, write `summary.json` and the report into `out`; every stack it starts is stopped. `stack`: a
    running native stack or a deployment (stack/deployments) to measure instead of starting native stacks; a
    deployment is measured as it runs (no start-up measurement, no hop instrument: both start servers here)."""
    from loadtest import report
    from loadtest.measure.environment import environment

    out.mkdir(parents=True, exist_ok=True)
    base = StackConfig.load()
    started = time.time()
    runs: list[dict[str, Any]] = []
    slo: list[dict[str, Any]] = []
    warmups: list[dict[str, Any]] = []
    in_force: dict[str, Any] = {}
    overhead: dict[str, Any] = {}
    external = stack is not None and not isinstance(stack, NativeStack)
    progress = Progress(bench_plan(opts, stack), log)
    startup = _startup(base, out, log, opts.startup_repeats) if opts.startup and not external else {}
    if startup:
        progress.step(("startup",), "start-up and footprint measured")
    registry = load_registry()
    specs = [registry_model(n, registry) for n in opts.models] or [registry[0]]
    for spec in specs:
        name = spec.name if opts.models else ""  # the plan's name for it
        os.environ["LOADTEST_REFERENCE"] = str(spec.reference)  # the load generators' payloads and answers
        os.environ["LOADTEST_N_CLASSES"] = str(spec.classes)
        many = len(specs) > 1
        for mode, rows_list in stack_plan(opts):
            model_stack = stack if spec is specs[0] else None  # a running stack given serves the first model
            with stack_for(mode, rows_list[0], base, model_stack, out, log, spec) as running:
                if model_stack is None:
                    progress.step(("stack", name, mode, rows_list[0]), "stack up")
                key = mode if mode == "off" else f"{mode} (rows {rows_list[0]})"
                key = f"{spec.name}: {key}" if many else key
                in_force[key] = verify_settings(mode, running)
                log(f"== settings in force ({key}), as the servers report them: {in_force[key]}")
                for rows in rows_list:
                    log(f"== warm-up, rows {rows}")
                    warmups += warm_up(running.cfg, opts.targets, rows, load_s=opts.load_warmup_s,
                                       users=max(opts.users), log=log)  # fmt: skip
                    if opts.load_warmup_s > 0:
                        progress.step(("warmup", name, mode, rows), f"warm-up under load, rows {rows}")
                    log(
                        f"== sweep: model {spec.name}, batching {mode}, rows {rows}, users {opts.users}, "
                        f"{opts.trials}+ trials x {opts.duration_s:g}s"
                    )
                    runs += [
                        {**r, "model": spec.name}
                        for r in sweep(running, opts, rows, mode, out, log, progress=progress, model=name)
                    ]
                gateway_targets = {"gateway-tf", "gateway-torch"} <= set(opts.targets)
                if opts.overhead and mode == "off" and gateway_targets and isinstance(running, NativeStack) \
                        and spec is specs[0]:  # fmt: skip
                    from loadtest.overhead import measure_overhead

                    log("== the gateway as a hop: direct vs gateway vs a bare passthrough, 1 user")
                    # A round's three routes share its seconds: twice a sweep point's.
                    overhead = measure_overhead(
                        running, rows_list, opts.overhead_trials, opts.duration_s * 2, progress.stepping(("overhead",))
                    )  # one line a round
                if opts.slo_ms and 1 in rows_list:
                    log(f"== SLO search: p99 <= {opts.slo_ms:g} ms, open-loop Poisson arrivals")
                    slo += [
                        {**s, "model": spec.name}
                        for s in slo_search(running, opts, mode, log, progress=progress, model=name)
                    ]
    os.environ.pop("LOADTEST_REFERENCE", None)
    os.environ.pop("LOADTEST_N_CLASSES", None)
    summary: dict[str, Any] = {
        "options": asdict(opts),
        "environment": environment(base, opts, {r: batching_overrides("on", base, r) for r in opts.rows}),
        "settings_in_force": in_force,
        "startup": startup,
        "points": aggregate(runs, opts.stable_within),
        "runs": [{k: v for k, v in r.items() if k != "hdr"} for r in runs],
        "warmups": warmups,
        "slo": slo,
        "overhead": overhead,
        "models": [
            {"name": s.name, "width": s.width, "hidden": list(s.hidden or ()), "parameters": parameters(s)}
            for s in specs
        ],
        "deployment": stack.describe() if external else native_description(),  # type: ignore[union-attr]
        "started_at": time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(started)),
        "wall_s": round(time.time() - started, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    for stage in progress.bound:  # every stage is over: what it did not need leaves N before the last step
        if stage != ("report",):
            progress.finish(stage)
    progress.step(("report",), f"report written: {report.write_report(summary, out)}")
    return summary
