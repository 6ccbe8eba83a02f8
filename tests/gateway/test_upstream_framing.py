"""The raw upstream client's framing, retries, deadline and pool, against loopback servers that misbehave on purpose.

Each answer is sent as raw bytes by a real server on 127.0.0.1 (tests/gateway/stub_http.py). Every framing case
here was a bug of the hand-written client this one replaced (issue 24): the test of each fails on it."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.errors import BackendTimeout, BackendUnavailable, GatewayError, UpstreamError
from gateway.settings import Settings
from gateway.upstream import RawHttpUpstream
from tests.gateway.stub_http import Request, ScriptedServer, answer

OK = answer(200, b'{"predictions": [[1.0]]}')


def client(port: int, **settings: Any) -> RawHttpUpstream:
    return RawHttpUpstream(f"http://127.0.0.1:{port}", "tf", Settings(**settings))


def run(
    first: Callable[[Request], bytes | tuple[bytes | None, bool] | None],
    calls: Callable[[RawHttpUpstream], Awaitable[Any]],
    **settings: Any,
) -> tuple[Any, ScriptedServer]:
    """Serve `first(request)` for each request (a bytes answer keeps the connection), run `calls` with a client."""

    async def script(request: Request) -> tuple[bytes | None, bool]:
        out = first(request)
        return out if isinstance(out, tuple) else (out, False)

    async def scenario() -> tuple[Any, ScriptedServer]:
        server = ScriptedServer(script)
        up = client(await server.start(), **settings)
        try:
            return await calls(up), server
        finally:
            await up.aclose()
            server.close()

    return asyncio.run(scenario())


async def twice(up: RawHttpUpstream) -> list[Any]:
    """Two calls one after the other; an error is returned, not raised, so the second call happens too."""
    out: list[Any] = []
    for _ in range(2):
        try:
            out.append(await up.post("/p", b"{}"))
        except GatewayError as exc:
            out.append(exc)
    return out


def test_trailers_are_consumed_and_the_next_answer_is_its_own() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n"
    )
    out, server = run(lambda r: chunked, twice)
    assert out == [(200, b"abcde"), (200, b"abcde")]
    assert server.connections == 1


MALFORMED = {
    "conflicting Content-Length": answer(200, b"abc", "Content-Length: 3", "Content-Length: 5"),
    "a bad status line": b"garbage 200 x\r\nContent-Length: 3\r\n\r\nabc",
    "an obs-fold header": b"HTTP/1.1 200 OK\r\nX-A: a\r\n  folded\r\nContent-Length: 3\r\n\r\nabc",
    "Transfer-Encoding with Content-Length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    ),
    "a signed Content-Length": answer(200, b"abc", "Content-Length: +3"),
    "an underscored Content-Length": answer(200, b"a" * 24, "Content-Length: 2_4"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_framing_is_a_502_and_the_connection_is_not_reused(case: str) -> None:
    out, server = run(lambda r: MALFORMED[case] if r.conn == 0 else OK, twice)
    assert isinstance(out[0], UpstreamError) and "malformed HTTP" in out[0].message, out[0]
    assert out[1] == (200, b'{"predictions": [[1.0]]}')
    assert server.connections == 2


@pytest.mark.parametrize(
    "interim", [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"]
)
def test_an_interim_answer_is_skipped(interim: bytes) -> None:
    out, server = run(lambda r: interim + OK, twice, request_timeout_s=2.0)
    assert out == [(200, b'{"predictions": [[1.0]]}')] * 2
    assert server.connections == 1


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body_and_keep_the_connection(status: int) -> None:
    # A 304 may name the length of the body it does not send.
    head = f"HTTP/1.1 {status} X\r\n" + ("Content-Length: 10\r\n" if status == 304 else "") + "\r\n"
    out, server = run(lambda r: head.encode(), twice, request_timeout_s=2.0)
    assert out == [(status, b"")] * 2
    assert server.connections == 1


def test_a_body_over_the_limit_is_a_502() -> None:
    out, server = run(lambda r: answer(200, b"x" * 2000), twice, max_upstream_body_bytes=1000)
    assert all(isinstance(o, UpstreamError) and "over the limit of 1000" in o.message for o in out), out
    assert server.connections == 2


def test_a_body_ending_at_close_and_connection_close_are_honoured() -> None:
    at_close = b"HTTP/1.1 200 OK\r\n\r\nall of it"
    out, server = run(lambda r: (at_close, True), twice)
    assert out == [(200, b"all of it")] * 2 and server.connections == 2
    out, server = run(lambda r: answer(200, b"abc", "Connection: close"), twice)
    assert out == [(200, b"abc")] * 2 and server.connections == 2


def test_unsolicited_bytes_after_an_answer_drop_the_connection() -> None:
    """An idle server's `408 Connection: close` behind the answer is nobody's answer: the next call must not get it."""
    late_408 = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    out, server = run(lambda r: OK + late_408 if r.conn == 0 else OK, twice)
    assert out == [(200, b'{"predictions": [[1.0]]}')] * 2
    assert server.connections == 2


# ---- retries: only when not one byte of an answer arrived, on a reused connection --------------------------------
def test_the_stale_pool_race_is_retried_on_a_new_connection() -> None:
    """The server closes the idle connection exactly as the client reuses it: the request crossed the close, nothing
    answered it, so it is sent again on a new connection (deleting the retry makes this a 503)."""
    out, server = run(lambda r: OK if r.n == 0 else (None, True), twice)
    assert out == [(200, b'{"predictions": [[1.0]]}')] * 2
    assert [(r.conn, r.n) for r in server.requests] == [(0, 0), (0, 1), (1, 0)]


def test_no_retry_once_the_server_started_answering() -> None:
    out, server = run(lambda r: OK if r.n == 0 else (b"HTTP/1.1 200 OK\r\nContent-Le", True), twice)
    assert out[0] == (200, b'{"predictions": [[1.0]]}')
    assert isinstance(out[1], UpstreamError) and "cut its answer short" in out[1].message, out[1]
    assert len(server.requests) == 2, "the request was sent again after part of an answer"


def test_a_new_connection_closed_unanswered_is_unavailable_without_retry() -> None:
    out, server = run(lambda r: (None, True), twice)
    assert all(isinstance(o, BackendUnavailable) for o in out), out
    assert len(server.requests) == 2


def test_one_deadline_covers_the_retry() -> None:
    """0.6 s before the stale close, 0.6 s more on the retry: 1.2 s in all against a 1.0 s deadline is a 504 (with a
    timeout per attempt it was a 200 after 1.2 s)."""

    async def slow(request: Request) -> tuple[bytes | None, bool]:
        if request.n == 0 and request.conn == 0:
            return OK, False
        await asyncio.sleep(0.6)
        return (None, True) if request.conn == 0 else (OK, False)

    async def scenario() -> list[Any]:
        server = ScriptedServer(slow)
        up = client(await server.start(), request_timeout_s=1.0)
        try:
            return await twice(up)
        finally:
            await up.aclose()
            server.close()

    out = asyncio.run(scenario())
    assert out[0] == (200, b'{"predictions": [[1.0]]}')
    assert isinstance(out[1], BackendTimeout) and "timed out (read)" in out[1].message, out[1]


def test_an_os_error_on_read_is_unavailable_not_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    """An OSError that is not a ConnectionError (EHOSTUNREACH, ETIMEDOUT from the kernel) used to escape as a 500."""
    real_recv = socket.socket.recv
    port_box: list[int] = []

    def recv(self: socket.socket, *args: Any) -> bytes:
        with_peer = self.getpeername() if self.type == socket.SOCK_STREAM else None
        if port_box and with_peer and with_peer[1] == port_box[0]:
            raise OSError(errno.EHOSTUNREACH, "No route to host")
        return real_recv(self, *args)

    monkeypatch.setattr(socket.socket, "recv", recv)

    async def scenario() -> Any:
        server = ScriptedServer(lambda r: asyncio.sleep(0, (OK, False)))
        port = await server.start()
        port_box.append(port)
        up = client(port)
        try:
            return await twice(up)
        finally:
            await up.aclose()
            server.close()

    out = asyncio.run(scenario())
    assert all(isinstance(o, BackendUnavailable) and o.status_code == 503 for o in out), out


def test_the_pool_keeps_at_least_the_admission_limit() -> None:
    """Three bursts of as many requests as admission lets through open that many connections once, not again and
    again for the part above max_keepalive_connections."""
    limit = 16  # max_connections - 4
    waiting: list[asyncio.Future[None]] = []

    async def barrier(request: Request) -> tuple[bytes | None, bool]:
        gate = asyncio.get_running_loop().create_future()
        waiting.append(gate)
        if len(waiting) == limit:  # every request of the burst is in flight at once
            for g in waiting:
                g.set_result(None)
            waiting.clear()
        await gate
        return OK, False

    async def scenario() -> int:
        server = ScriptedServer(barrier)
        up = client(await server.start(), max_connections=20, max_keepalive_connections=4)
        try:
            for _ in range(3):
                await asyncio.gather(*(up.post("/p", b"{}") for _ in range(limit)))
        finally:
            await up.aclose()
            server.close()
        return server.connections

    assert asyncio.run(scenario()) == limit


def test_a_backend_url_that_is_not_http_is_refused_at_start() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"GATEWAY_TF_URL='https://tf:8501'.*GATEWAY_UPSTREAM_TRANSPORT=aiohttp"):
        Settings(tf_url="https://tf:8501")
    with pytest.raises(ValidationError, match="GATEWAY_TORCH_URL='ftp://ts'"):
        Settings(torch_url="ftp://ts", upstream_transport="aiohttp")
    assert Settings(tf_url="https://tf:8501", upstream_transport="aiohttp").tf_url == "https://tf:8501"
