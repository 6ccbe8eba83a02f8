"""The lean driver's framing (loadtest/drive/lean.py, httptools) against misbehaving stub servers on 127.0.0.1.

Each stub answers the requests it reads, in order and over every connection, with scripted raw bytes. What must
hold: an answer the driver reads is the one its request got, or the exchange fails (counted as a failure by the
drivers); never is the tail of one answer read as the next (the hand-written framing read trailers, 103s and a
second Content-Length into the next answer)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import orjson
import pytest

from loadtest.drive import lean
from stack.launcher import free_port

# Stub servers on 127.0.0.1 only: fast, in `make test-fast` too (the integration mark is for real servers).


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


@contextlib.contextmanager
def scripted_server(script: list[bytes]) -> Iterator[tuple[int, list[int]]]:
    """Answers the n-th request it reads (on any connection) with script[n] (then closes the connection if the answer
    says `Connection: close`); past the script, `ok(b"late")`. Yields the port and the connections made."""
    port, ready, connections = free_port(), threading.Event(), [0]
    answers = iter(script)
    loop = asyncio.new_event_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(h[15:]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                answer = next(answers, ok(b"late"))
                writer.write(answer)
                if b"Connection: close" in answer:
                    await writer.drain()
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", port))
        ready.set()
        loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(5)
    try:
        yield port, connections
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


REQUEST = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}"


def exchanges(port: int, n: int) -> list[tuple[int, bytes] | str]:
    """n requests one after another on one Connection, the way the drivers use it: after a failure, close it and
    open another. Each item: (status, body), or the failure's type name."""

    async def go() -> list[tuple[int, bytes] | str]:
        conn = await lean.Connection.open("127.0.0.1", port)
        seen: list[tuple[int, bytes] | str] = []
        for _ in range(n):
            try:
                seen.append(await asyncio.wait_for(conn.exchange(REQUEST), 5))
            except (OSError, asyncio.IncompleteReadError, lean.ProtocolError, ValueError) as exc:
                seen.append(type(exc).__name__)
                conn.close()
                conn = await lean.Connection.open("127.0.0.1", port)
        conn.close()
        return seen

    return asyncio.run(go())


def test_a_chunked_answer_with_a_trailer_leaves_nothing_behind() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n0\r\nX-Checksum: 1\r\n\r\n"
    with scripted_server([chunked, ok(b"two")]) as (port, _):
        assert exchanges(port, 2) == [(200, b"one"), (200, b"two")]


def test_connection_close_is_honoured_and_the_next_request_goes_on_a_fresh_connection() -> None:
    with scripted_server([ok(b"one", b"Connection: close\r\n"), ok(b"two")]) as (port, connections):
        assert exchanges(port, 2) == [(200, b"one"), (200, b"two")]
    assert connections[0] == 2


def test_an_answer_read_until_close_without_a_length_is_a_failure_not_a_hang() -> None:
    until_close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nsome"
    with scripted_server([until_close, ok(b"two")]) as (port, _):
        seen = exchanges(port, 2)
    assert isinstance(seen[0], str) and seen[1] == (200, b"two")


def test_a_204_has_no_body_and_the_next_answer_is_read_right() -> None:
    with scripted_server([b"HTTP/1.1 204 No Content\r\n\r\n", ok(b"two")]) as (port, _):
        assert exchanges(port, 2) == [(204, b""), (200, b"two")]


def test_a_1xx_before_the_final_answer_is_skipped() -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    with scripted_server([early + ok(b"one"), b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"two")]) as (port, _):
        assert exchanges(port, 2) == [(200, b"one"), (200, b"two")]


def test_conflicting_content_lengths_are_a_failure_and_do_not_shift_the_next_answer() -> None:
    conflicting = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 13\r\n\r\noneHTTP/1.1 200"
    with scripted_server([conflicting, ok(b"two"), ok(b"three")]) as (port, _):
        seen = exchanges(port, 3)
    assert seen == ["ProtocolError", (200, b"two"), (200, b"three")]


@pytest.mark.parametrize(
    "bad",
    [
        b"garbage 200 x\r\nContent-Length: 3\r\n\r\none",  # not a status line
        b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\none",  # int() would take it
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n0\r\n\r\n",
    ],
)
def test_ambiguous_answers_are_failures(bad: bytes) -> None:
    with scripted_server([bad, ok(b"two")]) as (port, _):
        seen = exchanges(port, 2)
    assert isinstance(seen[0], str) and seen[1] == (200, b"two")


def test_bytes_nobody_asked_for_are_never_the_next_answer() -> None:
    """The server sends a second answer after the first (like an idle 408): the next request must get its own."""
    with scripted_server([ok(b"one") + ok(b"stray"), ok(b"two")]) as (port, connections):
        assert exchanges(port, 2) == [(200, b"one"), (200, b"two")]
    assert connections[0] == 2


def test_the_closed_loop_counts_misbehaving_answers_and_keeps_every_other_one_right() -> None:
    """The driver itself on real payloads: a trailer, a 103, a 204, a Connection: close and two Content-Lengths
    come first; the 204 (not a prediction) and the conflicting lengths are failures, everything else is right."""
    req, p = lean.build_requests("http://127.0.0.1", "/v1/models/digits:predict", 1)[0]
    (label,) = p.expected
    good = orjson.dumps({"predictions": [[0.91 if i == label else 0.01 for i in range(10)]]})
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\nX-T: 1\r\n\r\n" % (
        len(good),
        good,
    )
    script = [
        chunked,
        b"HTTP/1.1 103 Early Hints\r\n\r\n" + ok(good),
        b"HTTP/1.1 204 No Content\r\n\r\n",
        ok(good, b"Connection: close\r\n"),
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Length: 3\r\n\r\n%s" % (len(good), good),
    ] + [ok(good)] * 400
    out = lean.Outcome()
    with scripted_server(script) as (port, _):

        async def go() -> None:
            conn = await lean.Connection.open("127.0.0.1", port)
            for _ in range(30):
                try:
                    await lean._one(conn, req, p, "tf", 0, out)
                except (OSError, lean.ProtocolError) as exc:
                    out.fail(f"connection: {type(exc).__name__}")
                    conn.close()
                    conn = await lean.Connection.open("127.0.0.1", port)
            conn.close()

        asyncio.run(go())
    assert out.requests == 30 and out.failures == 2, out.samples
    assert any(s.startswith("HTTP 204") for s in out.samples) and "connection: ProtocolError" in out.samples
