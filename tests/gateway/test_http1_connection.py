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
