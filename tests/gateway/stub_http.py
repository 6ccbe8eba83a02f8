"""Loopback HTTP/1.1 servers that misbehave on purpose, written with raw bytes so every framing case can be sent.

`ScriptedServer` runs inside the test's event loop (for the upstream client's own tests); `StubBackend` runs one in a
thread (for the gateway app, whose TestClient has a loop of its own). A request is read as a head and a
Content-Length body; what is sent back is the script's choice: bytes, then keep the connection or close it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


def answer(status: int, body: bytes = b"", *headers: str, reason: str = "X") -> bytes:
    """A well-formed answer with a Content-Length (unless a header already frames it)."""
    head = [f"HTTP/1.1 {status} {reason}", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class Request:
    conn: int  # which connection (0, 1, ... in the order the server accepted them)
    n: int  # which request on that connection
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


# The script: the bytes to send (None: send nothing), and whether to close the connection afterwards.
Script = Callable[[Request], Awaitable[tuple[bytes | None, bool]]]


@dataclass
class ScriptedServer:
    script: Script
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn, self.connections = self.connections, self.connections + 1
        n = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *rest = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in rest if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                method, path, _ = line.split(" ", 2)
                request = Request(conn, n, method, path, headers, body)
                self.requests.append(request)
                n += 1
                data, close = await self.script(request)
                if data:
                    writer.write(data)
                    await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


class StubBackend:
    """A ScriptedServer on its own loop in a thread: `answers[(method, path)]` is the script of that route (bytes
    to send and keep the connection, or a Script); anything else is a 404."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], bytes | Script] = {}
        self.server = ScriptedServer(self._route)
        self.loop = asyncio.new_event_loop()
        self.port = 0

    async def _route(self, request: Request) -> tuple[bytes | None, bool]:
        found = self.answers.get((request.method, request.path))
        if found is None:
            return answer(404, b'{"error": "no such route"}'), False
        if isinstance(found, bytes):
            return found, False
        return await found(request)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextmanager
    def running(self) -> Iterator[StubBackend]:
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            self.port = self.loop.run_until_complete(self.server.start())
            started.set()
            self.loop.run_forever()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        started.wait(10)
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            thread.join(timeout=10)
            self.loop.close()

    async def _shutdown(self) -> None:
        self.server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
