"""The compatible server on the TensorFlow of the pinned TF Serving image (2.19, stack/images/
tfserving-compat.requirements.txt) serves every registered model and answers as the references say, over REST and
gRPC. Needs an interpreter with that requirements file installed (+ tensorflow-serving-api 2.19 --no-deps):
SERVECOMPARE_TF219_PYTHON=/path/to/venv/bin/python."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from stack.config import ROOT
from stack.launcher import free_port
from stack.registry import ModelSpec, load_registry
from tests.conftest import stop_process

PYTHON = os.environ.get("SERVECOMPARE_TF219_PYTHON", "")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not PYTHON,
        reason="SERVECOMPARE_TF219_PYTHON (an interpreter with stack/images/tfserving-compat.requirements.txt "
        "and tensorflow-serving-api 2.19 installed) is not set",
    ),
]
MODELS = load_registry()


def _server_cmd(*args: str) -> list[str]:
    return [PYTHON, "-m", "stack.tfserving_compat", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    from export import serving_config

    tmp = tmp_path_factory.mktemp("tf219")
    config = tmp / "models.config"
    config.write_text(serving_config.tf_models_config(MODELS, base_path=None))  # absolute paths, as natively
    rest, grpc_port = free_port(), free_port()
    log = tmp / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            _server_cmd(
                f"--port={grpc_port}",
                f"--rest_api_port={rest}",
                f"--model_config_file={config}",
                f"--monitoring_config_file={serving_config.TF_MONITORING_CONFIG}",
            ),
            cwd=ROOT,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the server on TF 2.19 did not come up: " + log.read_text()[-3000:]
            try:
                codes = [
                    httpx.get(f"http://127.0.0.1:{rest}/v1/models/{m.name}", timeout=1).status_code for m in MODELS
                ]
                if codes == [200] * len(MODELS):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        yield f"http://127.0.0.1:{rest}", f"127.0.0.1:{grpc_port}"
    finally:
        stop_process(proc)


def test_the_interpreter_runs_tensorflow_219() -> None:
    done = subprocess.run(_server_cmd("--version"), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "TensorFlow Library: 2.19." in done.stdout


@pytest.mark.parametrize("spec", MODELS, ids=lambda m: m.name)
def test_every_model_answers_as_its_reference_over_rest_and_grpc(server: tuple[str, str], spec: ModelSpec) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    ref = json.loads(Path(spec.reference).read_text())
    rows = ref["rows"]
    r = httpx.post(f"{server[0]}/v1/models/{spec.name}:predict", json={"instances": rows}, timeout=30)
    assert r.status_code == 200, r.text
    rest = np.asarray(r.json()["predictions"], dtype=np.float32)
    assert rest.shape == (len(rows), spec.classes)
    assert np.argmax(rest, axis=1).tolist() == ref["expected"]

    request = predict_pb2.PredictRequest()
    request.model_spec.name = spec.name
    request.inputs["features"].CopyFrom(tf.make_tensor_proto(np.asarray(rows, dtype=np.float32)))
    with grpc.insecure_channel(server[1]) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    (output,) = response.outputs.values()
    by_grpc = tf.make_ndarray(output)
    assert np.argmax(by_grpc, axis=1).tolist() == ref["expected"]
    np.testing.assert_allclose(by_grpc, rest, rtol=1e-6, atol=1e-7)  # REST's JSON floats round-trip float32
