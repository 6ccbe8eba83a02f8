"""One pooled HTTP client per backend, bytes in and out, every transport failure mapped in one place.

The default ("raw") is a small HTTP/1.1 keep-alive client on asyncio streams: the upstreams are known servers (TF
Serving's REST API, TorchServe), the request is bytes already, and measured here per call it costs ~100 µs of CPU
against ~250-280 µs for an aiohttp session and more for httpx, more than the model servers' own work per row.
"aiohttp" and "httpcore" (httpx on its own transport, what the unit tests fake with respx) remain as options.

Failures: connection refused/reset -> 503 (BackendUnavailable), no answer in time -> 504 (BackendTimeout),
anything else from the transport -> 502 (UpstreamError). The connect timeout covers connecting only: the pool is
larger than the admission limit (gateway/admission.py), so no request waits for a pooled connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

from gateway.errors import BackendTimeout, BackendUnavailable, UpstreamError

JSON = {"Content-Type": "application/json"}


class UpstreamClient(Protocol):
    async def post(self, path: str, body: bytes) -> tuple[int, bytes]: ...

    async def get(self, path: str, timeout: float | None = None) -> tuple[int, bytes]: ...

    async def aclose(self) -> None: ...


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer


class RawHttpUpstream:
    """HTTP/1.1 keep-alive to one upstream: prebuilt request head, Content-Length or chunked answers, a LIFO pool of
    idle connections. A request that fails on a reused connection before any answer (the server closed an idle
    keep-alive connection) is retried once on a new one; a connect timeout likewise (the request never left)."""

    def __init__(self, base_url: str, backend: str, settings: Any, headers: dict[str, str] | None = None) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        self.backend = backend
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._prefix = parts.path.rstrip("/")
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head = f"Host: {parts.netloc}\r\n{extra}".encode()
        self._timeout_s = settings.request_timeout_s
        self._connect_s = settings.connect_timeout_s
        self._keep = max(settings.max_keepalive_connections, 1)
        self._idle: list[_Conn] = []

    async def _connect(self) -> _Conn:
        name = self.backend
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self._connect_s)
        except TimeoutError as exc:
            raise BackendTimeout(f"backend '{name}' timed out (connect)", backend=name) from exc
        except OSError as exc:
            raise BackendUnavailable(f"backend '{name}' is unreachable: {exc.strerror or exc}", backend=name) from exc
        return _Conn(reader, writer)

    def _idle_connection(self) -> _Conn | None:
        """The most recently used idle connection the server has not closed (servers close idle keep-alive
        connections: uvicorn after 5 s, so the TF side's pool goes stale between two bursts)."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn
            conn.writer.close()
        return None

    async def _exchange(self, conn: _Conn, request: bytes) -> tuple[int, bytes, bool]:
        conn.writer.write(request)
        head = await conn.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked, keep = None, False, True
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif key == b"connection":
                keep = b"close" not in value.lower()
        if chunked:
            parts = []
            while True:
                size = int((await conn.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                data = await conn.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(data[:-2])
            return status, b"".join(parts), keep
        if length is None:  # the answer ends when the server closes
            return status, await conn.reader.read(), False
        return status, await conn.reader.readexactly(length), keep

    async def _request(self, method: str, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        request = (
            f"{method} {self._prefix}{path} HTTP/1.1\r\n".encode()
            + self._head
            + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
        name = self.backend
        for attempt in (0, 1):
            conn = self._idle_connection() if attempt == 0 else None  # a retry always gets a new connection
            reused = conn is not None
            try:
                async with asyncio.timeout(timeout):
                    if conn is None:
                        conn = await self._connect()
                    try:
                        status, answer, keep = await self._exchange(conn, request)
                    except BaseException:
                        conn.writer.close()
                        raise
            except BackendTimeout:
                if attempt == 0:
                    continue  # a connect timeout: the request never left
                raise
            except TimeoutError as exc:
                raise BackendTimeout(f"backend '{name}' timed out (read)", backend=name) from exc
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                if reused and attempt == 0:
                    continue  # an idle keep-alive connection the server had closed
                raise BackendUnavailable(
                    f"backend '{name}' is unreachable: {type(exc).__name__}", backend=name
                ) from exc
            except (ValueError, IndexError, asyncio.LimitOverrunError) as exc:
                raise UpstreamError(f"backend '{name}' answered malformed HTTP", backend=name) from exc
            if keep and len(self._idle) < self._keep:
                self._idle.append(conn)
            else:
                conn.writer.close()
            return status, answer
        raise BackendUnavailable(f"backend '{name}' is unreachable", backend=name)  # pragma: no cover

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await self._request("POST", path, body, self._timeout_s)

    async def get(self, path: str, timeout: float | None = None) -> tuple[int, bytes]:
        return await self._request("GET", path, b"", timeout or self._timeout_s)

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().writer.close()


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
                async with self._client().post(self.base_url + path, data=body) as response:
                    return response.status, await response.read()
            except aiohttp.ConnectionTimeoutError:
                # The request never reached the backend, so once more is safe: a cold burst opening a hundred
                # connections at once on 2 busy cores can take one past the connect timeout.
                async with self._client().post(self.base_url + path, data=body) as response:
                    return response.status, await response.read()

    async def get(self, path: str, timeout: float | None = None) -> tuple[int, bytes]:
        import aiohttp

        t = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, self._connect_s)) if timeout else None
        with self._errors():
            async with self._client().get(self.base_url + path, timeout=t) as response:
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
            response = await self._client.post(path, content=body)
        return response.status_code, response.content

    async def get(self, path: str, timeout: float | None = None) -> tuple[int, bytes]:
        with self._errors():
            response = await self._client.get(path, timeout=timeout)
        return response.status_code, response.content

    async def aclose(self) -> None:
        await self._client.aclose()


def new_upstream(base_url: str, backend: str, settings: Any, headers: dict[str, str] | None = None) -> UpstreamClient:
    """One pooled client per backend, created in the app's lifespan."""
    if settings.upstream_transport == "raw":
        return RawHttpUpstream(base_url, backend, settings, headers)
    if settings.upstream_transport == "aiohttp":
        return AiohttpUpstream(base_url, backend, settings, headers)
    return HttpxUpstream(base_url, backend, settings, headers)
