"""Load SavedModel versions from a TF Serving model base path and run their signatures on the TF runtime."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from stack.tfserving_compat.errors import ServingError, invalid, not_found

log = logging.getLogger(__name__)
DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"


@dataclass
class Version:
    number: int
    path: Path
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]
    loaded: Any
    functions: dict[str, Any] = field(default_factory=dict)

    def function(self, signature_name: str) -> Any:
        name = signature_name or DEFAULT_SIGNATURE
        if name not in self.signature_defs or name.startswith("__"):
            raise ServingError("FAILED_PRECONDITION", f'Serving signature name: "{name}" not found in signature def')
        if name not in self.functions:
            self.functions[name] = self.loaded.signatures[name]
        return self.functions[name]

    def input_dtypes(self, signature_name: str) -> dict[str, str]:
        self.function(signature_name)
        sig = self.signature_defs[signature_name or DEFAULT_SIGNATURE]
        return {k: _dt_name(v.dtype) for k, v in sig.inputs.items()}


def _dt_name(enum_value: int) -> str:
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(enum_value)


def _read_signature_defs(path: Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    meta = next(m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags)
    return {k: v for k, v in meta.signature_def.items() if not k.startswith("__")}


@dataclass
class Servable:
    """All numeric versions under `base_path`, like TF Serving's default "latest" version policy serves one."""

    name: str
    base_path: Path
    labels: dict[str, int] = field(default_factory=dict)
    warm_up: bool = True
    versions: dict[int, Version] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self) -> None:
        numbers = sorted(int(p.name) for p in self.base_path.iterdir() if p.name.isdigit() and p.is_dir())
        if not numbers:
            raise RuntimeError(f"no numeric version directories under {self.base_path}")
        latest = numbers[-1]  # TF Serving's default policy: serve the latest version only
        path = self.base_path / str(latest)
        log.info("loading %s version %d from %s", self.name, latest, path)
        version = Version(latest, path, _read_signature_defs(path), tf.saved_model.load(str(path)))
        if self.warm_up:
            self._warm_up(version)
        self.versions = {latest: version}

    def _warm_up(self, version: Version) -> None:
        """Replay assets.extra/tf_serving_warmup_requests, as TF Serving does when it loads a version."""
        from tensorflow_serving.apis import prediction_log_pb2

        warmup = version.path / "assets.extra" / "tf_serving_warmup_requests"
        if not warmup.exists():
            return
        count = 0
        for record in tf.data.TFRecordDataset(str(warmup)):
            entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            request = entry.predict_log.request
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            self.run(version, request.model_spec.signature_name, inputs)
            count += 1
        log.info("warm-up: replayed %d requests from %s", count, warmup)

    def resolve(self, version: int | None = None, label: str | None = None) -> Version:
        if label is not None:
            if label not in self.labels:
                raise invalid(f"Unrecognized servable version label: {label}")
            version = self.labels[label]
        if version is None:
            if not self.versions:
                raise not_found(f"Servable not found for request: Latest({self.name})")
            return self.versions[max(self.versions)]
        if version not in self.versions:
            raise not_found(f"Servable not found for request: Specific({self.name}, {version})")
        return self.versions[version]

    def run(self, version: Version, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        fn = version.function(signature_name)
        expected = set(version.signature_defs[signature_name or DEFAULT_SIGNATURE].inputs)
        if set(inputs) != expected:
            missing = sorted(expected - set(inputs))
            extra = sorted(set(inputs) - expected)
            raise invalid(
                f"input size does not match signature: {len(inputs)}!={len(expected)} len({{"
                f"{','.join(sorted(inputs))}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}."
            )
        try:
            result = fn(**{k: tf.convert_to_tensor(v) for k, v in inputs.items()})
        except tf.errors.OpError as exc:
            # Drop the eager runtime's "Graph execution error ... <stack traces unavailable>" preamble.
            message = exc.message.split("<stack traces unavailable>\n")[-1].strip()
            raise ServingError(_op_error_code(exc), message) from exc
        except (TypeError, ValueError) as exc:
            # The signature's TensorSpec refused the tensor (wrong rank, width or dtype).
            raise invalid(str(exc).strip().splitlines()[0]) from exc
        return {k: v.numpy() for k, v in result.items()}

    def status(self, version: int | None = None) -> list[dict[str, Any]]:
        if version is not None and version not in self.versions:
            raise not_found(f"Could not find version {version} of model {self.name}")
        numbers = [version] if version is not None else sorted(self.versions)
        return [
            {"version": str(n), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for n in numbers
        ]

    def signature_def_map(self, version: Version) -> Any:
        from tensorflow_serving.apis import get_model_metadata_pb2

        out = get_model_metadata_pb2.SignatureDefMap()
        for k, v in version.signature_defs.items():
            out.signature_def[k].CopyFrom(v)
        return out

    def metadata_json(self, version: Version) -> dict[str, Any]:
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": str(version.number)},
            "metadata": {
                "signature_def": json_format.MessageToDict(
                    self.signature_def_map(version), preserving_proto_field_name=True
                )
            },
        }


def _op_error_code(exc: tf.errors.OpError) -> str:
    from tensorflow.core.protobuf import error_codes_pb2

    return error_codes_pb2.Code.Name(exc.error_code)


@dataclass
class Served:
    """One model of the server: its servable and, with batching on, its own batcher (TF Serving batches per model)."""

    servable: Servable
    batcher: Any = None  # stack.tfserving_compat.batching.Batcher


def not_served(models: dict[str, Served], name: str, version: Any, api: str) -> ServingError:
    """TF Serving's words for a model it does not serve."""
    if api == "status":
        return not_found(f"Could not find any versions of model {name}")
    wanted = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
    return not_found(f"Servable not found for request: {wanted}")
