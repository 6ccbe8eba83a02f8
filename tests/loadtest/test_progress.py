"""The bench's progress: `[step k/N, elapsed, about M min left]` counts to N, N planned from the options before the
run. The whole bench runs here on fakes at its instruments (no server is started): start-up, the stack, every sweep
trial, the hop's rounds, every SLO step and the report are steps."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from loadtest import bench as bench_mod
from loadtest import overhead as overhead_mod
from loadtest.__main__ import stage_lines
from loadtest.bench import BenchOptions, bench_plan
from loadtest.measure import latency
from loadtest.progress import Progress, Stage
from stack.config import StackConfig
from stack.launcher import NativeStack

STEP = re.compile(r"^\[step (\d+)/(\d+), (\d+):(\d\d) elapsed, (about (\d+) min left|done)\] (.*)$")
BASE_MS = {"tf-direct": 1.0, "torch-direct": 1.6, "gateway-tf": 1.8, "gateway-torch": 2.4}
CAPACITY = {"tf-direct": 300.0, "torch-direct": 180.0}  # the fake servers' SLO capacity, req/s


def _hdr(ms: float, n: int = 200) -> str:
    hist = latency.new_histogram()
    for i in range(n):
        latency.record_ms(hist, ms * (1 + (i % 20) / 40) + (4 * ms if i == n - 1 else 0))
    return latency.encode(hist)


def fake_run(stack: Any, opts: Any, target: str, users: int, rows: int, batching: str, trial: int) -> dict[str, Any]:
    """A windowed sweep run as measure_windows returns it: the same figures every trial (so every point settles)."""
    ms = BASE_MS[target] * (1 + users / 8) * (1 + rows / 64)
    rps = users * 1000 / ms
    backend = bench_mod.BACKEND_OF[target]
    parts = [backend, "gateway"] if target.startswith("gateway") else [backend]
    return {
        "target": target, "users": users, "rows": rows, "batching": batching, "trial": trial, "rps": round(rps, 1),
        "requests": 400, "ok": 400, "failures": 0, "failure_samples": [], "settled": True,
        "latency": latency.summary(latency.decode(_hdr(ms))), "hdr": _hdr(ms),
        "cpu_us_per_request": {**{p: 300.0 + 100 * ms for p in parts}, "generator": 150.0},
        "processes": {p: {"cpu_s": 0.5, "peak_rss_mb": 300.0} for p in parts},
        "server_time": {backend: {"mean_ms": round(ms * 0.6, 3)}}, "generator_cpu_share": 0.4,
        "metered_over": "the measured windows", "driver": "fake",
    }  # fmt: skip


def fake_lean(cfg: Any, target: str, users: int, duration_s: float, rows: int, rate: float = 0.0,
              arrivals: int = 0, grace: float = 2.0) -> dict[str, Any]:  # fmt: skip
    """An SLO step: p99 within 50 ms up to the target's capacity, far over it beyond."""
    p99 = 10.0 if rate <= CAPACITY[target] else 400.0
    return {"rps": rate, "requests": arrivals, "failures": 0, "latency": {"p50": p99 / 4, "p99": p99},
            "hdr": _hdr(p99 / 4, arrivals), "wall_s": arrivals / rate, "generator_cpu_s": 0.1}  # fmt: skip


def fake_overhead(stack: Any, rows_list: list[int], trials: int, duration_s: float, log: Any) -> dict[str, Any]:
    """The hop's rounds, one log line a round as measure_overhead logs them."""
    runs = []
    for rows in rows_list:
        for trial in range(trials):
            for b in ("tf", "torch"):
                for hop, added in (("direct", 0.0), ("gateway", 0.4), ("passthrough", 0.3 + 0.01 * trial)):
                    runs.append({"route": f"{b}-{hop}", "rows": rows, "trial": trial, "p50": 1.0 + added,
                                 "p99": 2.0 + added, "requests": 100, "failures": 0, "failure_samples": [],
                                 "cpu_us": {hop: 200.0}, "client_cpu_us": 90.0})  # fmt: skip
                log(f"   overhead [rows {rows} round {trial + 1}] {b}")
    return overhead_mod.summarize(runs, rows_list)


