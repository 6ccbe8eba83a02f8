"""The upstream clients' details that only a misbehaving network shows, against real loopback servers
(tests/gateway/stub_http.py): connects that never complete (the first, or all), a pool of two connections both
closed by the server, idle pools sized by the settings, the request line and Host header as sent, and each
transport's limits, timeouts and proxy handling.

A connect that never completes is made by the test's own event loop: its create_connection (which every transport
here calls) waits forever for the first `n` calls; what follows is a real connection to a real server.

Written for the mutation score (issue 28): each test fails on a deliberate bug in gateway/upstream.py that the other
upstream tests let through."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.errors import BackendTimeout, BackendUnavailable, GatewayError
from gateway.logs import REQUEST_ID
from gateway.settings import Settings
from gateway.upstream import RawHttpUpstream, new_upstream
from tests.gateway.stub_http import Request, ScriptedServer, answer

OK = answer(200, b"ok")
TRANSPORTS = ["raw", "aiohttp", "httpcore"]
HANG = 3600.0  # a connect that "never" completes; every test below is bounded far below it


def hang_connects(n: int) -> list[float]:
    """The running loop's first n connects never complete; returns the times they were tried."""
    loop = asyncio.get_running_loop()
    real = loop.create_connection
    tried: list[float] = []

    async def create_connection(*args: Any, **kwargs: Any) -> Any:
        if len(tried) < n:
            tried.append(time.monotonic())
            await asyncio.sleep(HANG)
        return await real(*args, **kwargs)

    loop.create_connection = create_connection  # type: ignore[method-assign]
    return tried


async def _ok(_: Request) -> tuple[bytes, bool]:
    return OK, False


def scenario(
    script: Any,
    calls: Callable[[Any], Awaitable[Any]],
    transport: str = "raw",
    hung: int = 0,
    base_path: str = "",
    bound: float = 10.0,
    **settings: Any,
) -> tuple[Any, ScriptedServer, float]:
    """A server with `script`, a client of `transport`, `hung` connects that never complete; `calls(client)` with
    errors returned, not raised; the seconds it took. `bound` only stops a hang (a mutant's), it is no timing test."""

    async def run() -> tuple[Any, ScriptedServer, float]:
        server = ScriptedServer(script)
        port = await server.start()
        up = new_upstream(
            f"http://127.0.0.1:{port}{base_path}", "tf", Settings(upstream_transport=transport, **settings)
        )
        hang_connects(hung)
        started = time.monotonic()
        try:
            try:
                out = await asyncio.wait_for(calls(up), bound)
            except GatewayError as exc:
                out = exc
            return out, server, time.monotonic() - started
        finally:
            await up.aclose()
            server.close()

    return asyncio.run(run())


# ---- connects that never complete -----------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_connect_that_never_completes_is_a_504_naming_the_connect(transport: str) -> None:
    out, server, _ = scenario(_ok, lambda up: up.post("/p", b"{}"), transport, hung=9, connect_timeout_s=0.2)
    assert isinstance(out, BackendTimeout), out
    assert out.message == "backend 'tf' timed out (connect)" and out.extra == {"backend": "tf"}
    assert server.requests == []


def test_a_first_connect_that_never_completes_is_tried_once_more_on_a_new_connect() -> None:
    """The request never left: the raw client connects again (within the same deadline), and the call answers."""
    out, server, _ = scenario(_ok, lambda up: up.post("/p", b"{}"), hung=1, connect_timeout_s=0.2)
    assert out == (200, b"ok") and len(server.requests) == 1


def test_aiohttp_tries_a_timed_out_connect_once_more_with_the_same_request() -> None:
    async def post_with_id(up: Any) -> Any:
        token = REQUEST_ID.set("req-9")
        try:
            return await up.post("/v1/p", b'{"a": 1}')
        finally:
            REQUEST_ID.reset(token)

    out, server, _ = scenario(_ok, post_with_id, "aiohttp", hung=1, base_path="/boX/", connect_timeout_s=0.2)
    assert out == (200, b"ok")
    (request,) = server.requests
    assert (request.method, request.path, request.body) == ("POST", "/boX/v1/p", b'{"a": 1}')
    assert request.headers["x-request-id"] == "req-9"


def test_the_raw_clients_retry_connect_that_also_times_out_is_a_504() -> None:
    """Two connects timed out, time left in the call: a 504 for the connect (not a 503, not a third try)."""
    out, server, _ = scenario(_ok, lambda up: up.post("/p", b"{}"), hung=2, connect_timeout_s=0.2)
    assert isinstance(out, BackendTimeout) and out.message == "backend 'tf' timed out (connect)", out
    assert server.connections == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_call_deadline_bounds_a_connect_shorter_than_its_own_timeout(transport: str) -> None:
    """Connect timeout 5 s, call deadline 0.1 s: the connect gives up when the call's time is up."""
    out, _, took = scenario(
        _ok, lambda up: up.get("/s", 0.1), transport, hung=9, bound=4.0, connect_timeout_s=5.0, request_timeout_s=0.1
    )
    assert isinstance(out, BackendTimeout), out
    assert took < 0.8  # 0.1 s and scheduling; waiting the connect timeout (5 s) or at least 1 s is the bug


