"""A lean load generator: closed-loop users or an open-loop Poisson schedule, raw HTTP/1.1 keep-alive on uvloop.

Why not locust for the figures: at 1 user locust's own per-request cost (~0.5 ms of Python here) was most of what
the 1-user rows measured (624 req/s where perf_analyzer measured 1,089 on the same TorchServe). This client writes
prebuilt request bytes, reads the answer by Content-Length, and checks it with orjson: its cost per request is a
fraction of locust's, and its CPU time is reported with every run so it stays visible.

- closed loop (`--users N`): N users, each with one connection, each sending its next request when the answer came.
- open loop (`--rate R`): arrivals on a Poisson schedule at R req/s (MLPerf LoadGen's Server scenario); latency is
  measured from the *scheduled* send time, so a stall of the server (or of this client) shows in the tail instead of
  silently lowering the offered rate (no coordinated omission). `late_sends` counts sends > 1 ms behind schedule.

Every answer is checked: status 200 and the label each model must give (loadtest/payloads.py); anything else is a
failure with a sample of what was wrong. Run: python -m loadtest.drive.lean --help
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

import orjson

from loadtest.measure import latency
from loadtest.payloads import Payload, check_predictions, payloads

MAX_OPEN_LOOP_CONNECTIONS = 512


class ProtocolError(Exception):
    pass


@dataclass
class Outcome:
    hist: Any = field(default_factory=latency.new_histogram)
    requests: int = 0
    failures: int = 0
    samples: dict[str, int] = field(default_factory=dict)
    late_sends: int = 0
    backlogged: int = 0  # open loop: not sent, MAX_OPEN_LOOP_CONNECTIONS already in flight (the server fell behind)
    max_connections: int = 0

    def fail(self, why: str) -> None:
        self.failures += 1
        if len(self.samples) < 20 or why in self.samples:
            self.samples[why] = self.samples.get(why, 0) + 1


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


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked = None, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                data = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(data[:-2])
            return status, b"".join(parts)
        if length is None:
            raise ProtocolError("answer without Content-Length")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


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
    status, body = await conn.exchange(req)
    latency.record_ms(out.hist, (time.perf_counter_ns() - started_ns) / 1e6)
    out.requests += 1
    if status != 200:
        out.fail(f"HTTP {status}: {body[:120].decode(errors='replace')}")
        return
    problem = check(kind, body, payload)
    if problem:
        out.fail(problem)


async def closed_loop(url: str, path: str, kind: str, users: int, duration_s: float, rows: int) -> Outcome:
    parts = urlsplit(url)
    requests = build_requests(url, path, rows)
    out = Outcome(max_connections=users)
    deadline = time.perf_counter() + duration_s

    async def user(seed: int) -> None:
        rng = random.Random(seed)
        conn = await Connection.open(parts.hostname or "127.0.0.1", parts.port or 80)
        try:
            while time.perf_counter() < deadline:
                req, payload = rng.choice(requests)
                try:
                    await _one(conn, req, payload, kind, time.perf_counter_ns(), out)
                except (OSError, asyncio.IncompleteReadError, ProtocolError, ValueError) as exc:
                    out.requests += 1
                    out.fail(f"connection: {type(exc).__name__}")
                    conn.close()
                    conn = await Connection.open(parts.hostname or "127.0.0.1", parts.port or 80)
        finally:
            conn.close()

    await asyncio.gather(*(user(i) for i in range(users)))
    return out


async def open_loop(url: str, path: str, kind: str, rate: float, duration_s: float, rows: int, seed: int) -> Outcome:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = build_requests(url, path, rows)
    rng = random.Random(seed)
    out = Outcome()
    idle: list[Connection] = []
    opened = 0
    start = time.perf_counter_ns()
    schedule, t = [], 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= duration_s:
            break
        schedule.append(start + int(t * 1e9))
    tasks: set[asyncio.Task[None]] = set()

    async def send(at_ns: int, req: bytes, payload: Payload) -> None:
        nonlocal opened
        conn = idle.pop() if idle else None
        try:
            if conn is None:
                if opened >= MAX_OPEN_LOOP_CONNECTIONS:
                    out.backlogged += 1
                    return
                opened += 1
                out.max_connections = max(out.max_connections, opened)
                conn = await Connection.open(host, port)
            await _one(conn, req, payload, kind, at_ns, out)  # latency from the scheduled time
            idle.append(conn)
        except (OSError, asyncio.IncompleteReadError, ProtocolError, ValueError) as exc:
            out.requests += 1
            out.fail(f"connection: {type(exc).__name__}")
            if conn is not None:
                conn.close()
                opened -= 1

    for at_ns in schedule:
        delay = (at_ns - time.perf_counter_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.001:
            out.late_sends += 1
        req, payload = rng.choice(requests)
        task = asyncio.create_task(send(at_ns, req, payload))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=60)
    for conn in idle:
        conn.close()
    return out


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


def run(args: argparse.Namespace) -> dict[str, Any]:
    install_uvloop()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.perf_counter()
    if args.rate:
        out = asyncio.run(open_loop(args.url, args.path, args.kind, args.rate, args.duration, args.rows, args.seed))
    else:
        out = asyncio.run(closed_loop(args.url, args.path, args.kind, args.users, args.duration, args.rows))
    wall = time.perf_counter() - wall0
    cpu = cpu_since(cpu0)
    return {
        "driver": "lean (asyncio + uvloop, raw HTTP/1.1 keep-alive, every answer checked with orjson)",
        "mode": "open" if args.rate else "closed",
        "requests": out.requests,
        "failures": out.failures,
        "failure_samples": failure_samples(out),
        "wall_s": round(wall, 3),
        "rps": round(out.requests / wall, 1) if wall else 0.0,
        "generator_cpu_s": round(cpu, 3),
        "late_sends": out.late_sends,
        "backlogged": out.backlogged,
        "connections": out.max_connections,
        "latency": latency.summary(out.hist),
        "hdr": latency.encode(out.hist),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.drive.lean", description=__doc__)
    p.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8501")
    p.add_argument("--path", required=True, help="e.g. /v1/models/digits:predict")
    p.add_argument("--kind", choices=["tf", "torch", "compare"], required=True, help="how answers are checked")
    p.add_argument("--users", type=int, default=1, help="closed loop: concurrent users")
    p.add_argument("--rate", type=float, default=0.0, help="open loop: Poisson arrivals per second")
    add_run_options(p, duration_s=5.0)
    args = p.parse_args(argv)
    write_result(run(args), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
