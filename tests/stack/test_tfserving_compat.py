"""The TF-Serving-compatible server answers TF Serving's REST API (api_rest.md) and gRPC as TF Serving does."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from stack.config import StackConfig
from tests.conftest import start_compat_server, stop_process

CFG = StackConfig.load()
NAME = CFG.model_name


def labelled(tmp: Path) -> tuple[str, ...]:
    """The model with the label `stable` -> 1, the way TF Serving takes labels: in the model config file, and at
    start only with --allow_version_labels_for_unavailable_models (server_core.cc UpdateModelVersionLabelMap).
    The config file wins over start_compat_server's --model_name/--model_base_path, as in TF Serving."""
    path = tmp / "models.config"
    path.write_text(
        f'model_config_list {{ config {{ name: "{NAME}" base_path: "{CFG.tf_version_dir.parent}" '
        'model_platform: "tensorflow" version_labels { key: "stable" value: 1 } } }\n'
    )
    return f"--model_config_file={path}", "--allow_version_labels_for_unavailable_models=true"


@pytest.fixture(scope="module")
def server(tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("compat")
    proc, rest, grpc_port = start_compat_server(tmp, *labelled(tmp))
    try:
        yield f"http://127.0.0.1:{rest}", f"127.0.0.1:{grpc_port}"
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def client(server):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server[0], timeout=10) as c:
        yield c


def post(client: httpx.Client, path: str, body: object | bytes) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=data)


def test_model_status_api(client) -> None:  # type: ignore[no-untyped-def]
    expected = {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert client.get(f"/v1/models/{NAME}").json() == expected
    assert client.get(f"/v1/models/{NAME}/versions/1").json() == expected
    r = client.get(f"/v1/models/{NAME}/versions/7")
    assert r.status_code == 404 and "error" in r.json()


def test_row_format_predict(client, test_rows) -> None:  # type: ignore[no-untyped-def]
    r = post(client, f"/v1/models/{NAME}:predict", {"instances": test_rows[:3]})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    preds = r.json()["predictions"]
    assert np.asarray(preds).shape == (3, 10)
    assert np.allclose(np.sum(preds, axis=1), 1.0, atol=1e-5)


def test_columnar_format_predict_matches_row_format(client, test_rows) -> None:  # type: ignore[no-untyped-def]
    rows = post(client, f"/v1/models/{NAME}:predict", {"instances": test_rows[:3]}).json()["predictions"]
    cols = post(client, f"/v1/models/{NAME}:predict", {"inputs": test_rows[:3]}).json()
    assert list(cols) == ["outputs"]
    assert cols["outputs"] == rows
    named = post(client, f"/v1/models/{NAME}:predict", {"inputs": {"features": test_rows[:3]}}).json()
    assert named["outputs"] == rows
    objects = post(client, f"/v1/models/{NAME}:predict", {"instances": [{"features": r} for r in test_rows[:3]]})
    assert objects.json()["predictions"] == rows


def test_version_and_label_urls(client, test_rows) -> None:  # type: ignore[no-untyped-def]
    body = {"instances": test_rows[:1], "signature_name": "serving_default"}
    latest = post(client, f"/v1/models/{NAME}:predict", body).json()
    assert post(client, f"/v1/models/{NAME}/versions/1:predict", body).json() == latest
    assert post(client, f"/v1/models/{NAME}/labels/stable:predict", body).json() == latest
    r = post(client, f"/v1/models/{NAME}/versions/3:predict", body)
    assert (r.status_code, r.json()) == (404, {"error": f"Servable not found for request: Specific({NAME}, 3)"})
    r = post(client, f"/v1/models/{NAME}/labels/canary:predict", body)
    assert r.status_code == 400 and "canary" in r.json()["error"]


def test_documented_not_found_example(client) -> None:  # type: ignore[no-untyped-def]
    # api_rest.md: POST /v1/models/half:predict -> 404 { "error": "Servable not found for request: Latest(half)" }
    r = post(client, "/v1/models/half:predict", {"instances": [1.0, 5.0]})
    assert r.status_code == 404
    assert r.json() == {"error": "Servable not found for request: Latest(half)"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "JSON Parse error: The document is empty"),
        (b"{bad", "JSON Parse error: "),
        (b"[1, 2]", "Is not object"),
        ({"signature_name": 5, "instances": [[0.0] * 64]}, "'signature_name' key must be a string value."),
        (
            {"instances": [[0.0] * 64], "inputs": [[0.0] * 64]},
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist",
        ),
        ({"instances": {"a": 1}}, "Excepting 'instances' to be an list/array"),
        ({"instances": []}, "No values in 'instances' array"),
        ({"foo": 1}, "Missing 'inputs' or 'instances' key"),
        (
            {"instances": [[0.0] * 64, [0.0] * 63]},
            "Failed to process element: 1 of 'instances' list. "
            "Error: INVALID_ARGUMENT: Expecting tensor size: 64 but got: 63",
        ),
        ({"instances": [["a"] + [0.0] * 63]}, 'JSON Value: "a" Type: String is not of expected type: float'),
        (
            {"instances": [[0.0] * 64], "signature_name": "nope"},
            'Serving signature name: "nope" not found in signature def',
        ),
        ({"inputs": {"other": [[0.0] * 64]}}, "Missing named input: features in 'inputs' object."),
        ({"instances": [[16777217] + [0.0] * 63]}, "without loss of precision"),
        ({"instances": [[0.0] * 3]}, "Matrix size-incompatible"),
    ],
)
def test_errors_have_tf_servings_shape_status_and_text(client, body, fragment) -> None:  # type: ignore[no-untyped-def]
    r = post(client, f"/v1/models/{NAME}:predict", body)
    assert r.status_code == 400
    assert list(r.json()) == ["error"]
    assert fragment in r.json()["error"]


