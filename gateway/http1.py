"""One HTTP/1.1 client connection to an upstream: an asyncio.Protocol feeding httptools (llhttp), one parser for the
life of the connection.

The framing is llhttp's, never hand-written: it consumes trailers, knows that 1xx, 204 and 304 answers have no body,
and rejects what request smuggling and shifted answers come from (duplicate Content-Length, Transfer-Encoding with
Content-Length, obs-fold, a malformed status line or length). A connection is reusable only while it is *clean*: its
last answer was complete, the server did not ask to close, and not one byte has arrived since (an idle server's
unsolicited `408 ... Connection: close`, or a second answer, mean the connection is dropped, never reused).
"""

from __future__ import annotations

import asyncio

import httptools


class AnswerError(Exception):
    """The upstream answered, but not with a well-formed HTTP/1.1 answer within the limits (-> 502)."""


class ConnectionDropped(Exception):
    """The connection ended before the answer was complete; `received`: whether any byte of the answer arrived."""

    def __init__(self, received: bool, cause: BaseException | None) -> None:
        detail = f"{type(cause).__name__}: {cause}" if cause is not None else "closed by the server"
        super().__init__(detail)
        self.received = received
        self.cause = cause


class Http1Connection(asyncio.Protocol):
    def __init__(self, max_body_bytes: int) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._max_body = max_body_bytes
        self.transport: asyncio.Transport | None = None
        self.clean = False  # idle and reusable
        self.received = False  # any byte of the current answer
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []
        self._size = 0
        self._status = 0
        self._headers_done = False
        self._length_known = False  # Content-Length or Transfer-Encoding: else the body ends when the server closes

    # ---- the caller's side -------------------------------------------------------------------------------------
    def exchange(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        """Send a request; the future gives (status, body) of its final answer, or raises AnswerError,
        ConnectionDropped or TimeoutError (from `expire`)."""
        assert self.transport is not None
        self._answer = answer = asyncio.get_running_loop().create_future()
        self.clean = self.received = self._headers_done = self._length_known = False
        self._body, self._size, self._status = [], 0, 0
        self.transport.write(request)
        return answer

    def expire(self) -> None:
        """The call's deadline passed: the answer is a timeout, and the connection (mid-answer) is closed."""
        self._fail(TimeoutError())

    def close(self) -> None:
        self.clean = False
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: BaseException) -> None:
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_exception(exc)
        self.close()

    # ---- asyncio.Protocol --------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        answer = self._answer
        if answer is None or answer.done():  # unsolicited: the connection is no longer clean
            self.close()
            return
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(AnswerError("answered with a protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(AnswerError(f"answered malformed HTTP ({exc})"))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost decides what the answer was

    def connection_lost(self, exc: Exception | None) -> None:
        self.clean = False
        answer = self._answer
        if answer is None or answer.done():
            return
        if self._headers_done and not self._length_known:  # a body delimited by the close: complete now
            answer.set_result((self._status, b"".join(self._body)))
        else:
            answer.set_exception(ConnectionDropped(self.received, exc))

    # ---- httptools callbacks -----------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._answer is None or self._answer.done():  # a second answer to one request
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._length_known:
            key = name.lower()
            self._length_known = key == b"content-length" or key == b"transfer-encoding"

    def on_headers_complete(self) -> None:
        self._status = status = self._parser.get_status_code()
        self._headers_done = status >= 200  # an interim (1xx) answer is its own message, without a body

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._max_body:
            self._fail(AnswerError(f"answered a body over the limit of {self._max_body} bytes"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        answer = self._answer
        if self._status < 200 or answer is None or answer.done():  # 1xx: the final answer follows
            self._length_known = False
            return
        self.clean = self._parser.should_keep_alive()
        answer.set_result((self._status, b"".join(self._body)))
