"""A lean load generator: closed-loop users or an open-loop Poisson schedule, raw HTTP/1.1 keep-alive on uvloop.

Why not locust for the figures: at 1 user locust's own per-request cost (~0.5 ms of Python here) was most of what
the 1-user rows measured (624 req/s where perf_analyzer measured 1,089 on the same TorchServe). This client writes
prebuilt request bytes, frames the answer with httptools (llhttp; one parser per connection, never hand-written
framing: that is where shifted answers come from), and checks it with orjson: its cost per request is a fraction of
locust's, and its CPU time (total and per good answer) is reported with every run so it stays visible.

- closed loop (`--users N`): N users, each with one connection, each sending its next request when the answer came.
- open loop (`--rate R`): arrivals on a Poisson schedule at R req/s (MLPerf LoadGen's Server scenario), for
  `--duration` seconds or exactly `--arrivals N`; latency is measured from the *scheduled* send time (or from the
  real send, if the timer woke early), so a stall of the server (or of this client) shows in the tail instead of
  silently lowering the offered rate (no coordinated omission). `late_sends` counts sends that went out > 1 ms
  behind schedule, measured when they went out (an oversleep counts), `early_sends` those the timer let out early;
  `send_lateness` has the percentiles of how late they went out.

Only good answers are latency and throughput. Every answer is checked: status 200 and the label each model must
give (loadtest/payloads.py); anything else is a failure, counted apart, with a sample of what was wrong. A request
still unanswered `--grace` seconds after the load ends is a failure too, and so is an open-loop arrival that found
MAX_OPEN_LOOP_CONNECTIONS in flight. `rps` is good answers per second of the window in which the load ran.
Run: python -m loadtest.drive.lean --help
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools
import orjson

from loadtest.measure import latency
from loadtest.payloads import Payload, check_predictions, payloads

MAX_OPEN_LOOP_CONNECTIONS = 512
DRIVER = "lean (asyncio + uvloop, HTTP/1.1 keep-alive framed by httptools, every answer checked with orjson)"


class ProtocolError(Exception):
    pass


@dataclass
class Outcome:
    """What a run saw. `requests` counts every request sent or scheduled; `failures` every one not answered right
    (wrong, an error status, a broken connection, no answer by the end, never sent); `hist` holds the latencies of
    good answers only, `failed_hist` those of answers that came back wrong."""

    hist: Any = field(default_factory=latency.new_histogram)
    failed_hist: Any = field(default_factory=latency.new_histogram)
    lateness: Any = field(default_factory=latency.new_histogram)  # open loop: how late each send went out
    requests: int = 0
    failures: int = 0
    samples: dict[str, int] = field(default_factory=dict)
    late_sends: int = 0
    early_sends: int = 0
    backlogged: int = 0  # open loop: not sent, MAX_OPEN_LOOP_CONNECTIONS already in flight (the server fell behind)
    unanswered: int = 0  # sent, but no answer by the end of the grace period
    max_connections: int = 0
    last_answer_ns: int = 0

    @property
    def ok(self) -> int:
        return self.requests - self.failures

    def fail(self, why: str) -> None:
        self.requests += 1
        self.failures += 1
        if len(self.samples) < 20 or why in self.samples:
            self.samples[why] = self.samples.get(why, 0) + 1

    def no_answer(self, grace_s: float) -> None:
        self.unanswered += 1
        self.fail(f"no answer {grace_s:g} s after the load ended")


def check(kind: str, body: bytes, payload: Payload) -> str | None:
    """kind: 'tf' or 'torch' (predictions of that backend's model), or 'compare' (the gateway's /compare)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "response is not JSON"
    if not isinstance(doc, dict):
        return "response is not an object"
    if kind == "compare":
        for side in ("tf", "torch"):
            problem = check_predictions((doc.get(side) or {}).get("predictions"), payload.expected_for(side))
            if problem:
                return f"{side}: {problem}"
        if doc.get("labels_agree") is not (payload.expected == payload.expected_torch):
            return f"labels_agree is {doc.get('labels_agree')!r}"
        return None
    return check_predictions(doc.get("predictions"), payload.expected_for(kind))


