"""The gateway's routes and its 502/503/504 table on every upstream transport, the default (raw) first, against a
real loopback backend that answers with scripted bytes (tests/gateway/stub_http.py), not a faked transport."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from gateway.main import create_app
from gateway.settings import Settings
from stack.launcher import free_port
from tests.gateway.stub_http import Request, StubBackend, answer

TRANSPORTS = ["raw", "stream", "aiohttp", "httpcore"]  # the default first
ROW = [0.25] * 64
PROBS = [0.01] * 9 + [0.91]
TF_PREDICT = ("POST", "/v1/models/digits:predict")
TS_PREDICT = ("POST", "/predictions/digits")


def _json(status: int, doc: Any, *headers: str) -> bytes:
    return answer(status, orjson.dumps(doc), "Content-Type: application/json", *headers)


GOOD = _json(200, {"predictions": [PROBS]})


def gateway(stub: StubBackend, transport: str, **overrides: Any) -> TestClient:
    urls = {"tf_url": stub.url, "torch_url": stub.url, "torch_management_url": stub.url}
    settings = Settings(model_name="digits", models="", upstream_transport=transport, **{**urls, **overrides})
    return TestClient(create_app(settings), raise_server_exceptions=False)


def predict(c: TestClient, route: str = "/predict/tf") -> Any:
    return c.post(route, json={"instances": [ROW]})


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_route_answers(stub: StubBackend, transport: str) -> None:
    with gateway(stub, transport) as c:
        for route in ("/predict", "/predict/tf", "/predict/torch"):
            r = predict(c, route)
            assert r.status_code == 200 and r.json()["predictions"] == [PROBS], r.text
        r = predict(c, "/compare")
        assert r.status_code == 200 and r.json()["labels_agree"] is True
        assert c.get("/readyz").json()["backends"] == {"tf": "AVAILABLE", "torch": "READY"}
    sent = [r for r in stub.server.requests if r.method == "POST"]
    assert orjson.loads(sent[0].body) == {"instances": [ROW]}


async def _silent(request: Request) -> tuple[bytes | None, bool]:
    await asyncio.sleep(3)
    return None, True


async def _hang_up(request: Request) -> tuple[bytes | None, bool]:
    return None, True


TABLE: dict[str, tuple[Any, int, str]] = {
    "500 with a JSON error": (_json(500, {"error": "kaput"}), 502, "answered 500: kaput"),
    "400 from TF Serving": (_json(400, {"error": "Matrix size-incompatible"}), 502, "Matrix size-incompatible"),
    "503 from the backend": (_json(503, {"code": 503, "message": "No worker"}), 503, "No worker"),
    "not JSON": (answer(200, b"not json"), 502, "invalid JSON"),
    "a wrong class count": (_json(200, {"predictions": [[0.1]]}), 502, "row 0 has 1 values, expected 10"),
    "too many rows": (_json(200, {"predictions": [PROBS, PROBS]}), 502, "malformed predictions"),
    "a string": (_json(200, {"predictions": [["a"] * 10]}), 502, "malformed predictions"),
    "no predictions": (_json(200, {"nothing": 1}), 502, "malformed predictions"),
    "NaN": (answer(200, b'{"predictions": [[NaN' + b", 0.1" * 9 + b"]]}"), 502, "malformed predictions"),
    "an extra field": (_json(200, {"predictions": [PROBS], "x": 1}), 200, ""),
    "chunked with a trailer": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\nX-T: 1\r\n\r\n"
        % (len(orjson.dumps({"predictions": [PROBS]})), orjson.dumps({"predictions": [PROBS]})),
        200,
        "",
    ),
    "Connection: close": (_json(200, {"predictions": [PROBS]}, "Connection: close"), 200, ""),
    "a body ending at close": (b"HTTP/1.1 200 OK\r\n\r\n" + orjson.dumps({"predictions": [PROBS]}), 200, ""),
    "no answer in time": (_silent, 504, "backend 'tf' timed out"),
    "closed without an answer": (_hang_up, 503, "backend 'tf' is unreachable"),
}


@pytest.mark.parametrize("case", list(TABLE))
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_upstream_failures_map_to_gateway_errors(stub: StubBackend, transport: str, case: str) -> None:
    script, status, fragment = TABLE[case]
    if case == "a body ending at close":
        stub.answers[TF_PREDICT] = lambda r: asyncio.sleep(0, (script, True))
    else:
        stub.answers[TF_PREDICT] = script
    with gateway(stub, transport, request_timeout_s=1.0) as c:
        for _ in range(2):  # twice: what the first answer left on a pooled connection must not spoil the next
            r = predict(c)
            assert r.status_code == status, r.text
            if status != 200:
                assert fragment in r.json()["error"] and r.json()["backend"] == "tf", r.text
            else:
                assert r.json()["predictions"] == [PROBS]
        assert predict(c, "/predict/torch").status_code == 200, "the other backend is unaffected"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_refused_is_unavailable_and_failover_takes_the_other(stub: StubBackend, transport: str) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    with gateway(stub, transport, tf_url=down) as c:
        r = predict(c)
        assert r.status_code == 503 and "backend 'tf' is unreachable" in r.json()["error"], r.text
        assert c.get("/readyz").status_code == 503
    with gateway(stub, transport, tf_url=down, failover=True) as c:
        r = predict(c, "/predict")
        assert r.status_code == 200 and r.json()["backend"] == "torch"


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances": [["x", NaN]], "instances": [%s]}',
        b'{"instances": [[1e30]], "instance\\u0073": [%s]}',  # the same key, spelled with an escape
    ],
)
@pytest.mark.parametrize("route", ["/predict/tf", "/compare"])
def test_a_duplicate_key_is_a_400_naming_it(stub: StubBackend, body: bytes, route: str) -> None:
    """TF Serving reads the first "instances", the validators the last: the unvalidated rows must not get through."""
    with gateway(stub, "raw") as c:
        r = c.post(route, content=body % orjson.dumps(ROW), headers={"content-type": "application/json"})
        assert r.status_code == 400 and "duplicate key 'instances'" in r.json()["error"], r.text
        escaped_once = b'{"instance\\u0073": [%s]}' % orjson.dumps(ROW)
        ok = c.post(route, content=escaped_once, headers={"content-type": "application/json"})
        assert ok.status_code == 200, ok.text
    assert len([r for r in stub.server.requests if r.method == "POST"]) == (1 if route == "/predict/tf" else 2)


def test_compare_cancels_the_other_call_when_one_fails_and_frees_its_slot(stub: StubBackend) -> None:
    """TF fails at once, TorchServe would take seconds: the client gets its 502 now, and the TorchServe call is
    cancelled, its admission slot free, before the answer goes out (it used to stay in flight)."""
    stub.answers[TF_PREDICT] = answer(500, b'{"error": "kaput"}')
    stub.answers[TS_PREDICT] = _silent
    with gateway(stub, "raw", request_timeout_s=5.0) as c:
        r = c.post("/compare", json={"instances": [ROW]})
        assert r.status_code == 502 and "kaput" in r.json()["error"]
        metrics = c.get("/metrics").text
    assert 'gateway_upstream_in_flight{backend="torch"} 0.0' in metrics
    assert 'gateway_upstream_in_flight{backend="tf"} 0.0' in metrics


def test_an_upstream_error_message_is_truncated(stub: StubBackend) -> None:
    stub.answers[TF_PREDICT] = _json(500, {"error": "x" * 100_000})
    with gateway(stub, "raw") as c:
        r = c.post("/predict/tf", json={"instances": [ROW]})
    assert r.status_code == 502 and len(r.json()["error"]) < 700 and "(100000 characters)" in r.json()["error"]
