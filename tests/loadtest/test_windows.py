"""Windows inside one continuous load (loadtest/drive/windows.py), against stub servers with known answers: the
warm-up window is discarded, windows that never agree are flagged, and the meters cover the measured windows only."""

from __future__ import annotations

import os
from typing import Any

import pytest

from loadtest.bench import run_driver
from loadtest.drive.windows import agreeing, spread
from loadtest.measure import latency
from tests.loadtest.test_instruments import stub_model_server

# Stub servers on 127.0.0.1 only: fast, in `make test-fast` too (the integration mark is for real servers).


def _windows(port: int, *extra: str, users: int = 1) -> dict[str, Any]:
    args = ["--url", f"http://127.0.0.1:{port}", "--path", "/v1/models/digits:predict", "--kind", "tf",
            "--users", str(users), "--window", "0.4", "--warmup", "0.6", "--min-answers", "50", *extra]  # fmt: skip
    return run_driver("lean", args, 10.0, "a stub")


def test_the_warm_up_is_not_measured() -> None:
    """A server slow (+8 ms) for its first 40 requests, then quick: those 40 all fall in the warm-up window (0.32 s
    of a 0.6 s warm-up), so no measured window holds one (a single run over the whole load had all 40 in its tail)."""
    with stub_model_server(slow_first=(40, 0.008)) as port:
        r = _windows(port)
    assert r["warmup"]["requests"] >= 40
    assert r["failures"] == 0 and r["ok"] == r["latency"]["count"] > 0
    slow = sum(v.count_at_value_iterated_to for v in latency.decode(r["hdr"]).get_recorded_iterator()
               if v.value_iterated_to >= 8000)  # fmt: skip
    assert slow < 20, (slow, r["latency"])  # a busy machine preempts a few; the 40 slow ones would all be here
    assert len(r["measured_windows"]) == 3, r["windows"]  # settled or not (a busy machine decides)
    assert r["window"]["seconds"] == pytest.approx(sum(r["windows"][i]["seconds"] for i in r["measured_windows"]))


def test_windows_that_never_agree_are_flagged() -> None:
    """A server whose time grows with every request (0.02 ms more each): no three windows agree, the run stops at
    the cap and says so."""
    count = [0]

    def slower() -> float:
        count[0] += 1
        return count[0] * 2e-5

    with stub_model_server(drift=slower) as port:
        r = _windows(port, "--max-windows", "4")
    assert not r["settled"] and len(r["windows"]) == 4
    assert not agreeing(r["windows"][-3:], 0.10)


def test_the_meters_read_the_measured_windows_only() -> None:
    """The stub (a thread of this process) busy-waits 1 ms a request; in one run its first 40 requests (the warm-up)
    busy-wait 9 ms instead. The meter on this process, read by the driver at the windows' edges, must see the same
    CPU per measured answer in both runs: the warm-up's extra 0.32 s of busy waiting is outside the windows. (A bound
    against the window's wall time alone failed on a busy CI machine: the stub's own handling and kernel time put
    the process above one core; the paired run cancels that out.)"""
    per_answer = {}
    for slow in ((0, 0.0), (40, 0.008)):
        with stub_model_server(delay_s=0.001, slow_first=slow) as port:
            r = _windows(port, "--meter", f"stub=pid:{os.getpid()}")
        cpu = r["processes"]["stub"]["cpu_s"]
        assert cpu >= 0.9 * r["ok"] * 0.001, (cpu, r["ok"])  # the busy waiting of the measured answers is seen
        per_answer[slow[0]] = (cpu / r["ok"], r["ok"])
        assert r["generator_cpu_s"] > 0 and r["generator_memory_mb"]["peak_rss"] > 10
    (quick, _), (slowed, answers) = per_answer[0], per_answer[40]
    # Counted in the windows, the warm-up's 40 x 8 ms would add 0.32 s: allow half of it for noise.
    assert (slowed - quick) * answers < 0.16, per_answer


def test_agreement_rule() -> None:
    w = [{"ok": 10, "rps": 100.0, "p50": 1.0}, {"ok": 10, "rps": 105.0, "p50": 1.05}, {"ok": 10, "rps": 98, "p50": 1}]
    assert agreeing(w, 0.10) and spread([100.0, 105.0, 98.0]) == pytest.approx(0.07)
    assert not agreeing([*w[:2], {"ok": 10, "rps": 120.0, "p50": 1.0}], 0.10)
    assert not agreeing([*w[:2], {"ok": 0, "rps": 0.0, "p50": 0.0}], 0.10)


def test_torchserve_server_time_is_over_its_good_answers() -> None:
    """TorchServe adds to its latency counter only for 2xx answers, but counts every request: 100 requests, 50 of
    them errors, 50 x 2 ms of latency is 2 ms a good answer (the old mean said 1 ms)."""
    from loadtest.measure.server_metrics import server_time, torchserve_counters

    before = torchserve_counters({"ts_inference_requests_total{m=1}": 0.0, "ts_inference_latency_microseconds": 0.0,
                                  "ts_queue_latency_microseconds": 0.0, 'Requests5XX{Level="Host"}': 0.0})  # fmt: skip
    after = torchserve_counters({"ts_inference_requests_total{m=1}": 100.0, "ts_inference_latency_microseconds": 1e5,
                                 "ts_queue_latency_microseconds": 0.0, 'Requests5XX{Level="Host"}': 50.0})  # fmt: skip
    assert server_time(before, after) == {"requests": 100, "mean_ms": 2.0, "errors": 50, "queue_mean_ms": 0.0}
    no_error_counters = {k: v for k, v in after.items() if k != "errors"}
    assert server_time(before, no_error_counters)["errors"] is None  # said unknown, not taken as 0
