"""Unit tests of every gateway route and error path; the upstreams are faked with respx."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from gateway.main import create_app
from gateway.settings import Settings

TF = "http://tf.test"
TS = "http://ts.test"
TSM = "http://tsm.test"
ROW = [0.25] * 64
PROBS = [0.01] * 9 + [0.91]
TF_PREDICT = f"{TF}/v1/models/digits:predict"
TS_PREDICT = f"{TS}/predictions/digits"


def predictions_sent(mock: respx.MockRouter) -> list[httpx.Request]:
    """Prediction calls only (the gateway reads model versions in the background, at start-up too)."""
    return [c.request for c in mock.calls if c.request.method == "POST"]


def make_client(**overrides: object) -> TestClient:
    # respx fakes httpx's own transport (httpcore); the aiohttp transport is exercised against real servers.
    settings = Settings(
        tf_url=TF,
        torch_url=TS,
        torch_management_url=TSM,
        model_name="digits",
        upstream_transport="httpcore",
        **{"models": "", **overrides},  # the default model only: the fakes answer for it (multi-model: below)
    )
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def client():  # type: ignore[no-untyped-def]
    with make_client() as c:
        yield c


@pytest.fixture
def upstreams():  # type: ignore[no-untyped-def]
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{TF}/v1/models/digits").respond(
            json={
                "model_version_status": [
                    {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
                ]
            }
        )
        mock.get(f"{TSM}/models/digits").respond(
            json=[{"modelName": "digits", "modelVersion": "1.0", "workers": [{"id": "9000", "status": "READY"}]}]
        )
        mock.post(TF_PREDICT).respond(json={"predictions": [PROBS]})
        mock.post(TS_PREDICT).respond(json={"predictions": [PROBS]})
        yield mock


def test_predict_tf(upstreams, client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/predict/tf", json={"instances": [ROW]})
    assert r.status_code == 200
    body = r.json()
    assert body["backend"] == "tf" and body["model_name"] == "digits" and body["model_version"] == "1"
    assert body["predictions"] == [PROBS] and body["labels"] == [9] and body["upstream_ms"] >= 0
    assert json.loads(upstreams.calls.last.request.content) == {"instances": [ROW]}


def test_predict_torch(upstreams, client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/predict/torch", json={"instances": [ROW]})
    assert r.status_code == 200 and r.json()["backend"] == "torch" and r.json()["model_version"] == "1"


def test_predict_default_backend_and_header_override(upstreams) -> None:  # type: ignore[no-untyped-def]
    with make_client(default_backend="torch") as c:
        assert c.post("/predict", json={"instances": [ROW]}).json()["backend"] == "torch"
        assert c.post("/predict", json={"instances": [ROW]}, headers={"X-Backend": "tf"}).json()["backend"] == "tf"
        r = c.post("/predict", json={"instances": [ROW]}, headers={"X-Backend": "onnx"})
        assert r.status_code == 400 and "X-Backend must be one of tf, torch" in r.json()["error"]


def test_weighted_split(upstreams) -> None:  # type: ignore[no-untyped-def]
    with make_client(tf_weight=1, torch_weight=3) as c:
        seen = [c.post("/predict", json={"instances": [ROW]}).json()["backend"] for _ in range(200)]
    share = seen.count("torch") / len(seen)
    assert 0.6 < share < 0.9, share


def test_failover_only_when_enabled(upstreams) -> None:  # type: ignore[no-untyped-def]
    upstreams.post(TF_PREDICT).mock(side_effect=httpx.ConnectError("refused"))
    with make_client() as c:
        assert c.post("/predict", json={"instances": [ROW]}).status_code == 503
    with make_client(failover=True) as c:
        r = c.post("/predict", json={"instances": [ROW]})
        assert r.status_code == 200 and r.json()["backend"] == "torch"
        # An explicit choice is honoured, not failed over.
        assert c.post("/predict", json={"instances": [ROW]}, headers={"X-Backend": "tf"}).status_code == 503


def test_compare(client, upstreams) -> None:  # type: ignore[no-untyped-def]
    upstreams.post(TS_PREDICT).respond(json={"predictions": [[p + 1e-6 for p in PROBS]]})
    r = client.post("/compare", json={"instances": [ROW]})
    assert r.status_code == 200
    body = r.json()
    assert body["tf"]["backend"] == "tf" and body["torch"]["backend"] == "torch"
    assert body["labels_agree"] is True
    assert body["max_abs_diff"] == pytest.approx(1e-6, rel=1e-3)


BAD_BODIES = [
    ({"instances": [[0.1] * 63]}, 422, "at least 64"),
    ({"instances": [[0.1] * 64, [0.1] * 65]}, 422, "instances.1"),
    ({"instances": [["x"] * 64]}, 422, "valid number"),
    ({"instances": [[True] * 64]}, 422, "valid number"),
    ({"instances": []}, 422, "at least 1 item"),
    ({"instances": [ROW], "extra": 1}, 422, "extra"),
    ({}, 422, "instances: Field required"),
    ({"instances": [[1e30] * 64]}, 422, "less than or equal to 1000000"),
    ([ROW], 422, "body: Input should be an object"),
]


@pytest.mark.parametrize(("body", "status", "fragment"), BAD_BODIES)
@pytest.mark.parametrize("path", ["/predict", "/predict/tf", "/predict/torch", "/compare"])
def test_bad_input_is_4xx_with_a_message(client, upstreams, path, body, status, fragment) -> None:  # type: ignore[no-untyped-def]
    r = client.post(path, json=body)
    assert r.status_code == status
    assert list(r.json()) == ["error"] and fragment in r.json()["error"]
    assert not predictions_sent(upstreams), "bad input never reaches a backend"


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_numbers_are_refused(client, upstreams, token) -> None:  # type: ignore[no-untyped-def]
    body = b'{"instances": [[' + token + b"," + b",".join([b"0.1"] * 63) + b"]]}"
    r = client.post("/predict/tf", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "finite" in r.json()["error"]


def test_invalid_json_wrong_content_type_and_sizes(upstreams) -> None:  # type: ignore[no-untyped-def]
    with make_client(max_batch=2, max_body_bytes=20_000) as c:
        r = c.post("/predict/tf", content=b"{nope", headers={"content-type": "application/json"})
        assert r.status_code == 400 and "invalid JSON" in r.json()["error"]
        r = c.post("/predict/tf", content=json.dumps({"instances": [ROW]}), headers={"content-type": "text/plain"})
        assert r.status_code == 415 and "application/json" in r.json()["error"]
        r = c.post("/predict/tf", json={"instances": [ROW] * 3})
        assert r.status_code == 413 and "exceeds the limit of 2" in r.json()["error"]
        r = c.post("/predict/tf", json={"instances": [ROW] * 200})
        assert r.status_code == 413 and "20000" in r.json()["error"]

        def chunks():  # type: ignore[no-untyped-def]
            yield b'{"instances": ['
            for _ in range(300):
                yield json.dumps(ROW).encode() + b","
            yield b"[]]}"

        r = c.post("/predict/tf", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
    assert not predictions_sent(upstreams)


@pytest.mark.parametrize(
    ("effect", "status", "fragment"),
    [
        (httpx.ConnectError("refused"), 503, "backend 'tf' is unreachable"),
        (httpx.ReadTimeout("slow"), 504, "backend 'tf' timed out"),
        (httpx.ConnectTimeout("slow"), 504, "timed out (connect)"),
        (httpx.Response(500, json={"error": "kaput"}), 502, "answered 500: kaput"),
        (httpx.Response(400, json={"error": "Matrix size-incompatible"}), 502, "Matrix size-incompatible"),
        (httpx.Response(200, text="not json"), 502, "invalid JSON"),
        (httpx.Response(200, json={"predictions": [PROBS], "x": 1}), 200, ""),
        (httpx.Response(200, json={"predictions": [[0.1]]}), 502, "row 0 has 1 values, expected 10"),
        (httpx.Response(200, json={"predictions": [PROBS, PROBS]}), 502, "malformed predictions"),
        (httpx.Response(200, json={"predictions": [["a"]]}), 502, "malformed predictions"),
        (httpx.Response(200, json={"nothing": 1}), 502, "malformed predictions"),
        (httpx.Response(200, content=b'{"predictions": [[NaN, 0.5]]}'), 502, "malformed predictions"),
    ],
)
def test_upstream_failures_map_to_gateway_errors(client, upstreams, effect, status, fragment) -> None:  # type: ignore[no-untyped-def]
    route = upstreams.post(TF_PREDICT)
    if isinstance(effect, httpx.Response):
        route.mock(return_value=effect)
    else:
        route.mock(side_effect=effect)
    r = client.post("/predict/tf", json={"instances": [ROW]})
    assert r.status_code == status
    if status != 200:
        assert fragment in r.json()["error"] and r.json()["backend"] == "tf"
    # The other backend is unaffected.
    assert client.post("/predict/torch", json={"instances": [ROW]}).status_code == 200


def test_torchserve_503_is_unavailable(client, upstreams) -> None:  # type: ignore[no-untyped-def]
    upstreams.post(TS_PREDICT).respond(503, json={"code": 503, "message": "No worker is available"})
    r = client.post("/predict/torch", json={"instances": [ROW]})
    assert r.status_code == 503 and "No worker is available" in r.json()["error"]


def test_health_and_readiness(client, upstreams) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz").json()["status"] == "alive"
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["backends"] == {"tf": "AVAILABLE", "torch": "READY"}
    upstreams.get(f"{TSM}/models/digits").respond(json=[{"workers": [{"status": "UNLOADING"}]}])
    r = client.get("/readyz")
    assert r.status_code == 503 and "torch" in r.json()["error"]
    upstreams.get(f"{TF}/v1/models/digits").mock(side_effect=httpx.ConnectError("down"))
    r = client.get("/readyz")
    assert r.status_code == 503 and "tf:" in r.json()["error"]


def test_liveness_makes_no_backend_call(client, upstreams) -> None:  # type: ignore[no-untyped-def]
    client.get("/healthz")
    assert not predictions_sent(upstreams)


def test_metrics(client, upstreams) -> None:  # type: ignore[no-untyped-def]
    client.post("/predict/tf", json={"instances": [ROW]})
    client.post("/predict/tf", json={"instances": [[1]]})
    text = client.get("/metrics").text
    assert 'gateway_requests_total{backend="tf",route="/predict/tf",status="200"} 1.0' in text
    assert 'gateway_requests_total{backend="none",route="/predict/tf",status="422"} 1.0' in text
    assert 'gateway_upstream_duration_seconds_count{backend="tf",outcome="ok"} 1.0' in text
    assert "gateway_request_duration_seconds_bucket" in text


def test_openapi_has_paste_ready_examples(client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/openapi.json").json()
    for path in ("/predict", "/predict/{backend}", "/compare", "/healthz", "/readyz", "/metrics"):
        assert path in spec["paths"]
    example = spec["components"]["schemas"]["PredictRequest"]["examples"][0]
    assert len(example["instances"][0]) == 64
    assert client.get("/docs").status_code == 200


def test_bearer_token_for_torchserve(upstreams) -> None:  # type: ignore[no-untyped-def]
    with make_client(torch_token="s3cret") as c:
        c.post("/predict/torch", json={"instances": [ROW]})
    sent = [call.request for call in upstreams.calls if call.request.url.path.startswith("/predictions")]
    assert sent and sent[0].headers["authorization"] == "Bearer s3cret"


def test_ping_readiness_mode_for_clusters(upstreams) -> None:  # type: ignore[no-untyped-def]
    upstreams.get(f"{TS}/ping").respond(json={"status": "Healthy"})
    upstreams.get(f"{TSM}/models/digits").mock(side_effect=httpx.ConnectError("closed by NetworkPolicy"))
    with make_client(torch_readiness="ping") as c:
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json()["backends"]["torch"] == "ping: Healthy"
        upstreams.get(f"{TS}/ping").respond(500, json={"status": "Unhealthy"})
        assert c.get("/readyz").status_code == 503
