"""The committed artifacts of every builtin model in the registry: accurate, equivalent across the two frameworks,
small enough to commit, and in step with their sources."""

from __future__ import annotations

import itertools
import json
import zipfile

import numpy as np
import pytest
import torch

from export import keras_model, serving_config
from stack.config import ROOT, StackConfig
from stack.registry import ModelSpec, load_registry

CFG = StackConfig.load()
REGISTRY = load_registry()
BUILTIN = [m for m in REGISTRY if m.builtin]


@pytest.fixture(scope="module", params=BUILTIN, ids=[m.name for m in BUILTIN])
def model(request) -> ModelSpec:  # type: ignore[no-untyped-def]
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def tf_probs(digits, model):  # type: ignore[no-untyped-def]
    _, serve = keras_model.load_serving_fn(model.tf_version_dir)
    return serve(**{keras_model.INPUT_NAME: digits.x_test})[keras_model.OUTPUT_NAME].numpy()


@pytest.fixture(scope="module")
def torch_probs(digits, model, tmp_path_factory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("mar")
    with zipfile.ZipFile(model.mar) as mar:
        mar.extract("model.pt", out)
    scripted = torch.jit.load(str(out / "model.pt"))
    with torch.no_grad():
        return scripted(torch.from_numpy(digits.x_test)).numpy()


def test_savedmodel_layout_and_signature(model: ModelSpec) -> None:
    version_dir = model.tf_version_dir
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "variables" / "variables.index").is_file()
    assert (version_dir / keras_model.WARMUP_FILE).stat().st_size > 0
    _, serve = keras_model.load_serving_fn(version_dir)
    ((name, spec),) = serve.structured_input_signature[1].items()
    assert name == model.input == keras_model.INPUT_NAME
    assert spec.dtype.name == "float32" and spec.shape.as_list() == [None, model.width]
    assert list(serve.structured_outputs) == ["output_0"]


def test_warmup_records_are_prediction_logs(model: ModelSpec) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    records = list(tf.data.TFRecordDataset(str(model.tf_version_dir / keras_model.WARMUP_FILE)))
    assert records
    for raw in records:
        log = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        assert log.predict_log.request.model_spec.name == model.name
        assert tf.make_ndarray(log.predict_log.request.inputs["features"]).shape[1] == model.width


def test_both_models_reach_95_percent(digits, tf_probs, torch_probs) -> None:  # type: ignore[no-untyped-def]
    tf_acc = (tf_probs.argmax(1) == digits.y_test).mean()
    torch_acc = (torch_probs.argmax(1) == digits.y_test).mean()
    print(f"accuracy: SavedModel {tf_acc:.4f}, TorchScript {torch_acc:.4f}")
    assert tf_acc >= 0.95
    assert torch_acc >= 0.95


def test_models_agree_on_the_whole_test_split(model, tf_probs, torch_probs) -> None:  # type: ignore[no-untyped-def]
    assert tf_probs.shape == torch_probs.shape == (450, model.classes)
    assert np.abs(tf_probs - torch_probs).max() < 1e-5
    assert (tf_probs.argmax(1) == torch_probs.argmax(1)).all()


def test_the_savedmodel_has_the_layers_the_registry_names(model: ModelSpec) -> None:
    import tensorflow as tf

    shapes = sorted(tuple(s) for _, s in tf.train.list_variables(str(model.tf_version_dir / "variables" / "variables")))
    widths = [model.width, *(model.hidden or ()), model.classes]
    kernels = sorted(itertools.pairwise(widths))
    assert sorted(s for s in shapes if len(s) == 2) == kernels  # each weight stored once


def test_committed_artifacts_stay_small() -> None:
    """Both sides of every builtin model together under 40 MB (the wide model is most of it)."""
    total = 0
    for m in BUILTIN:
        total += m.mar.stat().st_size + sum(f.stat().st_size for f in m.tf_base.rglob("*") if f.is_file())
    assert total < 40 * 2**20, f"{total / 2**20:.1f} MB"


def test_mar_handler_is_the_source_handler(model: ModelSpec) -> None:
    with zipfile.ZipFile(model.mar) as mar:
        packed = mar.read("handler.py")
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
        signature = json.loads(mar.read("signature.json"))
    assert packed == (ROOT / "export" / "handler.py").read_bytes(), f"{model.mar} is stale: python -m export"
    assert manifest["model"]["modelName"] == model.name
    assert manifest["model"]["modelVersion"] == serving_config.ts_model_version(model.version)
    assert signature == {"n_features": model.width, "n_classes": model.classes}


def test_server_configs_agree_with_env_and_the_registry() -> None:
    """The committed server configs are what `python -m export` writes from .env and models.toml today."""
    assert serving_config.TS_CONFIG.read_text() == serving_config.ts_config_properties(CFG, REGISTRY)
    assert serving_config.TF_MODELS_CONFIG.read_text() == serving_config.tf_models_config(REGISTRY)
    assert serving_config.TF_BATCHING_CONFIG.read_text() == serving_config.tf_batching_config(
        CFG.tf_max_batch_size, CFG.tf_batch_timeout_micros
    )


def test_load_test_reference_matches_the_models(digits, model, tf_probs, torch_probs) -> None:  # type: ignore[no-untyped-def]
    ref = json.loads(model.reference.read_text())
    assert np.array_equal(np.asarray(ref["rows"], dtype=np.float32), digits.x_test)
    assert ref["labels"] == digits.y_test.tolist()
    assert ref["expected"] == tf_probs.argmax(1).tolist() == torch_probs.argmax(1).tolist()
