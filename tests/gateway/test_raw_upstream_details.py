"""The raw upstream client's request line and headers as the server receives them, and the backend named on every
error it raises (it goes into the error's JSON body)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.errors import GatewayError
from gateway.logs import REQUEST_ID
from gateway.settings import Settings
from gateway.upstream import AiohttpUpstream, HttpxUpstream, RawHttpUpstream, new_upstream
from stack.launcher import free_port
from tests.gateway.stub_http import Request, ScriptedServer, answer

OK = answer(200, b"ok")


def _exchange(script: Any, base_path: str = "", headers: dict[str, str] | None = None, rid: str | None = None) -> Any:
    async def scenario() -> tuple[list[Any], ScriptedServer]:
        server = ScriptedServer(script)
        port = await server.start()
        up = RawHttpUpstream(f"http://127.0.0.1:{port}{base_path}", "tf", Settings(), headers)
        token = REQUEST_ID.set(rid) if rid else None
        out: list[Any] = []
        try:
            for call in (up.post("/v1/p", b'{"a": 1}'), up.get("/v1/s")):
                try:
                    out.append(await call)
                except GatewayError as exc:
                    out.append(exc)
            return out, server
        finally:
            if token is not None:
                REQUEST_ID.reset(token)
            await up.aclose()
            server.close()

    return asyncio.run(scenario())


async def _ok(_: Request) -> tuple[bytes, bool]:
    return OK, False


def test_the_base_path_headers_and_request_id_reach_the_server() -> None:
    out, server = _exchange(_ok, "/prefix/", {"X-A": "1", "X-B": "2"}, rid="req-42")
    assert out == [(200, b"ok"), (200, b"ok")]
    post, get = server.requests
    assert (post.method, post.path, post.body) == ("POST", "/prefix/v1/p", b'{"a": 1}')
    assert (get.method, get.path, get.body) == ("GET", "/prefix/v1/s", b"")
    for r in (post, get):
        headers = {k.lower(): v for k, v in r.headers.items()}
        assert headers["x-a"] == "1" and headers["x-b"] == "2" and headers["x-request-id"] == "req-42"
    assert headers["content-length"] == "0"


def test_no_request_id_header_without_one() -> None:
    _, server = _exchange(_ok)
    assert all("x-request-id" not in {k.lower() for k in r.headers} for r in server.requests)


def test_every_error_names_its_backend() -> None:
    async def cut(r: Request) -> tuple[bytes | None, bool]:
        return (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab", True) if r.n == 0 else (None, True)

    async def bad(_: Request) -> tuple[bytes, bool]:
        return b"garbage\r\n\r\n", True

    for script in (cut, bad):
        out, _ = _exchange(script)
        assert all(isinstance(o, GatewayError) and o.extra == {"backend": "tf"} for o in out), out

    async def refused() -> GatewayError:
        up = RawHttpUpstream(f"http://127.0.0.1:{free_port()}", "tf", Settings())
        try:
            await up.post("/p", b"{}")
        except GatewayError as exc:
            return exc
        finally:
            await up.aclose()
        raise AssertionError("a refused connection answered")

    exc = asyncio.run(refused())
    assert exc.extra == {"backend": "tf"} and exc.message.startswith("backend 'tf' is unreachable: Connect call failed")


@pytest.mark.parametrize(
    ("transport", "kind"), [("raw", RawHttpUpstream), ("aiohttp", AiohttpUpstream), ("httpcore", HttpxUpstream)]
)
def test_each_transport_is_built_as_asked_and_forwards_headers_and_the_request_id(transport: str, kind: type) -> None:
    async def scenario() -> tuple[Any, Any, ScriptedServer]:
        server = ScriptedServer(_ok)
        port = await server.start()
        up = new_upstream(f"http://127.0.0.1:{port}", "tf", Settings(upstream_transport=transport), {"X-A": "1"})
        token = REQUEST_ID.set("req-7")
        try:
            return up, await up.post("/p", b"{}"), server
        finally:
            REQUEST_ID.reset(token)
            await up.aclose()
            server.close()

    up, out, server = asyncio.run(scenario())
    assert type(up) is kind and out == (200, b"ok")
    headers = {k.lower(): v for k, v in server.requests[0].headers.items()}
    assert headers["x-a"] == "1" and headers["x-request-id"] == "req-7"