def test_nan_and_infinity_tokens_are_accepted(client) -> None:  # type: ignore[no-untyped-def]
    # api_rest.md "JSON conformance": NaN/Infinity tokens are valid in requests and responses.
    for token in (b"NaN", b"Infinity", b"-Infinity"):
        r = post(client, f"/v1/models/{NAME}:predict", b'{"instances": [[' + token + b", 0.0" * 63 + b"]]}")
        assert r.status_code == 200, r.text
        assert np.asarray(json.loads(r.text)["predictions"]).shape == (1, 10)


def test_metadata_api(client) -> None:  # type: ignore[no-untyped-def]
    meta = client.get(f"/v1/models/{NAME}/metadata").json()
    assert meta["model_spec"] == {"name": NAME, "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["inputs"]["features"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sig["inputs"]["features"]["tensor_shape"]["dim"]] == ["-1", "64"]
    assert "output_0" in sig["outputs"]


def test_named_for_what_it_is(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get(f"/v1/models/{NAME}")
    assert r.headers["server"] == "servecompare-tfserving-compat"
    metrics = client.get("/monitoring/prometheus/metrics").text
    assert "tfserving_compat_requests_total" in metrics
    assert "not TensorFlow Serving" in metrics


def test_grpc_predict_matches_rest(server, client, test_rows) -> None:  # type: ignore[no-untyped-def]
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

    rest = post(client, f"/v1/models/{NAME}:predict", {"instances": test_rows}).json()["predictions"]
    with grpc.insecure_channel(server[1]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = NAME
        request.inputs["features"].CopyFrom(tf.make_tensor_proto(np.asarray(test_rows, dtype=np.float32)))
        response = stub.Predict(request, timeout=10)
        assert response.model_spec.version.value == 1
        grpc_probs = tf.make_ndarray(response.outputs["output_0"])
        assert np.array_equal(grpc_probs, np.asarray(rest, dtype=np.float32))

        meta_req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        meta_req.model_spec.name = NAME
        meta = stub.GetModelMetadata(meta_req, timeout=10)
        sigs = get_model_metadata_pb2.SignatureDefMap()
        meta.metadata["signature_def"].Unpack(sigs)
        assert "features" in sigs.signature_def["serving_default"].inputs

        request.model_spec.name = "half"
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_duplicated_key_is_read_as_tf_serving_reads_it_the_first_wins(client, test_rows) -> None:  # type: ignore[no-untyped-def]
    """RapidJSON's FindMember returns the first member of a name; Python's dict would keep the last."""
    good, bad = json.dumps(test_rows[:1]), json.dumps([["x"] * 64])
    first_good = post(client, f"/v1/models/{NAME}:predict", f'{{"instances": {good}, "instances": {bad}}}'.encode())
    assert first_good.status_code == 200, first_good.text
    assert first_good.json() == post(client, f"/v1/models/{NAME}:predict", {"instances": test_rows[:1]}).json()
    first_bad = post(client, f"/v1/models/{NAME}:predict", f'{{"instances": {bad}, "instances": {good}}}'.encode())
    assert first_bad.status_code == 400 and "is not of expected type: float" in first_bad.json()["error"]
    named = f'{{"inputs": {{"features": {good}}}, "signature_name": "serving_default", "signature_name": "nope"}}'
    assert post(client, f"/v1/models/{NAME}:predict", named.encode()).status_code == 200
