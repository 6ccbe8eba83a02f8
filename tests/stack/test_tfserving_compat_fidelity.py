"""Where the compatible server once differed from TF Serving: batching limits over REST and gRPC, error texts."""

from __future__ import annotations

import json

import grpc
import httpx
import numpy as np
import pytest

from stack.config import StackConfig
from tests.conftest import start_compat_server, stop_process
from tests.stack.test_tfserving_compat import labelled

pytestmark = pytest.mark.integration
NAME = StackConfig.load().model_name


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("compat-batching")
    params = tmp / "batching.config"
    params.write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 1000 }\n")
    proc, rest, grpc_port = start_compat_server(
        tmp, "--enable_batching=true", f"--batching_parameters_file={params}", *labelled(tmp)
    )
    try:
        yield f"http://127.0.0.1:{rest}", f"127.0.0.1:{grpc_port}"
    finally:
        stop_process(proc)


def _request(rows: int, *output_filter: str):  # type: ignore[no-untyped-def]
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    request.inputs["features"].CopyFrom(tf.make_tensor_proto(np.zeros((rows, 64), dtype=np.float32)))
    request.output_filter.extend(output_filter)
    return request


def _grpc_predict(target: str, request):  # type: ignore[no-untyped-def]
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)


def test_a_request_larger_than_the_batch_is_refused_over_rest_and_grpc(batching_server) -> None:  # type: ignore[no-untyped-def]
    rest, target = batching_server
    body = json.dumps({"instances": [[0.0] * 64] * 20})
    r = httpx.post(f"{rest}/v1/models/{NAME}:predict", content=body, timeout=10)
    assert (r.status_code, r.json()) == (400, {"error": "Task size 20 is larger than maximum input batch size 16"})
    with pytest.raises(grpc.RpcError) as err:  # gRPC goes through the same batcher
        _grpc_predict(target, _request(20))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "Task size 20" in err.value.details()
    assert _grpc_predict(target, _request(16)).outputs["output_0"].tensor_shape.dim[0].size == 16


def test_grpc_error_texts(batching_server) -> None:  # type: ignore[no-untyped-def]
    _, target = batching_server
    with pytest.raises(grpc.RpcError) as err:
        _grpc_predict(target, _request(1, "output_0", "output_0"))
    assert (err.value.code(), err.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "duplicate output tensor alias: output_0",
    )
    broken = _request(1)
    broken.inputs["features"].tensor_content = b"\x00\x01\x02"  # 3 bytes for 64 float32s
    with pytest.raises(grpc.RpcError) as err:
        _grpc_predict(target, broken)
    assert (err.value.code(), err.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "tensor parsing error: features",
    )
    other = _request(1)
    other.model_spec.name = "half"
    other.model_spec.version.value = 3
    with pytest.raises(grpc.RpcError) as err:
        _grpc_predict(target, other)
    assert err.value.details() == "Servable not found for request: Specific(half, 3)"


def test_rest_status_by_label_and_unknown_model_with_version(batching_server) -> None:  # type: ignore[no-untyped-def]
    rest, _ = batching_server
    by_label = httpx.get(f"{rest}/v1/models/{NAME}/labels/stable", timeout=10)
    assert by_label.status_code == 200 and by_label.json()["model_version_status"][0]["version"] == "1"
    r = httpx.post(f"{rest}/v1/models/half/versions/3:predict", content=b'{"instances": [[0]]}', timeout=10)
    assert (r.status_code, r.json()) == (404, {"error": "Servable not found for request: Specific(half, 3)"})
