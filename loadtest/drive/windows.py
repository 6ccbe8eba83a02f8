"""Windows inside one continuous load, as perf_analyzer measures: a discarded warm-up window, then measurement
windows until the last `agree` of them agree within the bound (req/s and p50, range over median), or a cap (then
the run says it did not settle). The figures are the last `agree` windows', and everything else is read over
exactly that span: at each window's start and end the driver reads the process meters (each server's cgroup or
process tree, the gateway's, its own CPU) and the servers' own counters, so CPU per request and server time cover
the same seconds as the latency, not the driver's start-up, payload building or drain.

An answer belongs to the window in which it arrived. A failure anywhere in the run (warm-up and drain included)
is a failure of the run: `requests` = the measured windows' requests + every failure outside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import random
import resource
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psutil

from loadtest.drive.lean import Connection, Outcome, _finish, build_requests, one_or_reconnect
from loadtest.measure import latency
from loadtest.measure.processes import Meter, open_meter


@dataclass
class WindowPlan:
    warmup_s: float = 0.5
    window_s: float = 0.6
    min_answers: int = 100  # a window also lasts until it holds this many answers (up to 4 x window_s)
    agree: int = 3
    max_windows: int = 5
    within: float = 0.10


def spread(values: list[float]) -> float:
    """(max - min) / median: the stability rule's measure."""
    mid = statistics.median(values)
    return (max(values) - min(values)) / mid if mid else 0.0


def agreeing(windows: list[dict[str, Any]], within: float) -> bool:
    """Each window had a good answer and their req/s and p50 each spread no more than `within`."""
    if not windows or any(w["ok"] == 0 for w in windows):
        return False
    return spread([w["rps"] for w in windows]) <= within and spread([w["p50"] for w in windows]) <= within


def cut(out: Outcome) -> Outcome:
    """What `out` counted so far, handed over; `out` itself starts afresh (the users keep recording into it)."""
    done = copy.copy(out)
    out.__dict__.update(Outcome(max_connections=out.max_connections).__dict__)
    return done


@dataclass
class Reading:
    """The meters at one instant: perf_counter_ns and epoch, CPU seconds per meter and of this process, and the
    servers' counters (scraped just after the CPU readings)."""

    ns: int
    epoch: float
    cpu_s: dict[str, float]
    own_cpu_s: float
    server: dict[str, dict[str, float]] = field(default_factory=dict)
    read_ms: float = 0.0  # how long the CPU readings took: the instant's uncertainty


