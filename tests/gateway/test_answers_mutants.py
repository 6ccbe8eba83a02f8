"""What gateway/backends/base.py makes of a backend's answer, to the letter: the 502/503 message a client gets (the
backend, the status, the upstream's own message or the path asked), predictions read on the slow path (an answer
msgspec refuses but strict or lenient JSON reads), the passed-on text of the predictions, and the management calls
(get_json) behind /readyz. Written to kill the mutants `scripts/mutation.py answers` left alive."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from gateway.backends.base import get_json, predictions_text
from gateway.errors import UpstreamError
from tests.gateway.stub_http import StubBackend, answer
from tests.gateway.test_error_paths import PROBS, ROW, TF_PREDICT, TS_PREDICT, _json, gateway, predict

TF_STATUS = ("GET", "/v1/models/digits")
LONG = "e" * 500  # MESSAGE_CHARS: passed on whole; one more is cut


def _error(stub: StubBackend, route: str = "/predict/tf") -> tuple[int, dict[str, Any]]:
    with gateway(stub, "raw") as c:
        r = predict(c, route)
    return r.status_code, r.json()


MESSAGES: dict[str, tuple[bytes, int, str]] = {
    "a JSON error": (_json(500, {"error": "kaput"}), 502, "backend 'tf' answered 500: kaput"),
    "a JSON message": (
        _json(503, {"code": 503, "message": "No worker"}),
        503,
        "backend 'tf' is unavailable: No worker",
    ),
    "neither key": (_json(500, {"detail": "x"}), 502, "backend 'tf' answered 500: {'detail': 'x'}"),
    "500 characters": (_json(500, {"error": LONG}), 502, f"backend 'tf' answered 500: {LONG}"),
    "501 characters": (
        _json(500, {"error": LONG + "e"}),
        502,
        f"backend 'tf' answered 500: {LONG}... (501 characters)",
    ),
    "text": (answer(500, b"upstream exploded"), 502, "backend 'tf' answered 500: upstream exploded"),
    "a JSON list": (_json(500, [1, 2]), 502, "backend 'tf' answered 500: [1,2]"),
    "not UTF-8": (answer(500, b"\xff oops"), 502, "backend 'tf' answered 500: \ufffd oops"),
    "an empty 503": (answer(503), 503, "backend 'tf' is unavailable: HTTP 503"),
    "an empty 500": (answer(500), 502, "backend 'tf' answered 500: HTTP 500"),
    "too many rows": (
        _json(200, {"predictions": [PROBS, PROBS]}),
        502,
        "backend 'tf' returned malformed predictions: 2 rows for 1",
    ),
    "predictions a string": (
        _json(200, {"predictions": "none"}),
        502,
        "backend 'tf' returned malformed predictions: str rows for 1",
    ),
    "no predictions": (_json(200, {"x": 1}), 502, "backend 'tf' returned malformed predictions: NoneType rows for 1"),
    "a list, not an object": (
        _json(200, [PROBS]),
        502,
        "backend 'tf' returned malformed predictions: NoneType rows for 1",
    ),
    "a row that is a number": (
        _json(200, {"predictions": [0.5]}),
        502,
        "backend 'tf' returned malformed predictions: row 0 has float values, expected 10",
    ),
    "a row that is null": (
        _json(200, {"predictions": [None]}),
        502,
        "backend 'tf' returned malformed predictions: row 0 has NoneType values, expected 10",
    ),
    "a short row": (
        _json(200, {"predictions": [PROBS[:9]]}),
        502,
        "backend 'tf' returned malformed predictions: row 0 has 9 values, expected 10",
    ),
    "NaN": (
        answer(200, b'{"predictions": [[NaN' + b", 0.1" * 9 + b"]]}"),
        502,
        "backend 'tf' returned malformed predictions: row 0 holds a value that is not a number",
    ),
    "not JSON": (answer(200, b"{not json"), 502, "backend 'tf' answered with invalid JSON"),
    # Valid for orjson (nested under its limit of 1024), past the recursion limit of the json module's fallback.
    "nested 1010 deep": (
        answer(200, b'{"predictions": ' + b"[" * 1010 + b"]" * 1010 + b"}"),
        502,
        "backend 'tf' returned malformed predictions: row 0 has 1 values, expected 10",
    ),
}


@pytest.mark.parametrize("case", list(MESSAGES))
def test_the_client_gets_the_message_naming_backend_status_and_cause(stub: StubBackend, case: str) -> None:
    script, status, message = MESSAGES[case]
    stub.answers[TF_PREDICT] = script
    assert _error(stub) == (status, {"error": message, "backend": "tf"})


SLOW_BUT_VALID = {
    "NaN in another key": b'{"predictions": [%s], "note": NaN}',
    "Infinity in another key": b'{"debug": [Infinity], "predictions": [%s]}',
}


@pytest.mark.parametrize("case", list(SLOW_BUT_VALID))
@pytest.mark.parametrize("route", ["/predict/tf", "/predict/torch"])
def test_an_answer_only_lenient_json_reads_still_serves_its_predictions(
    stub: StubBackend, case: str, route: str
) -> None:
    """msgspec and orjson refuse the NaN token (TF Serving writes them); the lenient reader takes the answer, and
    the predictions in it are as good as any."""
    stub.answers[TF_PREDICT if route == "/predict/tf" else TS_PREDICT] = answer(
        200, SLOW_BUT_VALID[case] % orjson.dumps(PROBS)
    )
    with gateway(stub, "raw") as c:
        r = c.post(route, json={"instances": [ROW]})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == [PROBS] and r.json()["labels"] == [9]


def test_two_rows_on_the_slow_path(stub: StubBackend) -> None:
    stub.answers[TF_PREDICT] = answer(200, b'{"predictions": [%s, %s], "x": NaN}' % ((orjson.dumps(PROBS),) * 2))
    with gateway(stub, "raw") as c:
        r = c.post("/predict/tf", json={"instances": [ROW, ROW]})
    assert r.status_code == 200 and r.json()["predictions"] == [PROBS, PROBS], r.text


@pytest.mark.parametrize(
    "body",
    [
        b'{"predictions": [%s]}\n',  # a newline after the answer (many servers write one)
        b'{"x": {}, "predictions": [%s]}',  # the first value is an object without a string in it
        b'{"x": [{}], "predictions": [%s]}',
    ],
)
def test_the_predictions_passed_on_are_exactly_the_validated_ones(stub: StubBackend, body: bytes) -> None:
    stub.answers[TF_PREDICT] = answer(200, body % orjson.dumps(PROBS))
    with gateway(stub, "raw") as c:
        r = predict(c)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == [PROBS]


def test_predictions_text_finds_the_value_and_nothing_else() -> None:
    assert predictions_text(b'{"predictions": [[0.5, 0.5]]}\n') == b"[[0.5, 0.5]]"
    assert predictions_text(b'{"predictions": [[0.5]]}  \r\n') == b"[[0.5]]"
    assert predictions_text(b'{"x": {}, "predictions": [[0.5]]}') is None
    assert predictions_text(b'{"x": {}, "y": {}, "predictions": [[0.5]]}') is None


READINESS: dict[str, tuple[bytes, str]] = {
    "a JSON error": (_json(500, {"error": "kaput"}), "/v1/models/digits answered 500: kaput"),
    "an empty 500": (answer(500), "/v1/models/digits answered 500: HTTP 500"),
    "a 404 in text": (answer(404, b"no such model"), "/v1/models/digits answered 404: no such model"),
    "not JSON": (answer(200, b"{not json"), "/v1/models/digits answered with invalid JSON"),
}


@pytest.mark.parametrize("case", list(READINESS))
def test_readiness_says_which_path_answered_what(stub: StubBackend, case: str) -> None:
    script, detail = READINESS[case]
    stub.answers[TF_STATUS] = script
    with gateway(stub, "raw") as c:
        r = c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["backends"] == {"tf": detail, "torch": "READY"}
    assert r.json()["error"] == f"not ready: tf: {detail}"


class _Client:
    """An UpstreamClient that answers every GET with one status and body, and records what it was asked."""

    def __init__(self, status: int, body: bytes) -> None:
        self.answer = status, body
        self.gets: list[tuple[str, float | None]] = []

    async def get(self, path: str, timeout: float | None = None) -> tuple[int, bytes]:
        self.gets.append((path, timeout))
        return self.answer

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:  # pragma: no cover: get_json never posts
        raise AssertionError(path)

    async def aclose(self) -> None:  # pragma: no cover
        pass


def test_get_json_asks_with_the_readiness_timeout_and_returns_the_json() -> None:
    client = _Client(200, b'{"status": "Healthy"}')
    assert asyncio.run(get_json(client, "torch", "/ping", 0.25)) == {"status": "Healthy"}
    assert client.gets == [("/ping", 0.25)]  # not the prediction timeout the client falls back to without one


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, b'{"error": "kaput"}', "/ping answered 500: kaput"),
        (200, b"Healthy", "/ping answered with invalid JSON"),
    ],
)
def test_get_json_errors_name_the_backend(status: int, body: bytes, message: str) -> None:
    with pytest.raises(UpstreamError) as caught:
        asyncio.run(get_json(_Client(status, body), "torch", "/ping", 0.25))
    assert caught.value.message == message and caught.value.extra == {"backend": "torch"}