class _Wire(asyncio.Protocol):
    """One TCP connection and its own parser (httptools: llhttp, Node's HTTP parser), one request at a time.

    Every byte received goes to the parser, so framing is the parser's: chunked bodies with trailers, 1xx answers
    before the final one (skipped), answers without a body (204, 304), and it rejects what is ambiguous (two
    Content-Lengths, Transfer-Encoding with Content-Length, a bad status line). The wire stops being `clean`, and
    is never reused, after an error, an answer that does not keep the connection alive, or bytes that came when no
    request was waiting (they could only be mistaken for the next answer)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.clean = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self.end(ProtocolError(f"bad answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.end(exc or ConnectionResetError("connection closed before the answer ended"))

    def end(self, exc: BaseException) -> None:
        self.clean = False
        if self.transport is not None:
            self.transport.close()
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc)

    # parser callbacks
    def on_message_begin(self) -> None:
        if self.answer is None or self.answer.done():
            self.end(ProtocolError("an answer nobody asked for"))
        self.body = []

    def on_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # informational (100, 103): the final answer follows on the same connection
            return
        answer = self.answer
        if not self.parser.should_keep_alive():
            self.clean = False
            if self.transport is not None:
                self.transport.close()
        if answer is not None and not answer.done():
            answer.set_result((status, b"".join(self.body)))


class Connection:
    """A keep-alive connection to one server. An exchange on a connection that is no longer clean (the last
    answer said `Connection: close`, or bytes came unasked) first opens a fresh one; after an error the drivers
    close it and open another themselves."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.wire: _Wire | None = None

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        conn = cls(host, port)
        await conn.connect()
        return conn

    async def connect(self) -> None:
        _, self.wire = await asyncio.get_running_loop().create_connection(_Wire, self.host, self.port)

    @property
    def reusable(self) -> bool:
        return self.wire is not None and self.wire.clean

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        if not self.reusable:
            self.close()
            await self.connect()
        wire = self.wire
        assert wire is not None and wire.transport is not None
        wire.answer = answer = asyncio.get_running_loop().create_future()
        wire.transport.write(request)
        try:
            return await answer
        except BaseException:  # cancelled or failed: its answer may still come, so never reuse this wire
            wire.clean = False
            raise

    def close(self) -> None:
        if self.wire is not None:
            self.wire.clean = False
            if self.wire.transport is not None:
                self.wire.transport.close()
            self.wire = None


def build_requests(url: str, path: str, rows: int) -> list[tuple[bytes, Payload]]:
    host = urlsplit(url).netloc
    out = []
    for p in payloads(rows):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(p.body)}\r\n\r\n"
        ).encode()
        out.append((head + p.body, p))
    return out


async def _one(conn: Connection, req: bytes, payload: Payload, kind: str, started_ns: int, out: Outcome) -> None:
    """One exchange, checked; its latency goes to `hist` only if the answer is right."""
    status, body = await conn.exchange(req)
    now = time.perf_counter_ns()
    out.last_answer_ns = now
    problem = f"HTTP {status}: {body[:120].decode(errors='replace')}" if status != 200 else check(kind, body, payload)
    if problem:
        out.fail(problem)
        latency.record_ms(out.failed_hist, (now - started_ns) / 1e6)
        return
    out.requests += 1
    latency.record_ms(out.hist, (now - started_ns) / 1e6)


async def one_or_reconnect(
    conn: Connection, req: bytes, payload: Payload, kind: str, out: Outcome, host: str, port: int
) -> Connection:
    """One closed-loop exchange (`_one`); a broken connection or answer is a failure and a fresh connection is
    returned for the user's next request."""
    try:
        await _one(conn, req, payload, kind, time.perf_counter_ns(), out)
    except (OSError, asyncio.IncompleteReadError, ProtocolError, ValueError) as exc:
        out.fail(f"connection: {type(exc).__name__}")
        conn.close()
        return await Connection.open(host, port)
    return conn


async def _finish(tasks: set[asyncio.Task[None]] | list[asyncio.Task[None]], timeout_s: float) -> None:
    """Wait for `tasks` up to `timeout_s`, then cancel the rest (each counts its own request as unanswered)."""
    if not tasks:
        return
    done, pending = await asyncio.wait(set(tasks), timeout=max(timeout_s, 0.0))
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if task.exception() is not None:  # e.g. the server went away and a user could not reconnect
            raise task.exception()  # type: ignore[misc]


@dataclass
class Window:
    """When the load ran: perf_counter_ns at its start and end (the last answer, or the end of the schedule if
    later), and the same two moments on the wall clock, so meters outside this process can read the same span."""

    start_ns: int
    end_ns: int = 0
    start_epoch: float = 0.0

    @classmethod
    def begin(cls) -> Window:
        return cls(time.perf_counter_ns(), start_epoch=time.time())

    def close(self, load_end_ns: int, out: Outcome) -> None:
        self.end_ns = max(load_end_ns, out.last_answer_ns, self.start_ns + 1)

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def as_dict(self) -> dict[str, float]:
        return {"start_epoch": round(self.start_epoch, 6), "end_epoch": round(self.start_epoch + self.seconds, 6),
                "seconds": round(self.seconds, 6)}  # fmt: skip