class Probe:
    """Reads the named meters (`name=cgroup:<path>` or `name=pid:<pid>`) and the servers' metrics (`backend=url`)
    at a window's boundary, and samples their memory every `memory_every_s` in a thread, time-stamped, so the
    peak can be taken over the measured span alone."""

    def __init__(self, meters: dict[str, str], metrics: dict[str, str], memory_every_s: float = 0.5) -> None:
        self.meters: dict[str, Meter] = {name: open_meter(spec) for name, spec in meters.items()}
        self.metrics = metrics
        self.memory: list[tuple[int, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(memory_every_s,), daemon=True)

    def read(self) -> Reading:
        ns, epoch = time.perf_counter_ns(), time.time()
        cpu = {}
        for name, meter in self.meters.items():
            with contextlib.suppress(OSError, psutil.Error):
                cpu[name] = meter.cpu_seconds()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        reading = Reading(ns, epoch, cpu, usage.ru_utime + usage.ru_stime)
        reading.read_ms = (time.perf_counter_ns() - ns) / 1e6
        reading.server = self._server_counters()
        return reading

    def _server_counters(self) -> dict[str, dict[str, float]]:
        if not self.metrics:
            return {}
        import httpx

        from loadtest.measure import server_metrics

        out = {}
        for backend, url in self.metrics.items():
            with contextlib.suppress(httpx.HTTPError):
                out[backend] = server_metrics.counters(backend, server_metrics.scrape(url))
        return out

    def _memory_now(self) -> dict[str, int]:
        out = {}
        for name, meter in self.meters.items():
            with contextlib.suppress(OSError, psutil.Error):
                out[name] = meter.memory_bytes()
        return out

    def _sample(self, every_s: float) -> None:
        while not self._stop.is_set():
            self.memory.append((time.perf_counter_ns(), self._memory_now()))
            self._stop.wait(every_s)

    def __enter__(self) -> Probe:
        if self.meters:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def peak_bytes(self, start_ns: int, end_ns: int) -> dict[str, int]:
        """The highest memory each meter showed between two instants (one reading at least: the end's)."""
        inside = [m for t, m in self.memory if start_ns <= t <= end_ns] or [self._memory_now()]
        return {name: max(m.get(name, 0) for m in inside) for name in self.meters}


def _window(start: Reading, end: Reading, seen: Outcome) -> dict[str, Any]:
    seconds = max((end.ns - start.ns) / 1e9, 1e-9)
    return {
        "start_epoch": round(start.epoch, 6),
        "end_epoch": round(end.epoch, 6),
        "seconds": round(seconds, 6),
        "requests": seen.requests,
        "ok": seen.ok,
        "failures": seen.failures,
        "rps": round(seen.ok / seconds, 1),
        "p50": latency.percentile_ms(seen.hist, 50) or 0.0,
        "p99": latency.percentile_ms(seen.hist, 99),
        "cpu_s": {n: round(end.cpu_s[n] - start.cpu_s[n], 4) for n in end.cpu_s if n in start.cpu_s},
        "generator_cpu_s": round(end.own_cpu_s - start.own_cpu_s, 4),
    }


async def windowed_closed_loop(
    url: str, path: str, kind: str, users: int, rows: int, plan: WindowPlan, probe: Probe, seed: int = 0,
    grace_s: float = 2.0,
) -> dict[str, Any]:  # fmt: skip
    """`users` closed-loop users on one continuous load: warm-up, then windows until the last `plan.agree` agree
    (or `plan.max_windows`). Returns the measured span's figures; see the module's docstring."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = build_requests(url, path, rows)
    unwarmed = list(range(len(requests)))  # the warm-up sends every payload it has time for, each once
    random.Random(seed).shuffle(unwarmed)
    out = Outcome(max_connections=users)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    started, started_ns = time.perf_counter(), time.perf_counter_ns()

    async def user(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        conn = await Connection.open(host, port)
        in_flight = False
        try:
            while not stopping.is_set():
                req, payload = requests[unwarmed.pop() if unwarmed else rng.randrange(len(requests))]
                in_flight = True
                conn = await one_or_reconnect(conn, req, payload, kind, out, host, port)
                in_flight = False
        except asyncio.CancelledError:
            if in_flight:
                out.no_answer(grace_s)
            raise
        finally:
            conn.close()

    async def boundary() -> tuple[Reading, Outcome]:
        seen = cut(out)  # the instant: answers from here on are the next window's
        return await loop.run_in_executor(None, probe.read), seen

    tasks = [asyncio.create_task(user(i)) for i in range(users)]
    await asyncio.sleep(plan.warmup_s)
    first, warm = await boundary()
    readings, windows, seen_in = [first], [], []
    while True:
        begun = time.perf_counter()
        await asyncio.sleep(plan.window_s)
        while out.requests < plan.min_answers and time.perf_counter() - begun < 4 * plan.window_s:
            if any(t.done() for t in tasks):  # a user gave up (its server went away): stop here
                break
            await asyncio.sleep(0.02)
        reading, seen = await boundary()
        windows.append(_window(readings[-1], reading, seen))
        readings.append(reading)
        seen_in.append(seen)
        settled = len(windows) >= plan.agree and agreeing(windows[-plan.agree :], plan.within)
        if settled or len(windows) >= plan.max_windows or any(t.done() for t in tasks):
            break
    stopping.set()
    await _finish(tasks, grace_s)
    drain = cut(out)
    total_s = time.perf_counter() - started

    n = min(plan.agree, len(windows))
    measured, start, end = seen_in[-n:], readings[-n - 1], readings[-1]
    hist = latency.new_histogram()
    for seen in measured:
        hist.add(seen.hist)
    ok = sum(s.ok for s in measured)
    outside = [warm, *seen_in[:-n], drain]
    failures = sum(s.failures for s in measured) + sum(s.failures for s in outside)
    seconds = (end.ns - start.ns) / 1e9
    peak = probe.peak_bytes(start.ns, end.ns)
    own = resource.getrusage(resource.RUSAGE_SELF)
    samples: dict[str, int] = {}
    for s in [*measured, *outside]:
        for why, count in s.samples.items():
            samples[why] = samples.get(why, 0) + count
    return {
        "mode": "closed, windows",
        "requests": ok + failures,
        "ok": ok,
        "failures": failures,
        "unanswered": sum(s.unanswered for s in [*measured, *outside]),
        "failure_samples": [f"{c}x {why}" for why, c in sorted(samples.items(), key=lambda kv: -kv[1])][:5],
        "settled": len(windows) >= plan.agree and agreeing(windows[-plan.agree :], plan.within),
        "windows": windows,
        "measured_windows": list(range(len(windows) - n, len(windows))),
        "warmup": {
            "seconds": round((first.ns - started_ns) / 1e9, 3),
            "requests": warm.requests,
            "payloads_warmed": len(requests) - len(unwarmed),
            "payloads": len(requests),
        },
        "window": {
            "start_epoch": round(start.epoch, 6),
            "end_epoch": round(end.epoch, 6),
            "seconds": round(seconds, 6),
        },
        "wall_s": round(total_s, 3),
        "rps": round(ok / seconds, 1),
        "latency": latency.summary(hist),
        "hdr": latency.encode(hist),
        "processes": {
            name: {
                "cpu_s": round(end.cpu_s[name] - start.cpu_s[name], 4),
                "cpu_share": round((end.cpu_s[name] - start.cpu_s[name]) / seconds, 3),
                "peak_rss_mb": round(peak.get(name, 0) / 2**20, 1),  # the old key: PSS or cgroup memory
                "how": meter.how,
            }
            for name, meter in probe.meters.items()
            if name in start.cpu_s and name in end.cpu_s
        },
        "server_counters": {"before": start.server, "after": end.server},
        "meter_read_ms": max(r.read_ms for r in readings),
        "generator_cpu_s": round(end.own_cpu_s - start.own_cpu_s, 4),
        "generator_memory_mb": {"peak_rss": round(own.ru_maxrss / 1024, 1), "pss": round(_own_pss() / 2**20, 1)},
        "connections": users,
    }


def _own_pss() -> int:
    from stack.cgroups import pss_bytes

    return pss_bytes([psutil.Process().pid])
