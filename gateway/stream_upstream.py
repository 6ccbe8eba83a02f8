"""The raw upstream client on asyncio streams: `asyncio.open_connection` and a read loop feeding httptools, the
alternative to gateway/http1.py's `asyncio.Protocol` (GATEWAY_UPSTREAM_TRANSPORT=stream).

Issue 24 asked which of the two costs less per call; both exist so the hop instrument can measure them on the same
stack (docs/gateway.md has the figures). The rules are the raw client's own, by construction: the same pool, one
deadline per call, a retry only when not one byte of an answer arrived, the body cap, a connection reused only while
idle and clean (RawHttpUpstream in gateway/upstream.py; only the connection differs). The framing is llhttp's, one
parser per connection, with the same callbacks and errors as gateway/http1.py.
"""

from __future__ import annotations

import asyncio

import httptools

from gateway.errors import BackendTimeout, BackendUnavailable
from gateway.http1 import AnswerError, ConnectionDropped
from gateway.upstream import RawHttpUpstream

READ_BYTES = 256 * 1024  # what one read may take from the stream's buffer


class StreamConnection:
    """One HTTP/1.1 connection read through a StreamReader: `exchange` writes a request and reads until its final
    answer is complete, the connection ends, or `expire` (the call's deadline) closes it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_body_bytes: int) -> None:
        self._reader, self._writer = reader, writer
        self._parser = httptools.HttpResponseParser(self)
        self._max_body = max_body_bytes
        self._reusable = False  # the last answer was complete and the server did not ask to close
        self._expired = False
        self._complete = False
        self._error: AnswerError | None = None
        self._body: list[bytes] = []
        self._size = 0
        self._status = 0
        self._headers_done = False
        self._length_known = False

    @property
    def clean(self) -> bool:
        """Idle and reusable: the last answer was complete, the server did not ask to close, and not one byte
        (an idle server's `408 ... Connection: close`, a second answer) nor the end of the stream has arrived since.
        StreamReader has no public count of what it holds: its buffer is read here, never changed."""
        reader = self._reader
        return (
            self._reusable
            and not self._writer.is_closing()
            and not reader.at_eof()
            and not getattr(reader, "_buffer", b"")
            and reader.exception() is None
        )

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """(status, body) of the request's final answer, or AnswerError, ConnectionDropped or TimeoutError."""
        self._reusable = self._complete = self._headers_done = self._length_known = False
        self._body, self._size, self._status, self._error = [], 0, 0, None
        self._writer.write(request)
        received = False
        while not self._complete:
            try:
                data = await self._reader.read(READ_BYTES)
            except OSError as exc:  # reset, or any other failure of the socket: the connection ended
                self.close()
                if self._expired:
                    raise TimeoutError from exc
                raise ConnectionDropped(received, exc) from exc
            if self._expired:
                raise TimeoutError
            if not data:  # the server closed
                self.close()
                if self._headers_done and not self._length_known:  # a body delimited by the close: complete now
                    return self._status, b"".join(self._body)
                raise ConnectionDropped(received, None)
            received = True
            error: AnswerError | None = None
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                error = AnswerError("answered with a protocol upgrade")
            except httptools.HttpParserError as exc:
                error = AnswerError(f"answered malformed HTTP ({exc})")
            if self._error is not None:  # the body went over the limit
                self.close()
                raise self._error
            if error is not None:  # after a complete answer, only the connection is lost
                self.close()
                if not self._complete:
                    raise error
        return self._status, b"".join(self._body)

    def expire(self) -> None:
        """The call's deadline passed: the read in progress ends (the connection is closed) as a timeout."""
        self._expired = True
        self.close()

    def close(self) -> None:
        self._reusable = False
        self._writer.close()

    # ---- httptools callbacks (as gateway/http1.py's) -----------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._complete:  # a second answer to one request, in the same read: the connection is not clean
            self._reusable = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._length_known:
            key = name.lower()
            self._length_known = key == b"content-length" or key == b"transfer-encoding"

    def on_headers_complete(self) -> None:
        if self._complete:
            return
        self._status = status = self._parser.get_status_code()
        self._headers_done = status >= 200  # an interim (1xx) answer is its own message, without a body

    def on_body(self, body: bytes) -> None:
        if self._complete:
            return
        self._size += len(body)
        if self._size > self._max_body:
            self._error = AnswerError(f"answered a body over the limit of {self._max_body} bytes")
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._status < 200 or self._complete:  # 1xx: the final answer follows
            self._length_known = False
            return
        self._complete = True
        self._reusable = self._parser.should_keep_alive() and self._error is None


class StreamHttpUpstream(RawHttpUpstream):
    """RawHttpUpstream (pool, deadline, retry rules) over StreamConnection instead of gateway/http1.py's Protocol."""

    async def _connect(self, deadline: float) -> StreamConnection:  # type: ignore[override]
        loop = asyncio.get_running_loop()
        name = self.backend
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=READ_BYTES),
                min(self._connect_s, max(deadline - loop.time(), 0.0)),
            )
        except TimeoutError as exc:
            raise BackendTimeout(f"backend '{name}' timed out (connect)", backend=name) from exc
        except OSError as exc:
            raise BackendUnavailable(f"backend '{name}' is unreachable: {exc.strerror or exc}", backend=name) from exc
        return StreamConnection(reader, writer, self._max_body)