def test_a_get_with_its_own_timeout_still_has_the_connect_timeout_on_aiohttp() -> None:
    out, _, _ = scenario(_ok, lambda up: up.get("/s", 5.0), "aiohttp", hung=9, bound=4.0, connect_timeout_s=0.2)
    assert isinstance(out, BackendTimeout) and out.message == "backend 'tf' timed out (connect)", out


def test_httpx_connect_timeout_is_its_own_not_the_calls() -> None:
    out, _, _ = scenario(
        _ok, lambda up: up.post("/p", b"{}"), "httpcore", hung=9, bound=4.0, connect_timeout_s=0.2, request_timeout_s=8
    )
    assert isinstance(out, BackendTimeout) and out.message == "backend 'tf' timed out (connect)", out


# ---- what is sent ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_request_line_host_and_request_id_on_both_methods(transport: str) -> None:
    async def both(up: Any) -> list[Any]:
        token = REQUEST_ID.set("req-3")
        try:
            return [await up.post("/v1/p", b"{}"), await up.get("/v1/s"), await up.get("/v1/t", 2.0)]
        finally:
            REQUEST_ID.reset(token)

    out, server, _ = scenario(_ok, both, transport, base_path="/boX/")
    assert out == [(200, b"ok")] * 3
    assert [(r.method, r.path) for r in server.requests] == [
        ("POST", "/boX/v1/p"),
        ("GET", "/boX/v1/s"),
        ("GET", "/boX/v1/t"),
    ]
    for r in server.requests:
        assert r.headers["host"].startswith("127.0.0.1:") and r.headers["x-request-id"] == "req-3"
        assert r.headers["content-type"] == "application/json"


def test_without_a_request_id_the_raw_head_is_the_host_first() -> None:
    out, server, _ = scenario(_ok, lambda up: up.post("/p", b"{}"))
    (request,) = server.requests
    assert out == (200, b"ok")
    assert next(iter(request.headers)) == "host" and request.headers["host"].startswith("127.0.0.1:")


def test_a_url_without_a_host_or_port_means_loopback_and_80() -> None:
    up = RawHttpUpstream("http:///v1", "tf", Settings())
    assert (up.host, up.port) == ("127.0.0.1", 80)
    up = RawHttpUpstream("http://10.1.2.3/", "tf", Settings())
    assert (up.host, up.port) == ("10.1.2.3", 80)


def test_the_raw_client_connects_to_the_host_it_was_given() -> None:
    """127.0.0.2 is loopback too, but not 127.0.0.1: a client that connected elsewhere would be refused."""

    async def run() -> Any:
        server = ScriptedServer(_ok)
        server.server = await asyncio.start_server(server._handle, "127.0.0.2", 0)
        port = server.server.sockets[0].getsockname()[1]
        up = RawHttpUpstream(f"http://127.0.0.2:{port}", "tf", Settings())
        try:
            return await asyncio.wait_for(up.post("/p", b"{}"), 10)
        finally:
            await up.aclose()
            server.close()

    assert asyncio.run(run()) == (200, b"ok")


def test_a_backend_url_that_is_not_http_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"backend 'tf': the raw upstream client speaks plain HTTP; got 'https://t:1'"):
        RawHttpUpstream("https://t:1", "tf", Settings())


# ---- the pool -------------------------------------------------------------------------------------------------------
class Barrier:
    """Answers requests `size` at a time, once that many are in flight at once (with `first_only`, only the requests
    on the first `size` connections wait: a retry's new connection is answered at once)."""

    def __init__(self, size: int, first_only: bool = False) -> None:
        self.size, self.first_only, self.in_flight, self.most = size, first_only, 0, 0
        self.waiting: list[asyncio.Future[None]] = []

    async def __call__(self, request: Request) -> tuple[bytes | None, bool]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            if not self.first_only or request.conn < self.size:
                gate = asyncio.get_running_loop().create_future()
                self.waiting.append(gate)
                if len(self.waiting) == self.size:
                    for g in self.waiting:
                        g.set_result(None)
                    self.waiting.clear()
                await gate
            return OK, False
        finally:
            self.in_flight -= 1


def bursts(n: int, times: int) -> Callable[[Any], Awaitable[Any]]:
    async def calls(up: Any) -> list[Any]:
        out = []
        for _ in range(times):
            out += await asyncio.gather(*(up.post("/p", b"{}") for _ in range(n)))
        return out

    return calls


