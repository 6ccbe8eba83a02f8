"""What an operator reads: JSON lines for start-up, readiness changes, every 5xx and unexpected exception (with its
traceback), the access log when switched on, and request ids that go from the client through to the backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from gateway import logs
from tests.gateway.stub_http import StubBackend, answer
from tests.gateway.test_error_paths import ROW, TF_PREDICT, TRANSPORTS, gateway


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    logs.flush()
    out = []
    for line in capsys.readouterr().err.splitlines():
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict) and doc.get("logger") == "gateway":
            out.append(doc)
    return out


@pytest.fixture
def log(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    lines(capsys)  # drop what came before
    yield capsys


def test_a_fast_path_exception_leaves_a_traceback(
    stub: StubBackend,
    log: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug on the fast path")

    monkeypatch.setattr("gateway.backends.base.check_predictions", broken)
    with gateway(stub, "raw") as c:
        r = c.post("/predict/tf", json={"instances": [ROW]})
    assert r.status_code == 500 and r.json() == {"error": "internal error: RuntimeError"}
    (line,) = [x for x in lines(log) if x["level"] == "error"]
    assert line["status"] == 500 and line["path"] == "/predict/tf"
    assert line["request_id"] == r.headers["x-request-id"]
    assert "RuntimeError: a bug on the fast path" in line["traceback"] and "check_predictions" not in line["event"]
    assert 'File "' in line["traceback"], "a traceback, not only the message"


def test_every_5xx_is_logged_with_its_backend(stub: StubBackend, log: pytest.CaptureFixture[str]) -> None:
    stub.answers[TF_PREDICT] = answer(500, b'{"error": "kaput"}')
    with gateway(stub, "raw") as c:
        assert c.post("/predict/tf", json={"instances": [ROW]}).status_code == 502
        assert c.post("/predict/tf", json={"instances": [[1]]}).status_code == 422
    errors = [x for x in lines(log) if x["level"] in ("warning", "error")]
    assert len(errors) == 1, errors
    assert errors[0]["status"] == 502 and errors[0]["backend"] == "tf" and "kaput" in errors[0]["error"]


@pytest.mark.parametrize("on", [False, True])
def test_the_access_log_switch(stub: StubBackend, log: pytest.CaptureFixture[str], on: bool) -> None:
    with gateway(stub, "raw", access_log=on) as c:
        r = c.post("/predict/tf", json={"instances": [ROW]})
        c.get("/healthz")
    requests = [x for x in lines(log) if x["event"] == "request"]
    if not on:
        assert requests == []
        return
    assert [(x["method"], x["path"], x["status"]) for x in requests] == [
        ("POST", "/predict/tf", 200),
        ("GET", "/healthz", 200),
    ]
    assert requests[0]["request_id"] == r.headers["x-request-id"] and requests[0]["backend"] == "tf"
    assert requests[0]["ms"] >= 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_request_id_goes_to_the_backend_and_back(stub: StubBackend, transport: str) -> None:
    with gateway(stub, transport) as c:
        given = c.post("/compare", json={"instances": [ROW]}, headers={"X-Request-Id": "trace-42"})
        made = c.post("/predict/tf", json={"instances": [ROW]})
        odd = c.post("/predict/tf", json={"instances": [ROW]}, headers={"X-Request-Id": "x" * 200})
        slow_path = c.get("/readyz", headers={"X-Request-Id": "probe-1"})
    assert given.status_code == 200 and given.headers["x-request-id"] == "trace-42"
    posts = [r for r in stub.server.requests if r.method == "POST"]
    assert [r.headers.get("x-request-id") for r in posts[:2]] == ["trace-42", "trace-42"]  # both sides of /compare
    assert len(made.headers["x-request-id"]) == 16 and posts[2].headers["x-request-id"] == made.headers["x-request-id"]
    assert odd.headers["x-request-id"] != "x" * 200 and posts[3].headers["x-request-id"] == odd.headers["x-request-id"]
    assert slow_path.headers["x-request-id"] == "probe-1"


def test_start_up_and_readiness_changes(stub: StubBackend, log: pytest.CaptureFixture[str]) -> None:
    with gateway(stub, "raw") as c:
        for _ in range(3):
            c.get("/readyz")
        stub.answers[("GET", "/models/digits")] = answer(200, b'[{"workers": [{"status": "UNLOADING"}]}]')
        c.get("/readyz")
        c.get("/readyz")
    seen = lines(log)
    (start,) = [x for x in seen if x["event"] == "started"]
    assert start["version"] and start["backends"]["tf"] == stub.url and start["default_model"] == "digits"
    assert start["models"] == {"digits": {"width": 64, "classes": 10}}
    assert start["limits"]["concurrency_per_backend"] == 96 and start["upstream_transport"] == "raw"
    changes = [(x["event"], x["backend"]) for x in seen if x["event"].startswith("backend")]
    assert changes == [("backend ready", "tf"), ("backend ready", "torch"), ("backend not ready", "torch")]
