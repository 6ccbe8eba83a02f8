"""The Keras side: the same MLP, training, SavedModel export in TF Serving's layout, warm-up records."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np

from export.data import DigitsSplit
from export.device import tf_device
from export.tensorboard import ScalarLog

INPUT_NAME = "features"  # the signature's input; unnamed, Keras 3 calls it `keras_tensor`
OUTPUT_NAME = "output_0"  # Keras 3's name for the single output of the serving signature
SIGNATURE = "serving_default"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def build_mlp(n_features: int = 64, n_classes: int = 10, hidden: tuple[int, ...] = (64, 64)) -> keras.Model:
    """The PyTorch model's twin (export/torch_model.py build_mlp), layer for layer."""
    inputs = keras.Input(shape=(n_features,), name=INPUT_NAME, dtype="float32")
    x = inputs
    for i, h in enumerate(hidden, start=1):
        x = keras.layers.Dense(h, activation="relu", name=f"dense_{i}")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="digits_mlp")


def train(
    split: DigitsSplit,
    epochs: int = 60,
    seed: int = 0,
    log_dir: Path | None = None,
    verbose: bool = True,
    hidden: tuple[int, ...] = (64, 64),
    lr: float = 1e-2,
) -> keras.Model:
    """On export/device.py's device; TensorBoard scalars named like the PyTorch side's (export/tensorboard.py)."""
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    callbacks: list[keras.callbacks.Callback] = [_Scalars(log_dir)] if log_dir is not None else []
    with tf.device(tf_device()):
        model = build_mlp(split.x_train.shape[1], int(split.y_train.max()) + 1, hidden)
        model.compile(
            optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        model.fit(
            split.x_train,
            split.y_train,
            validation_data=(split.x_test, split.y_test),
            epochs=epochs,
            batch_size=32,
            verbose=2 if verbose else 0,
            callbacks=callbacks,
        )
    return model


class _Scalars(keras.callbacks.Callback):
    """`loss` (training) and `accuracy` (test split) per epoch, the PyTorch side's names."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__()
        self.log = ScalarLog(log_dir, "tensorflow")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:  # type: ignore[type-arg]
        logs = logs or {}
        self.log.log(epoch, float(logs["loss"]), float(logs["val_accuracy"]))

    def on_train_end(self, logs: dict | None = None) -> None:  # type: ignore[type-arg]
        self.log.close()


def log_transferred(model: keras.Model, split: DigitsSplit, log_dir: Path, step: int) -> None:
    """transfer mode: Keras does not train; its run gets the transferred model's loss and accuracy at the last
    epoch, so both frameworks have a run to overlay."""
    probs = predict(model, split.x_train)
    loss = float(-np.log(np.clip(probs[np.arange(len(probs)), split.y_train], 1e-12, None)).mean())
    acc = float((predict(model, split.x_test).argmax(1) == split.y_test).mean())
    log = ScalarLog(log_dir, "tensorflow")
    log.log(step, loss, acc)
    log.close()


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model(np.asarray(x, dtype=np.float32), training=False))


def export_savedmodel(model: keras.Model, version_dir: Path, warmup_rows: np.ndarray, model_name: str) -> Path:
    """Write `<base>/<name>/<version>/` atomically: TF Serving must never see a half-written version."""
    version_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=version_dir.parent))
    try:
        target = staging / "model"
        _save_serving_module(model, target)
        write_warmup_requests(target / WARMUP_FILE, warmup_rows, model_name)
        if version_dir.exists():
            shutil.rmtree(version_dir)
        target.rename(version_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return version_dir


def _save_serving_module(model: keras.Model, target: Path) -> None:
    """The model's serving function as a SavedModel: the Keras model's Dense layers as TF ops over one copy of its
    weights (`keras.Model.export` stores every weight twice, `variables/` and `_all_variables/`: 34 MB for the wide
    model's 17 MB). Signature `serving_default`: input `features` float32 [-1, width], output `output_0`."""
    import tensorflow as tf

    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    width = int(model.inputs[0].shape[-1])

    class Serving(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="digits_mlp")
            self.kernels = [tf.Variable(np.asarray(d.kernel), trainable=False, name=f"{d.name}_kernel") for d in dense]
            self.biases = [tf.Variable(np.asarray(d.bias), trainable=False, name=f"{d.name}_bias") for d in dense]

        @tf.function(input_signature=[tf.TensorSpec([None, width], tf.float32, name=INPUT_NAME)])
        def serve(self, features: tf.Tensor) -> dict[str, tf.Tensor]:
            h = features
            for i, (k, b) in enumerate(zip(self.kernels, self.biases, strict=True)):
                h = tf.nn.bias_add(tf.matmul(h, k), b)
                h = tf.nn.relu(h) if i < len(self.kernels) - 1 else tf.nn.softmax(h)
            return {OUTPUT_NAME: h}

    module = Serving()
    tf.saved_model.save(module, str(target), signatures={SIGNATURE: module.serve})


def write_warmup_requests(path: Path, rows: np.ndarray, model_name: str) -> None:
    """TF Serving replays these PredictionLog records at load time (SavedModel warm-up)."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for batch in (rows[:1], rows[:8]):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SIGNATURE)
            )
            request.inputs[INPUT_NAME].CopyFrom(tf.make_tensor_proto(batch.astype(np.float32)))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def load_serving_fn(version_dir: Path):  # type: ignore[no-untyped-def]
    """The exported signature, loaded back with the TensorFlow runtime (no Keras involved)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(version_dir))
    return loaded, loaded.signatures[SIGNATURE]
