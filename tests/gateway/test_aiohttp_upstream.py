"""The aiohttp upstream client (GATEWAY_UPSTREAM_TRANSPORT=aiohttp) against a real loopback server: what it sends,
the limits and timeouts it is built with, and how its failures map to the gateway's errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.errors import BackendTimeout, GatewayError, UpstreamError
from gateway.settings import Settings
from gateway.upstream import AiohttpUpstream
from tests.gateway.stub_http import Request, ScriptedServer, answer

OK = answer(200, b'{"predictions": [[1.0]]}')


def _run(script: Any, call: Any, **settings: Any) -> tuple[Any, ScriptedServer]:
    async def scenario() -> tuple[Any, ScriptedServer]:
        server = ScriptedServer(script)
        up = AiohttpUpstream(f"http://127.0.0.1:{await server.start()}/", "tf", Settings(**settings), {"X-A": "1"})
        try:
            try:
                return await call(up), server
            except GatewayError as exc:
                return exc, server
        finally:
            await up.aclose()
            server.close()

    return asyncio.run(scenario())


async def _ok(_: Request) -> tuple[bytes, bool]:
    return OK, False


def test_it_sends_json_its_headers_and_no_user_agent_and_ignores_proxy_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # a proxy that refuses: used, it would fail the call
    out, server = _run(_ok, lambda up: up.post("/v1/p", b"{}"))
    assert out == (200, b'{"predictions": [[1.0]]}')
    (request,) = server.requests
    assert request.path == "/v1/p" and request.method == "POST" and request.body == b"{}"
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["content-type"] == "application/json" and headers["x-a"] == "1"
    assert "user-agent" not in headers


def test_the_session_is_built_with_the_settings_limits_and_timeouts() -> None:
    async def scenario() -> Any:
        up = AiohttpUpstream("http://127.0.0.1:9", "tf", Settings(request_timeout_s=3.5, connect_timeout_s=0.7))
        try:
            session = up._client()
            assert up._client() is session  # one session for the client's life
            return session.connector.limit, session.connector.limit_per_host, session.timeout
        finally:
            await up.aclose()

    limit, per_host, timeout = asyncio.run(scenario())
    assert limit == per_host == Settings().max_connections
    assert timeout.total == 3.5 and timeout.sock_connect == 0.7


def test_silence_is_a_read_timeout_for_post_and_for_a_get_with_its_own_timeout() -> None:
    async def silent(_: Request) -> tuple[bytes, bool]:
        await asyncio.sleep(3)
        return OK, False

    out, _ = _run(silent, lambda up: up.post("/p", b"{}"), request_timeout_s=0.2)
    assert isinstance(out, BackendTimeout) and out.message == "backend 'tf' timed out (read)"
    out, _ = _run(silent, lambda up: up.get("/s", timeout=0.2), request_timeout_s=10)
    assert isinstance(out, BackendTimeout) and out.message == "backend 'tf' timed out (read)"
    out, server = _run(_ok, lambda up: up.get("/s", timeout=5))
    assert out == (200, b'{"predictions": [[1.0]]}') and server.requests[0].method == "GET"


def test_a_malformed_answer_is_an_upstream_error() -> None:
    """(A refused connection, on this transport as on the others: test_upstream_mutants.py.)"""

    async def garbage(_: Request) -> tuple[bytes, bool]:
        return b"garbage\r\n\r\n", True

    out, _ = _run(garbage, lambda up: up.post("/p", b"{}"))
    assert isinstance(out, UpstreamError) and out.message.startswith("backend 'tf' failed: "), out
