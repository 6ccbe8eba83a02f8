"""The StreamReader variant of the raw client (GATEWAY_UPSTREAM_TRANSPORT=stream, gateway/stream_upstream.py) under
the raw client's own framing, retry, deadline and pool tests: the tests of tests/gateway/test_upstream_framing.py
and tests/gateway/test_http1_connection.py, collected here a second time with `client()` building the stream one.
(The route and error-path tests run on it through tests/gateway/test_error_paths.py's TRANSPORTS.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gateway.settings import Settings
from gateway.stream_upstream import StreamHttpUpstream
from gateway.upstream import new_upstream
from tests.gateway import test_upstream_framing as framing

# The same tests, collected in this module (pytest collects the test functions a module holds, imported or not).
from tests.gateway.test_http1_connection import (  # noqa: F401
    test_a_body_without_a_length_ends_with_the_connection,
    test_a_clean_answer_keeps_its_connection_and_an_interim_one_does_not_end_it,
    test_a_close_before_any_byte_says_so,
    test_a_framed_body_cut_short_by_the_close_is_an_error_not_an_answer,
    test_a_protocol_upgrade_is_refused_by_name,
    test_after_an_interim_answer_a_body_without_length_still_ends_with_the_connection,
    test_the_body_limit_counts_every_chunk_and_admits_exactly_the_limit,
)
from tests.gateway.test_upstream_framing import (  # noqa: F401
    test_204_and_304_have_no_body_and_keep_the_connection,
    test_a_body_ending_at_close_and_connection_close_are_honoured,
    test_a_body_over_the_limit_is_a_502,
    test_a_new_connection_closed_unanswered_is_unavailable_without_retry,
    test_an_interim_answer_is_skipped,
    test_an_os_error_on_read_is_unavailable_not_internal,
    test_malformed_framing_is_a_502_and_the_connection_is_not_reused,
    test_no_retry_once_the_server_started_answering,
    test_one_deadline_covers_the_retry,
    test_the_pool_keeps_at_least_the_admission_limit,
    test_the_stale_pool_race_is_retried_on_a_new_connection,
    test_trailers_are_consumed_and_the_next_answer_is_its_own,
    test_unsolicited_bytes_after_an_answer_drop_the_connection,
)


def _stream_client(port: int, **settings: Any) -> StreamHttpUpstream:
    return StreamHttpUpstream(f"http://127.0.0.1:{port}", "tf", Settings(**settings))


@pytest.fixture(autouse=True)
def _on_streams(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(framing, "client", _stream_client)
    yield


def test_the_tests_here_run_on_the_stream_client() -> None:
    assert isinstance(framing.client(1), StreamHttpUpstream)


def test_the_transport_setting_selects_it_and_it_speaks_http_only() -> None:
    assert isinstance(
        new_upstream("http://127.0.0.1:1", "tf", Settings(upstream_transport="stream")), StreamHttpUpstream
    )
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="GATEWAY_TF_URL"):
        Settings(tf_url="https://tf:8501", upstream_transport="stream")


LATE_408 = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("kind", ["raw", "stream"])
def test_bytes_arriving_on_an_idle_connection_drop_it(kind: str) -> None:
    """An idle server's `408 Connection: close` that arrives on its own, after the answer, while the connection
    sits in the pool (not in the same read as the answer) must not be the next caller's answer."""
    import asyncio

    connections = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                writer.write(framing.OK)
                await writer.drain()
                if len(connections) == 1:
                    await asyncio.sleep(0.05)
                    writer.write(LATE_408)  # unsolicited; the connection stays open
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def scenario() -> list[tuple[int, bytes]]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        up = new_upstream(f"http://127.0.0.1:{port}", "tf", Settings(upstream_transport=kind))
        try:
            first = await up.post("/p", b"{}")
            await asyncio.sleep(0.3)  # the 408 arrives while the connection is idle
            return [first, await up.post("/p", b"{}")]
        finally:
            await up.aclose()
            for w in connections:
                w.close()
            server.close()

    assert asyncio.run(scenario()) == [(200, b'{"predictions": [[1.0]]}')] * 2
    assert len(connections) == 2
