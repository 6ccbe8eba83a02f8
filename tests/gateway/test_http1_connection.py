"""gateway/http1.py's delimiting of an answer's end: a body with a length that the server cuts short is an error,
never a shorter good answer; a body without a length ends with the connection; the messages say what happened."""

from __future__ import annotations

import pytest

from gateway.errors import BackendUnavailable, UpstreamError
from tests.gateway.stub_http import answer
from tests.gateway.test_upstream_framing import run, twice

CUT_SHORT = {
    "Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
    "Content-Length after another header": b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 10\r\n\r\nabc",
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
}


@pytest.mark.parametrize("head", list(CUT_SHORT.values()), ids=list(CUT_SHORT))
def test_a_framed_body_cut_short_by_the_close_is_an_error_not_an_answer(head: bytes) -> None:
    out, server = run(lambda r: (head, True), twice)
    for o in out:
        assert isinstance(o, UpstreamError) and "cut its answer short" in o.message, out
        assert "closed by the server" in o.message
    assert len(server.requests) == 2  # not retried: part of an answer had arrived


def test_a_body_without_a_length_ends_with_the_connection() -> None:
    out, server = run(lambda r: (b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nabc", True), twice)
    assert out == [(200, b"abc"), (200, b"abc")]
    assert server.connections == 2  # such a connection can't carry another answer


def test_a_close_before_any_byte_says_so() -> None:
    out, _ = run(lambda r: (None, True), twice)
    assert all(isinstance(o, BackendUnavailable) for o in out), out
    assert out[0].message == "backend 'tf' is unreachable: closed by the server"


def test_a_clean_answer_keeps_its_connection_and_an_interim_one_does_not_end_it() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    out, server = run(lambda r: interim + answer(200, b"ok"), twice)
    assert out == [(200, b"ok"), (200, b"ok")]
    assert server.connections == 1


def _chunked(*chunks: bytes) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n"


@pytest.mark.parametrize(
    ("head", "taken"),
    [
        (answer(200, b"abcde"), True),  # exactly the limit
        (answer(200, b"abcdef"), False),
        (_chunked(b"abc", b"de"), True),
        (_chunked(b"abc", b"def"), False),  # each chunk under the limit, together over it
    ],
)
def test_the_body_limit_counts_every_chunk_and_admits_exactly_the_limit(head: bytes, taken: bool) -> None:
    out, _ = run(lambda r: head, twice, max_upstream_body_bytes=5)
    if taken:
        assert out[0][0] == 200 and len(out[0][1]) == 5, out
    else:
        assert isinstance(out[0], UpstreamError), out
        assert out[0].message == "backend 'tf' answered a body over the limit of 5 bytes"


def test_a_protocol_upgrade_is_refused_by_name() -> None:
    upgrade = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    out, _ = run(lambda r: upgrade, twice)
    assert isinstance(out[0], UpstreamError), out
    assert out[0].message == "backend 'tf' answered with a protocol upgrade"


def test_after_an_interim_answer_a_body_without_length_still_ends_with_the_connection() -> None:
    out, _ = run(lambda r: (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nabc", True), twice)
    assert out == [(200, b"abc"), (200, b"abc")]