async def closed_loop(
    url: str, path: str, kind: str, users: int, duration_s: float, rows: int, grace_s: float = 2.0
) -> tuple[Outcome, Window]:
    parts = urlsplit(url)
    requests = build_requests(url, path, rows)
    out = Outcome(max_connections=users)
    window = Window.begin()
    deadline = time.perf_counter() + duration_s

    async def user(seed: int) -> None:
        rng = random.Random(seed)
        conn = await Connection.open(parts.hostname or "127.0.0.1", parts.port or 80)
        in_flight = False
        try:
            while time.perf_counter() < deadline:
                req, payload = rng.choice(requests)
                in_flight = True
                conn = await one_or_reconnect(conn, req, payload, kind, out, parts.hostname or "127.0.0.1",
                                              parts.port or 80)  # fmt: skip
                in_flight = False
        except asyncio.CancelledError:
            if in_flight:
                out.no_answer(grace_s)
            raise
        finally:
            conn.close()

    tasks = [asyncio.create_task(user(i)) for i in range(users)]
    await _finish(tasks, deadline + grace_s - time.perf_counter())
    window.close(window.start_ns + int(duration_s * 1e9), out)
    return out, window


def poisson_schedule(rng: random.Random, rate: float, duration_s: float, arrivals: int = 0) -> list[float]:
    """Arrival offsets in seconds: exactly `arrivals` of them if given, else those before `duration_s`."""
    offsets: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        if (arrivals and len(offsets) >= arrivals) or (not arrivals and t >= duration_s):
            return offsets
        offsets.append(t)


LATE_NS = 1_000_000  # a send more than 1 ms behind its schedule is late


async def open_loop(
    url: str, path: str, kind: str, rate: float, duration_s: float, rows: int, seed: int,
    arrivals: int = 0, grace_s: float = 2.0,
) -> tuple[Outcome, Window]:  # fmt: skip
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = build_requests(url, path, rows)
    rng = random.Random(seed)
    out = Outcome()
    idle: list[Connection] = []
    opened = 0
    offsets = poisson_schedule(rng, rate, duration_s, arrivals)
    window = Window.begin()
    schedule = [window.start_ns + int(t * 1e9) for t in offsets]
    tasks: set[asyncio.Task[None]] = set()

    async def send(at_ns: int, req: bytes, payload: Payload) -> None:
        nonlocal opened
        begun = time.perf_counter_ns()  # when this arrival really went out: after any oversleep of the timer
        latency.record_ms(out.lateness, max(begun - at_ns, 0) / 1e6)
        if begun - at_ns > LATE_NS:
            out.late_sends += 1
        elif begun < at_ns:
            out.early_sends += 1
        conn = idle.pop() if idle else None
        try:
            if conn is None:
                if opened >= MAX_OPEN_LOOP_CONNECTIONS:
                    out.backlogged += 1
                    out.fail(f"not sent: {MAX_OPEN_LOOP_CONNECTIONS} requests already in flight")
                    return
                opened += 1
                out.max_connections = max(out.max_connections, opened)
                conn = await Connection.open(host, port)
            # latency from the scheduled time, or from the real send if the timer let it out early
            await _one(conn, req, payload, kind, min(at_ns, begun), out)
            idle.append(conn)
        except (OSError, asyncio.IncompleteReadError, ProtocolError, ValueError) as exc:
            out.fail(f"connection: {type(exc).__name__}")
            if conn is not None:
                conn.close()
                opened -= 1
        except asyncio.CancelledError:
            out.no_answer(grace_s)
            if conn is not None:
                conn.close()
            raise

    for at_ns in schedule:
        delay = (at_ns - time.perf_counter_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        req, payload = rng.choice(requests)
        task = asyncio.create_task(send(at_ns, req, payload))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    load_end = schedule[-1] if schedule else window.start_ns
    await _finish(tasks, (load_end - time.perf_counter_ns()) / 1e9 + grace_s)
    for conn in idle:
        conn.close()
    window.close(load_end, out)
    return out, window


def install_uvloop() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass


def failure_samples(out: Outcome) -> list[str]:
    return [f"{n}x {why}" for why, n in sorted(out.samples.items(), key=lambda kv: -kv[1])][:5]


def cpu_since(before: resource.struct_rusage) -> float:
    """CPU seconds (user + system) this process used since `before` (resource.getrusage)."""
    now = resource.getrusage(resource.RUSAGE_SELF)
    return (now.ru_utime - before.ru_utime) + (now.ru_stime - before.ru_stime)


def add_run_options(p: argparse.ArgumentParser, duration_s: float) -> None:
    """The options every driver here takes: how long, how many rows, the payload seed, where the result goes."""
    p.add_argument("--duration", type=float, default=duration_s)
    p.add_argument("--grace", type=float, default=2.0, help="seconds after the load to wait for answers")
    p.add_argument("--rows", type=int, default=1, help="rows per request")
    p.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "big"))
    p.add_argument("--out", default="-", help="result JSON file ('-': stdout)")


