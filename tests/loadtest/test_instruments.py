"""The measuring instruments against known answers: sub-ms resolution, histogram merge, the stability rule, the
open-loop schedule (no coordinated omission), process-tree CPU, and a verdict that refuses to guess."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest

from loadtest.bench import BenchOptions, is_stable, run_lean, sweep
from loadtest.measure import latency
from loadtest.measure.processes import TreeMeter
from loadtest.payloads import payloads
from loadtest.report.verdict import compare, verdict
from stack.config import StackConfig
from stack.launcher import free_port

pytestmark = pytest.mark.integration


@contextmanager
def stub_model_server(
    delay_s: float = 0.0,
    stall_at: int | None = None,
    stall_s: float = 0.2,
    served_ms: list[float] | None = None,
    drift: Callable[[], float] | None = None,
    error_every: int = 0,
    silent_every: int = 0,
) -> Iterator[int]:
    """TF Serving's predict URL on raw HTTP/1.1 keep-alive, answering right (the label each row must get) after
    exactly `delay_s` (busy-wait) plus `drift()` seconds; request number `stall_at` blocks the whole server for
    `stall_s`, like a pause. Every `error_every`-th request gets a 503 at once; every `silent_every`-th is never
    answered (its connection stays open, the others are served)."""
    answers = {p.body: p.expected for p in payloads(1)}
    port, ready, count = free_port(), threading.Event(), [0]
    loop = asyncio.new_event_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")
                )
                body = await reader.readexactly(length)
                started = time.perf_counter()
                count[0] += 1
                if silent_every and count[0] % silent_every == 0:
                    await asyncio.sleep(3600)
                if error_every and count[0] % error_every == 0:
                    writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
                    continue
                if count[0] == stall_at:
                    time.sleep(stall_s)  # blocks the loop: every connection waits
                wait_s = delay_s + (drift() if drift else 0.0)
                while time.perf_counter() - started < wait_s:
                    pass
                (label,) = answers[body]
                out = orjson.dumps({"predictions": [[0.91 if i == label else 0.01 for i in range(10)]]})
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(out), out)
                )
                if served_ms is not None:  # what the stub really took, preemption included
                    served_ms.append((time.perf_counter() - started) * 1000)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", port, backlog=1024))
        ready.set()
        loop.run_forever()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def _cfg(port: int) -> StackConfig:
    return StackConfig.load({"TF_REST_PORT": str(port)})


def test_sub_millisecond_resolution() -> None:
    """A server that takes a known 1.3 ms more: the measured p50 moves by what the server really added (1.3 ms, plus
    any overshoot or preemption of its busy-wait, which it measures itself). Within 0.1 ms (< 8 %): a client that
    waits 1.3 ms idle wakes up tens of µs later than one that waits 0.1 ms, which is the machine, not the
    instrument. Whole-ms buckets would show 1.0 or 2.0."""
    import statistics

    p50, served = {}, {}
    for delay in (0.0, 0.0013):
        took: list[float] = []
        with stub_model_server(delay_s=delay, served_ms=took) as port:
            r = run_lean(_cfg(port), "tf-direct", users=1, duration_s=1.5, rows=1)
        assert r["failures"] == 0 and r["requests"] > 200
        p50[delay], served[delay] = r["latency"]["p50"], statistics.median(took)
    added, really_added = p50[0.0013] - p50[0.0], served[0.0013] - served[0.0]
    assert 1.29 <= really_added < 2.0, served
    assert abs(added - really_added) <= 0.1, (p50, served)


def test_interleaving_keeps_the_machines_drift_out_of_a_hops_cost() -> None:
    """The hop instrument's client (loadtest/drive/interleave.py) on two stub servers: one takes a known 1.3 ms more
    than the other, and both are 3 ms slower for the first 0.6 s of the 2 s run (the machine drifting). Called in
    turn, request by request, the two see the same drift: the p50 difference is what the second adds, as both
    measured it themselves, within 0.25 ms (a busy machine preempts the stubs now and then). One route after the
    other, the first would get all of the drift and the difference would come out negative."""
    import statistics

    from loadtest.overhead import run_interleaved

    start = time.monotonic()

    def drift() -> float:
        return 0.003 if time.monotonic() - start < 0.6 else 0.0

    base: list[float] = []
    slow: list[float] = []
    with (
        stub_model_server(served_ms=base, drift=drift) as direct,
        stub_model_server(delay_s=0.0013, served_ms=slow, drift=drift) as hop,
    ):
        path = "/v1/models/digits:predict"
        r = run_interleaved(
            {"direct": ("tf", f"http://127.0.0.1:{direct}{path}"), "hop": ("tf", f"http://127.0.0.1:{hop}{path}")},
            rows=1, duration_s=2.0,
        )  # fmt: skip
    routes = r["routes"]
    assert routes["direct"]["failures"] == routes["hop"]["failures"] == 0
    assert abs(routes["direct"]["requests"] - routes["hop"]["requests"]) <= 1 and routes["hop"]["requests"] > 200
    added = routes["hop"]["p50"] - routes["direct"]["p50"]
    really_added = statistics.median(slow) - statistics.median(base)
    assert 1.2 <= really_added < 2.0, (statistics.median(slow), statistics.median(base))
    assert abs(added - really_added) <= 0.25, (routes["hop"]["p50"], routes["direct"]["p50"], really_added)


def test_a_stall_shows_in_the_open_loop_tail_not_in_the_closed_loop_one() -> None:
    """Closed loop: the one user waits out a 200 ms pause and sends nothing meanwhile, so one sample of thousands
    is slow (coordinated omission). Open loop: every arrival scheduled during the pause waits, measured from its
    scheduled time."""
    with stub_model_server(stall_at=150) as port:
        closed = run_lean(_cfg(port), "tf-direct", users=1, duration_s=2.0, rows=1)
    with stub_model_server(stall_at=150) as port:
        opened = run_lean(_cfg(port), "tf-direct", users=0, duration_s=2.0, rows=1, rate=200)
    assert closed["failures"] == opened["failures"] == 0
    assert closed["latency"]["max"] >= 200 and closed["latency"]["p99"] < 50, closed["latency"]
    assert opened["latency"]["p99"] >= 100, opened["latency"]
    assert 300 <= opened["requests"] <= 500  # Poisson at 200/s for 2 s


def test_histograms_merge_exactly() -> None:
    a, b = latency.new_histogram(), latency.new_histogram()
    for v in (1.0, 1.5, 2.0):
        latency.record_ms(a, v)
    for v in (10.0, 20.0):
        latency.record_ms(b, v)
    merged = latency.summary(latency.merge([latency.encode(a), latency.encode(b)]))
    assert merged["count"] == 5 and merged["p50"] == 2.0 and abs(merged["max"] - 20.0) <= 0.02  # 3 digits
    assert latency.summary(latency.decode(latency.encode(a)))["p50"] == 1.5


def test_the_stability_rule_adds_trials_until_a_point_settles_or_the_cap(tmp_path) -> None:  # type: ignore[no-untyped-def]
    noisy = iter([100.0, 150.0, 80.0, 120.0, 95.0])  # never within 10 %

    def fake(stack, opts, target, users, rows, batching, trial, csv_dir) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        rps = next(noisy) if target == "noisy" else 100.0 + trial  # "steady": within 2 %
        return {"target": target, "users": users, "rows": rows, "batching": batching, "trial": trial, "rps": rps,
                "failures": 0, "latency": {"p50": 1.0, "p99": 2.0}}  # fmt: skip

    opts = BenchOptions(users=[1], targets=["steady", "noisy"], trials=3, max_trials=5)
    runs = sweep(None, opts, 1, "off", tmp_path, lambda _: None, measure=fake)  # type: ignore[arg-type]
    assert [r["target"] for r in runs].count("steady") == 3
    assert [r["target"] for r in runs].count("noisy") == 5
    assert not is_stable([r for r in runs if r["target"] == "noisy"], 0.10)
    order = [r["target"] for r in runs][:6]
    assert order in (["steady", "noisy"] * 3, ["noisy", "steady"] * 3) or set(order[:2]) == {"steady", "noisy"}


def test_process_tree_cpu_includes_children() -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"
    parent_code = f"import subprocess, sys, time; subprocess.run([sys.executable, '-c', {burn!r}]); time.sleep(60)"
    parent = subprocess.Popen([sys.executable, "-c", parent_code])
    try:
        with TreeMeter({"tree": parent.pid}, interval_s=0.05) as meter:
            time.sleep(1.5)  # the child burns 0.5 s of CPU and exits; the parent (the tree's root) lives on
    finally:
        parent.kill()
        parent.wait()
    assert meter.result["tree"]["cpu_s"] >= 0.45, meter.result
    assert meter.result["tree"]["peak_rss_mb"] > 1


def test_the_verdict_names_no_winner_when_spreads_overlap() -> None:
    assert compare({"median": 1.0, "min": 0.9, "max": 1.2}, {"median": 1.1, "min": 1.0, "max": 1.3}, True) is None
    assert compare({"median": 1.0, "min": 0.9, "max": 1.0}, {"median": 2.0, "min": 1.8, "max": 2.2}, True) == "a"
    assert compare({"median": 500, "min": 450, "max": 520}, {"median": 900, "min": 850, "max": 950}, False) == "b"

    def point(target: str, p50: dict[str, float]) -> dict[str, Any]:
        one = {"median": 1, "min": 1, "max": 1}
        return {
            "target": target,
            "batching": "off",
            "rows": 1,
            "users": 1,
            "p50": p50,
            "rps": one,
            "cpu_us_per_request": {},
        }

    summary = {"options": {"rows": [1], "slo_ms": 50}, "slo": [], "startup": {},
               "points": [point("tf-direct", {"median": 1.0, "min": 0.8, "max": 1.3}),
                          point("torch-direct", {"median": 1.1, "min": 0.9, "max": 1.4})]}  # fmt: skip
    latency_line = verdict(summary)[0]
    assert latency_line["ahead"] is None and latency_line["text"].startswith("no clear difference")
    summary["points"][1]["p50"] = {"median": 2.0, "min": 1.9, "max": 2.1}
    assert verdict(summary)[0]["ahead"] == "tf" and "2.00×" in verdict(summary)[0]["text"]


def test_no_slo_verdict_when_the_generator_was_the_limit() -> None:
    def search(target: str, best: float, reason: str) -> dict[str, Any]:
        steps = [{"held": True, "reason": "holds"}, {"held": False, "reason": reason}]
        return {"target": target, "batching": "off", "max_rps_within_slo": best, "steps": steps}

    one = {"median": 1, "min": 1, "max": 1}
    points = [
        {"target": t, "batching": "off", "rows": 1, "users": 1, "p50": one, "rps": one, "cpu_us_per_request": {}}
        for t in ("tf-direct", "torch-direct")
    ]
    summary = {"options": {"rows": [1], "slo_ms": 50}, "startup": {}, "points": points}
    summary["slo"] = [
        search("tf-direct", 1000, "p99 over 50 ms"),
        search("torch-direct", 600, "the generator fell behind its schedule"),
    ]
    (line,) = [v for v in verdict(summary) if v["dimension"].startswith("rate within")]
    assert line["ahead"] is None and line["text"].startswith("no verdict") and "TorchServe" in line["text"]
    summary["slo"][1] = search("torch-direct", 600, "p99 over 50 ms")
    (line,) = [v for v in verdict(summary) if v["dimension"].startswith("rate within")]
    assert line["ahead"] == "tf"
