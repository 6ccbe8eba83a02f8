"""The committed artifacts: accurate, equivalent, and in step with their sources."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from export import keras_model, serving_config
from stack.config import ROOT, StackConfig

CFG = StackConfig.load()


@pytest.fixture(scope="module")
def tf_probs(digits):  # type: ignore[no-untyped-def]
    _, serve = keras_model.load_serving_fn(CFG.tf_version_dir)
    return serve(**{keras_model.INPUT_NAME: digits.x_test})[keras_model.OUTPUT_NAME].numpy()


@pytest.fixture(scope="module")
def torch_probs(digits, tmp_path_factory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("mar")
    with zipfile.ZipFile(CFG.mar_path) as mar:
        mar.extract("model.pt", out)
    model = torch.jit.load(str(out / "model.pt"))
    with torch.no_grad():
        return model(torch.from_numpy(digits.x_test)).numpy()


def test_savedmodel_layout_and_signature() -> None:
    version_dir = CFG.tf_version_dir
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "variables" / "variables.index").is_file()
    assert (version_dir / keras_model.WARMUP_FILE).stat().st_size > 0
    _, serve = keras_model.load_serving_fn(version_dir)
    ((name, spec),) = serve.structured_input_signature[1].items()
    assert name == "features"
    assert spec.dtype.name == "float32" and spec.shape.as_list() == [None, 64]
    assert list(serve.structured_outputs) == ["output_0"]


def test_warmup_records_are_prediction_logs() -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    records = list(tf.data.TFRecordDataset(str(CFG.tf_version_dir / keras_model.WARMUP_FILE)))
    assert records
    for raw in records:
        log = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        assert log.predict_log.request.model_spec.name == CFG.model_name
        assert tf.make_ndarray(log.predict_log.request.inputs["features"]).shape[1] == 64


def test_both_models_reach_95_percent(digits, tf_probs, torch_probs) -> None:  # type: ignore[no-untyped-def]
    tf_acc = (tf_probs.argmax(1) == digits.y_test).mean()
    torch_acc = (torch_probs.argmax(1) == digits.y_test).mean()
    print(f"accuracy: SavedModel {tf_acc:.4f}, TorchScript {torch_acc:.4f}")
    assert tf_acc >= 0.95
    assert torch_acc >= 0.95


def test_models_agree_on_the_whole_test_split(tf_probs, torch_probs) -> None:  # type: ignore[no-untyped-def]
    assert tf_probs.shape == torch_probs.shape == (450, 10)
    assert np.abs(tf_probs - torch_probs).max() < 1e-5
    assert (tf_probs.argmax(1) == torch_probs.argmax(1)).all()


def test_mar_handler_is_the_source_handler() -> None:
    with zipfile.ZipFile(CFG.mar_path) as mar:
        packed = mar.read("handler.py")
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
        signature = json.loads(mar.read("signature.json"))
    assert packed == (ROOT / "export" / "handler.py").read_bytes(), "models/torch/digits.mar is stale: python -m export"
    assert manifest["model"]["modelName"] == CFG.model_name
    assert manifest["model"]["modelVersion"] == str(CFG.model_version)
    assert signature == {"n_features": CFG.n_features, "n_classes": CFG.n_classes}


def test_server_configs_agree_with_env() -> None:
    """The committed server configs are what `python -m export` writes from .env today."""
    assert serving_config.TS_CONFIG.read_text() == serving_config.ts_config_properties(CFG)
    assert serving_config.TF_MODELS_CONFIG.read_text() == serving_config.tf_models_config(CFG)
    assert serving_config.TF_BATCHING_CONFIG.read_text() == serving_config.tf_batching_config(
        CFG.tf_max_batch_size, CFG.tf_batch_timeout_micros
    )


def test_load_test_reference_matches_the_models(digits, tf_probs, torch_probs) -> None:  # type: ignore[no-untyped-def]
    ref = json.loads((ROOT / "models" / "reference" / "digits_test.json").read_text())
    assert np.array_equal(np.asarray(ref["rows"], dtype=np.float32), digits.x_test)
    assert ref["labels"] == digits.y_test.tolist()
    assert ref["expected"] == tf_probs.argmax(1).tolist() == torch_probs.argmax(1).tolist()
