"""One pooled HTTP client per backend, bytes in and out, every transport failure mapped in one place.

The default ("raw") is a small HTTP/1.1 keep-alive client: an asyncio.Protocol per connection feeding httptools
(llhttp, gateway/http1.py). The upstreams are known servers (TF Serving's REST API, TorchServe) and the request is
bytes already, so a call costs far less CPU than an aiohttp session or httpx. "aiohttp" and "httpcore" (httpx on its
own transport) remain as options; the route and error-path tests run on all three.

Failures: connection refused/reset before any answer -> 503 (BackendUnavailable), no answer within the call's one
deadline -> 504 (BackendTimeout), an answer that is malformed, cut short or over the size limit -> 502
(UpstreamError). The connect timeout covers connecting only: the pool is at least the admission limit
(gateway/admission.py), so no request waits for a pooled connection and a burst reuses the previous one's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

from gateway.errors import BackendTimeout, BackendUnavailable, UpstreamError
from gateway.http1 import AnswerError, ConnectionDropped, Http1Connection
from gateway.logs import REQUEST_ID

JSON = {"Content-Type": "application/json"}


def _rid() -> dict[str, str] | None:
    """The request's id (gateway/logs.py) as a header for the upstream, where there is one."""
    rid = REQUEST_ID.get()
    return {"X-Request-Id": rid} if rid else None


class UpstreamClient(Protocol):
    async def post(self, path: str, body: bytes) -> tuple[int, bytes]: ...

    async def get(self, path: str, timeout: float | None = None) -> tuple[int, bytes]: ...

    async def aclose(self) -> None: ...