def write_result(result: dict[str, Any], out: str) -> None:
    """The result JSON to a file, or to stdout for '-'."""
    text = json.dumps(result)
    if out == "-":
        print(text)
    else:
        with open(out, "w") as fh:
            fh.write(text)


def _pairs(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def run_windows(args: argparse.Namespace) -> dict[str, Any]:
    """Closed loop in windows (loadtest/drive/windows.py), the meters read at the windows' edges."""
    from loadtest.drive.windows import Probe, WindowPlan, windowed_closed_loop

    plan = WindowPlan(args.warmup, args.window, args.min_answers, max_windows=args.max_windows, within=args.within)
    with Probe(_pairs(args.meter), _pairs(args.server_metrics)) as probe:
        result = asyncio.run(
            windowed_closed_loop(args.url, args.path, args.kind, args.users, args.rows, plan, probe, args.seed,
                                 args.grace)
        )  # fmt: skip
    return {"driver": DRIVER, **result}


def run(args: argparse.Namespace) -> dict[str, Any]:
    install_uvloop()
    if getattr(args, "window", 0.0) and not args.rate:
        return run_windows(args)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.perf_counter()
    if args.rate:
        out, window = asyncio.run(
            open_loop(args.url, args.path, args.kind, args.rate, args.duration, args.rows, args.seed,
                      args.arrivals, args.grace)
        )  # fmt: skip
    else:
        out, window = asyncio.run(
            closed_loop(args.url, args.path, args.kind, args.users, args.duration, args.rows, args.grace)
        )
    wall = time.perf_counter() - wall0
    cpu = cpu_since(cpu0)
    return {
        "driver": DRIVER,
        "mode": "open" if args.rate else "closed",
        "requests": out.requests,  # sent or scheduled
        "ok": out.ok,
        "failures": out.failures,
        "unanswered": out.unanswered,
        "failure_samples": failure_samples(out),
        "wall_s": round(wall, 3),
        "window": window.as_dict(),
        "rps": round(out.ok / window.seconds, 1),  # good answers per second of the load's window
        "generator_cpu_s": round(cpu, 3),
        "generator_cpu_us_per_request": round(cpu * 1e6 / max(out.ok, 1), 1),  # per good answer
        "late_sends": out.late_sends,
        "early_sends": out.early_sends,
        "send_lateness": latency.summary(out.lateness),  # open loop: ms behind schedule, p50..max
        "backlogged": out.backlogged,
        "connections": out.max_connections,
        "latency": latency.summary(out.hist),  # good answers only
        "failed_latency": latency.summary(out.failed_hist),
        "hdr": latency.encode(out.hist),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.drive.lean", description=__doc__)
    p.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8501")
    p.add_argument("--path", required=True, help="e.g. /v1/models/digits:predict")
    p.add_argument("--kind", choices=["tf", "torch", "compare"], required=True, help="how answers are checked")
    p.add_argument("--users", type=int, default=1, help="closed loop: concurrent users")
    p.add_argument("--rate", type=float, default=0.0, help="open loop: Poisson arrivals per second")
    p.add_argument("--arrivals", type=int, default=0, help="open loop: exactly this many arrivals (not --duration)")
    w = p.add_argument_group("windows (closed loop): a warm-up, then windows until the last 3 agree")
    w.add_argument("--window", type=float, default=0.0, help="seconds a window (0: one fixed --duration, no windows)")
    w.add_argument("--warmup", type=float, default=0.5, help="seconds of the discarded warm-up window")
    w.add_argument("--min-answers", type=int, default=100, help="a window lasts until it has this many answers")
    w.add_argument("--max-windows", type=int, default=5, help="windows before giving up on agreement")
    w.add_argument("--within", type=float, default=0.10, help="spread allowed between the last 3 windows")
    w.add_argument("--meter", action="append", default=[], help="NAME=cgroup:PATH or NAME=pid:PID, read at the edges")
    w.add_argument("--server-metrics", action="append", default=[], help="tf=URL or torch=URL, scraped at the edges")
    add_run_options(p, duration_s=5.0)
    args = p.parse_args(argv)
    write_result(run(args), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