@pytest.mark.parametrize(
    ("settings", "kept"),
    [
        ({"max_keepalive_connections": 8, "max_concurrency_per_backend": 2}, 8),  # the keep-alive setting, if larger
        ({"max_keepalive_connections": 0, "max_concurrency_per_backend": 1}, 1),  # at least one
    ],
)
def test_the_raw_pool_keeps_the_larger_of_keepalive_and_admission(settings: dict[str, Any], kept: int) -> None:
    """Two bursts of 8: the second reuses as many connections as the pool kept and opens the rest."""
    out, server, _ = scenario(Barrier(8), bursts(8, 2), **settings)
    assert out == [(200, b"ok")] * 16
    assert server.connections == 8 + (8 - kept)


def test_a_retry_never_takes_another_pooled_connection() -> None:
    """Two pooled connections, both closed by the server as a request crosses them: the first is found closed, the
    retry goes to a new connection (not the other stale one, which would fail it)."""

    async def script(request: Request) -> tuple[bytes | None, bool]:
        if request.n > 0:
            return None, True  # every reuse: the server closed it as the request arrived
        return await barrier(request)

    barrier = Barrier(2, first_only=True)
    out, server, _ = scenario(script, bursts(2, 1))
    assert out == [(200, b"ok")] * 2

    async def then_one(up: Any) -> Any:
        await bursts(2, 1)(up)
        return await up.post("/p", b"{}")

    barrier = Barrier(2, first_only=True)
    out, server, _ = scenario(script, then_one)
    assert out == (200, b"ok"), out
    assert [(r.conn, r.n) for r in server.requests][2:] in ([(1, 1), (2, 0)], [(0, 1), (2, 0)])


@pytest.mark.parametrize("transport", ["aiohttp", "httpcore"])
def test_the_other_transports_hold_at_most_max_connections(transport: str) -> None:
    barrier = Barrier(3)
    out, server, _ = scenario(barrier, bursts(6, 1), transport, max_connections=3)
    assert out == [(200, b"ok")] * 6 and barrier.most == 3 and server.connections == 3


def test_httpx_keeps_max_keepalive_connections_idle() -> None:
    out, server, _ = scenario(Barrier(3), bursts(3, 2), "httpcore", max_connections=3, max_keepalive_connections=1)
    assert out == [(200, b"ok")] * 6 and server.connections == 5  # 3, then 1 kept and 2 new


def test_httpx_ignores_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # a proxy that refuses: used, it would fail the call
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    out, server, _ = scenario(_ok, lambda up: up.post("/p", b"{}"), "httpcore")
    assert out == (200, b"ok") and len(server.requests) == 1


@pytest.mark.parametrize("transport", ["aiohttp", "httpcore"])
def test_a_get_with_a_timeout_is_bounded_by_it(transport: str) -> None:
    async def slow(_: Request) -> tuple[bytes, bool]:
        await asyncio.sleep(1.5)
        return OK, False

    out, _, _ = scenario(slow, lambda up: up.get("/s", 0.3), transport, bound=5.0)
    assert isinstance(out, BackendTimeout) and out.message == "backend 'tf' timed out (read)", out


@pytest.mark.parametrize("transport", ["aiohttp", "httpcore"])
def test_a_get_without_a_timeout_has_the_clients(transport: str) -> None:
    out, _, _ = scenario(_ok, lambda up: up.get("/s"), transport)
    assert out == (200, b"ok")


def test_a_refused_connection_is_a_503_on_every_transport() -> None:
    """(The cause is each library's; the kind, the backend and the start of the message are the gateway's.)"""
    from stack.launcher import free_port

    async def run(transport: str) -> Any:
        up = new_upstream(f"http://127.0.0.1:{free_port()}", "tf", Settings(upstream_transport=transport))
        try:
            return await up.post("/p", b"{}")
        except GatewayError as exc:
            return exc
        finally:
            await up.aclose()

    for transport in TRANSPORTS:
        out = asyncio.run(run(transport))
        assert isinstance(out, BackendUnavailable) and out.extra == {"backend": "tf"}, (transport, out)
        assert out.message.startswith("backend 'tf' is unreachable: "), (transport, out.message)


def test_the_stream_transport_is_built_as_asked_and_forwards_its_headers() -> None:
    from gateway.stream_upstream import StreamHttpUpstream

    async def run() -> tuple[Any, Any, ScriptedServer]:
        server = ScriptedServer(_ok)
        port = await server.start()
        up = new_upstream(f"http://127.0.0.1:{port}", "tf", Settings(upstream_transport="stream"), {"X-A": "1"})
        try:
            return up, await asyncio.wait_for(up.post("/p", b"{}"), 10), server
        finally:
            await up.aclose()
            server.close()

    up, out, server = asyncio.run(run())
    assert type(up) is StreamHttpUpstream and out == (200, b"ok")
    assert server.requests[0].headers["x-a"] == "1"