class RawHttpUpstream:
    """HTTP/1.1 keep-alive to one upstream: a prebuilt request head, the framing by httptools
    (gateway/http1.py), a LIFO pool of idle, clean connections at least as large as the admission limit.

    One deadline covers the whole call, a retry included. A call is retried once, on a new connection, only when not
    one byte of an answer arrived: a reused connection the server closed as the request crossed it (servers close
    idle keep-alive connections: uvicorn after 5 s), or a connect timeout (the request never left)."""

    def __init__(self, base_url: str, backend: str, settings: Any, headers: dict[str, str] | None = None) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        if parts.scheme != "http":
            raise ValueError(f"backend '{backend}': the raw upstream client speaks plain HTTP; got {base_url!r}")
        self.backend = backend
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._prefix = parts.path.rstrip("/")
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head = f"Host: {parts.netloc}\r\n{extra}Content-Type: application/json\r\n".encode()
        self._timeout_s = settings.request_timeout_s
        self._connect_s = settings.connect_timeout_s
        self._max_body = settings.max_upstream_body_bytes
        self._keep = max(settings.max_keepalive_connections, settings.concurrency_limit, 1)
        self._idle: list[Http1Connection] = []

    async def _connect(self, deadline: float) -> Http1Connection:
        loop = asyncio.get_running_loop()
        name = self.backend
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: Http1Connection(self._max_body), self.host, self.port),
                min(self._connect_s, max(deadline - loop.time(), 0.0)),
            )
        except TimeoutError as exc:
            raise BackendTimeout(f"backend '{name}' timed out (connect)", backend=name) from exc
        except OSError as exc:
            raise BackendUnavailable(f"backend '{name}' is unreachable: {exc.strerror or exc}", backend=name) from exc
        return conn

    def _idle_connection(self) -> Http1Connection | None:
        """The most recently used idle connection that is still clean (not closed, nothing unsolicited on it)."""
        while self._idle:
            conn = self._idle.pop()
            if conn.clean:
                return conn
            conn.close()
        return None

    async def _request(self, method: str, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        rid = REQUEST_ID.get()
        line = f"{method} {self._prefix}{path} HTTP/1.1\r\n" + (f"X-Request-Id: {rid}\r\n" if rid else "")
        request = b"%s%sContent-Length: %d\r\n\r\n%s" % (line.encode(), self._head, len(body), body)
        name = self.backend
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout  # one deadline for the call, retry included
        for attempt in (0, 1):
            conn = self._idle_connection() if attempt == 0 else None  # a retry always gets a new connection
            reused = conn is not None
            if conn is None:
                try:
                    conn = await self._connect(deadline)
                except BackendTimeout:
                    if attempt == 0 and loop.time() < deadline:
                        continue  # the request never left
                    raise
            expiry = loop.call_at(deadline, conn.expire)
            try:
                status, answer = await conn.exchange(request)
            except TimeoutError as exc:
                raise BackendTimeout(f"backend '{name}' timed out (read)", backend=name) from exc
            except ConnectionDropped as exc:
                if not exc.received and reused and attempt == 0:
                    continue  # an idle connection the server closed as the request crossed it: nothing answered
                if exc.received:
                    raise UpstreamError(f"backend '{name}' cut its answer short: {exc}", backend=name) from exc
                raise BackendUnavailable(f"backend '{name}' is unreachable: {exc}", backend=name) from exc
            except AnswerError as exc:
                raise UpstreamError(f"backend '{name}' {exc}", backend=name) from exc
            except BaseException:  # cancelled: the answer may still come, on a connection no one reads
                conn.close()
                raise
            finally:
                expiry.cancel()
            if conn.clean and len(self._idle) < self._keep:
                self._idle.append(conn)
            else:
                conn.close()
            return status, answer
        raise BackendUnavailable(f"backend '{name}' is unreachable", backend=name)  # pragma: no cover

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await self._request("POST", path, body, self._timeout_s)

    async def get(self, path: str, timeout: float | None = None) -> tuple[int, bytes]:
        return await self._request("GET", path, b"", timeout or self._timeout_s)

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()


class AiohttpUpstream:
    def __init__(self, base_url: str, backend: str, settings: Any, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.backend = backend
        self._headers = {**JSON, **(headers or {})}
        self._timeout_s = settings.request_timeout_s
        self._connect_s = settings.connect_timeout_s
        self._limit = settings.max_connections
        self._keepalive = settings.max_keepalive_connections
        self._session: Any = None

    def _client(self) -> Any:
        import aiohttp

        if self._session is None:  # created on first use, inside the running loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=self._timeout_s, sock_connect=self._connect_s),
                headers=self._headers,
                trust_env=False,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        import aiohttp

        name = self.backend
        try:
            yield
        except aiohttp.ConnectionTimeoutError as exc:  # sock_connect: connecting took too long
            raise BackendTimeout(f"backend '{name}' timed out (connect)", backend=name) from exc
        except TimeoutError as exc:
            raise BackendTimeout(f"backend '{name}' timed out (read)", backend=name) from exc
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise BackendUnavailable(f"backend '{name}' is unreachable: {exc}", backend=name) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"backend '{name}' failed: {type(exc).__name__}: {exc}", backend=name) from exc

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        import aiohttp

        with self._errors():
            try:
                async with self._client().post(self.base_url + path, data=body, headers=_rid()) as response:
                    return response.status, await response.read()
            except aiohttp.ConnectionTimeoutError:
                # The request never reached the backend, so once more is safe: a cold burst opening a hundred
                # connections at once on 2 busy cores can take one past the connect timeout.
                async with self._client().post(self.base_url + path, data=body, headers=_rid()) as response:
                    return response.status, await response.read()

    async def get(self, path: str, timeout: float | None = None) -> tuple[int, bytes]:
        import aiohttp

        t = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, self._connect_s)) if timeout else None
        with self._errors():
            async with self._client().get(self.base_url + path, timeout=t, headers=_rid()) as response:
                return response.status, await response.read()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpxUpstream:
    """httpx on its own transport: slower, but what respx fakes in the unit tests."""

    def __init__(self, base_url: str, backend: str, settings: Any, headers: dict[str, str] | None = None) -> None:
        import httpx

        self.backend = backend
        limits = httpx.Limits(
            max_connections=settings.max_connections, max_keepalive_connections=settings.max_keepalive_connections
        )
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={**JSON, **(headers or {})},
            timeout=httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s),
            limits=limits,
            trust_env=False,
        )

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        import httpx

        name = self.backend
        try:
            yield
        except httpx.TimeoutException as exc:
            kind = "connect" if isinstance(exc, httpx.ConnectTimeout) else "read"
            raise BackendTimeout(f"backend '{name}' timed out ({kind})", backend=name) from exc
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise BackendUnavailable(
                f"backend '{name}' is unreachable: {exc or type(exc).__name__}", backend=name
            ) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"backend '{name}' failed: {exc}", backend=name) from exc

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        with self._errors():
            response = await self._client.post(path, content=body, headers=_rid())
        return response.status_code, response.content

    async def get(self, path: str, timeout: float | None = None) -> tuple[int, bytes]:
        with self._errors():
            response = await self._client.get(path, timeout=timeout, headers=_rid())
        return response.status_code, response.content

    async def aclose(self) -> None:
        await self._client.aclose()


def new_upstream(base_url: str, backend: str, settings: Any, headers: dict[str, str] | None = None) -> UpstreamClient:
    """One pooled client per backend, created in the app's lifespan."""
    if settings.upstream_transport == "raw":
        return RawHttpUpstream(base_url, backend, settings, headers)
    if settings.upstream_transport == "stream":
        from gateway.stream_upstream import StreamHttpUpstream

        return StreamHttpUpstream(base_url, backend, settings, headers)
    if settings.upstream_transport == "aiohttp":
        return AiohttpUpstream(base_url, backend, settings, headers)
    return HttpxUpstream(base_url, backend, settings, headers)