def run_fake_bench(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opts: BenchOptions
) -> tuple[dict[str, Any], list[str]]:
    @contextmanager
    def stack_for(
        mode: str, rows: int, base: Any, existing: Any, run_dir: Path, log: Any, spec: Any = None
    ) -> Iterator[Any]:
        log(f"== starting the native stack (batching {mode})")
        yield NativeStack(StackConfig.load(), run_dir=tmp_path / "unstarted")  # never started: nothing to meter

    startup = {side: {"server": side, "start_to_first_prediction_s": s, "start_samples_s": [s, s * 1.1, s * 0.9],
                      "idle_rss_mb": m, "idle_rss_samples_mb": [m, m, m + 1], "artifact": "x", "artifact_mb": 1.0}
               for side, s, m in (("tf", 3.0, 400.0), ("torch", 6.0, 900.0))}  # fmt: skip
    monkeypatch.setattr(bench_mod, "_startup", lambda base, out, log, repeats: log("== start-up") or startup)
    monkeypatch.setattr(bench_mod, "stack_for", stack_for)
    monkeypatch.setattr(bench_mod, "verify_settings", lambda mode, stack: {"tf": {"batching": False}})
    monkeypatch.setattr(bench_mod, "warm_up", lambda cfg, targets, rows, **kw: [])
    monkeypatch.setattr(bench_mod, "measure_windows", fake_run)
    monkeypatch.setattr(bench_mod, "run_lean", fake_lean)
    monkeypatch.setattr(overhead_mod, "measure_overhead", fake_overhead)
    lines: list[str] = []
    summary = bench_mod.bench(opts, tmp_path, log=lines.append)
    return summary, lines


def small_options() -> BenchOptions:
    return BenchOptions(
        users=[1, 4], rows=[1], targets=["tf-direct", "torch-direct", "gateway-tf", "gateway-torch"],
        trials=2, max_trials=3, verdict_trials=3, verdict_max_trials=3, startup_repeats=3, overhead_trials=2,
        load_warmup_s=0.0,
        slo_start_rps=100.0, slo_max_steps=4, slo_refine_steps=2, slo_arrivals=100,
    )  # fmt: skip


def test_the_plan_is_counted_from_the_options_at_each_stages_upper_bound() -> None:
    stages = {s.key: s.steps for s in bench_plan(small_options())}
    # start-up 1, the stack 1; a level: 2 verdict points x 3 trials + 2 gateway points x max 3; the hop: 2 rounds x
    # 2 backends; an SLO search: max(4 doublings, 1 + 3 halvings) + 2 bisections; the report 1
    assert stages[("sweep", "", "off", 1, 1)] == 12 and stages[("overhead",)] == 4
    assert stages[("slo", "", "off", "tf-direct")] == 6
    assert sum(stages.values()) == 1 + 1 + 2 * 12 + 4 + 2 * 6 + 1 == 43


def test_progress_lines_count_to_n_in_every_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary, lines = run_fake_bench(tmp_path, monkeypatch, small_options())
    steps = [m for m in map(STEP.match, lines) if m]
    ks, ns = [int(m[1]) for m in steps], [int(m[2]) for m in steps]
    assert ns[0] == 43  # the plan, before anything ran
    # Every point settled at its minimum (gateway points after 2 trials), the searches took 5 and 4 steps of their 6:
    # N is lowered as that becomes known, never raised, and the last step reads N/N
    assert ks == list(range(1, 37)) and ns[-1] == 36 and ns == sorted(ns, reverse=True)
    assert steps[-1][5] == "done" and all(m[6] for m in steps[:-1])
    assert steps[-1][7].startswith("report written") and (tmp_path / "report.md").exists()
    what = [m[7] for m in steps]
    assert what[0] == "start-up and footprint measured" and what[1] == "stack up"
    assert sum("trial" in w for w in what) == 20 and sum(w.startswith("overhead [") for w in what) == 4
    # as soon as known: the sweep's unneeded rounds leave N before the hop, the first search's step before the second
    assert ns[what.index("overhead [rows 1 round 1] tf")] == 43 - 2 * 2
    assert ns[next(i for i, w in enumerate(what) if w.startswith("SLO torch-direct"))] == 39 - 1
    assert sum(w.startswith("SLO ") for w in what) == sum(len(s["steps"]) for s in summary["slo"]) == 9
    assert [s["bracket"] for s in summary["slo"]] == [[282.8, 336.4], [168.2, 200.0]]
    assert not [line for line in lines if not line.startswith(("==", "[step", "   "))], "a line without a place"


def test_quiet_keeps_the_stage_lines_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, lines = run_fake_bench(tmp_path, monkeypatch, small_options())
    for line in lines:
        stage_lines(line)
    printed = capsys.readouterr().out.splitlines()
    assert printed and all(line.startswith("==") for line in printed) and len(printed) < len(lines) // 3


def test_time_left_follows_the_pace_of_the_steps_done() -> None:
    now = [0.0]
    out: list[str] = []
    progress = Progress([Stage("a", 2, 30.0), Stage("b", 4, 60.0)], out.append, clock=lambda: now[0])
    assert progress.minutes_left() == pytest.approx((2 * 30 + 4 * 60) / 60)  # nothing done yet: the plan itself
    now[0] = 60.0
    progress.step("a", "first")  # 30 s planned took 60: twice the plan from here on
    assert out[-1] == "[step 1/6, 1:00 elapsed, about 9 min left] first"  # (30 + 240) s x 2
    progress.finish("a")  # the second step of a was not needed
    now[0] = 125.0
    progress.step("b", "second")
    assert out[-1] == "[step 2/5, 2:05 elapsed, about 4 min left] second"  # 180 s left x 125/90
