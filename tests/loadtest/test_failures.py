"""Only good answers are latency and throughput: fast errors, unanswered requests and arrivals never sent are
failures, counted apart; req/s and CPU per request count good answers. Stub servers on 127.0.0.1 with known
answers: a 503 at once on every n-th request, or no answer at all on every n-th."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loadtest.bench import BenchOptions, measure_run, run_lean
from loadtest.drive import lean
from loadtest.drive.locust_run import locust_command, run_seconds
from loadtest.measure import latency
from stack.config import StackConfig
from tests.loadtest.test_instruments import _cfg, stub_model_server

# Stub servers on 127.0.0.1 only: fast, in `make test-fast` too (the integration mark is for real servers).


def _consistent(r: dict[str, Any]) -> None:
    """The counts add up, and the latency histogram holds exactly the good answers."""
    assert r["ok"] + r["failures"] == r["requests"]
    assert r["latency"]["count"] == r["ok"]
    assert abs(r["rps"] - r["ok"] / r["window"]["seconds"]) <= 0.2


def test_fast_errors_are_failures_never_throughput_or_latency() -> None:
    """Every other request answered 503 at once: half the requests fail, and only the good half is req/s and
    latency (the old driver recorded the 503s' latency and counted them in req/s)."""
    with stub_model_server(error_every=2) as port:
        r = run_lean(_cfg(port), "tf-direct", users=1, duration_s=1.0, rows=1)
    _consistent(r)
    assert r["requests"] > 100 and abs(r["failures"] - r["requests"] / 2) <= 1
    assert r["failed_latency"]["count"] == r["failures"]
    assert any("HTTP 503" in s for s in r["failure_samples"])

    with stub_model_server(error_every=1) as port:  # nothing but fast errors
        r = run_lean(_cfg(port), "tf-direct", users=2, duration_s=0.5, rows=1)
    _consistent(r)
    assert r["requests"] > 50 and r["failures"] == r["requests"]
    assert r["rps"] == 0.0 and r["latency"]["p50"] is None


def test_unanswered_requests_are_failures_in_the_open_loop() -> None:
    """Exactly 400 Poisson arrivals; the server never answers every 50th: those 8 are failures, the other 392 are
    the latency sample (the old driver dropped the 8: 392 requests, 0 failures)."""
    with stub_model_server(silent_every=50) as port:
        r = run_lean(_cfg(port), "tf-direct", users=0, duration_s=0, rows=1, rate=400, arrivals=400, grace=0.5)
    _consistent(r)
    assert r["requests"] == 400
    assert r["unanswered"] == r["failures"] == 8 and r["ok"] == 392
    assert any("no answer" in s for s in r["failure_samples"])


def test_unanswered_requests_are_failures_in_the_closed_loop() -> None:
    """Two users against a server that never answers every 20th request: each user stalls on one, the run still
    ends (after the grace period), and the stalled requests are failures."""
    with stub_model_server(silent_every=20) as port:
        r = run_lean(_cfg(port), "tf-direct", users=2, duration_s=0.5, rows=1, grace=0.3)
    _consistent(r)
    assert r["unanswered"] == r["failures"] == 2 and r["ok"] == 38


class _NoProcesses:
    """A stack whose servers are elsewhere: only the generator's own CPU is metered."""

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg

    def status(self) -> list[Any]:
        return []


def test_cpu_per_request_divides_by_good_answers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with stub_model_server(error_every=2) as port:
        stack: Any = _NoProcesses(_cfg(port))
        r = measure_run(stack, BenchOptions(duration_s=0.5), "tf-direct", 1, 1, "off", 0, tmp_path)
    assert r["failures"] > 10 and r["ok"] < r["requests"]
    assert r["cpu_us_per_request"]["generator"] == round(r["generator_cpu_s"] * 1e6 / r["ok"], 1)


def test_an_oversleep_is_a_late_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """The timer oversleeps every wait by 3 ms: nearly every send goes out late, and is counted (the old driver
    checked lateness only before sleeping, so it counted none of these)."""
    real_sleep = asyncio.sleep

    async def oversleep(delay: float, *args: Any) -> Any:
        return await real_sleep(delay + 0.003 if delay > 0 else delay, *args)

    with stub_model_server() as port:
        monkeypatch.setattr(lean.asyncio, "sleep", oversleep)
        url = f"http://127.0.0.1:{port}"
        out, window = asyncio.run(
            lean.open_loop(url, "/v1/models/digits:predict", "tf", 100, 0, 1, seed=1, arrivals=60, grace_s=0.5)
        )
    assert out.requests == 60 and out.failures == 0
    assert out.late_sends >= 50, (out.late_sends, out.early_sends)
    assert out.lateness.get_total_count() == 60 and latency.percentile_ms(out.lateness, 50) >= 2.5
    assert window.seconds > 0


def test_locust_trials_run_at_least_their_duration() -> None:
    """`-t` takes whole seconds: 2.5 s was passed as "2s"; now a trial runs 3 s and reports it."""
    assert run_seconds(2.5) == 3 and run_seconds(2.0) == 2 and run_seconds(0.3) == 1
    cmd = locust_command(4, 2.5, __import__("pathlib").Path("/tmp/x"), ["TFServingDirect"])
    assert cmd[cmd.index("-t") + 1] == "3s"
