"""TensorFlow Serving: REST (`/v1/models/{name}[/versions/{v}]:predict`) or gRPC `PredictionService.Predict`."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson

from gateway.backends.base import Prediction, Stopwatch, check_predictions, get_json, post_instances
from gateway.errors import BackendTimeout, BackendUnavailable, UpstreamError
from gateway.settings import Settings
from gateway.upstream import new_upstream


def _available_versions(status: dict[str, Any]) -> list[str]:
    """The versions TF Serving's model status API reports AVAILABLE."""
    return [s.get("version") for s in status.get("model_version_status", []) if s.get("state") == "AVAILABLE"]


class TFServingRestBackend:
    name = "tf"

    def __init__(self, settings: Settings) -> None:
        self.model_name = settings.model_name
        version = settings.tf_model_version
        self._model_path = f"/v1/models/{self.model_name}" + (f"/versions/{version}" if version else "")
        self._client = new_upstream(settings.tf_url, self.name, settings)
        self._n_classes = settings.n_classes
        self._pinned = version is not None
        # REST predict answers don't name the version: the pinned one, or the latest AVAILABLE as the model status
        # API last reported it (refreshed in the background and by readiness checks, never on the prediction path).
        self.version = str(version) if version else "unknown"
        self._readiness_timeout = settings.readiness_timeout_s

    async def predict(self, body: bytes, rows: int) -> Prediction:
        # The gateway's request is TF Serving's row format: the validated body goes upstream as it came.
        preds, elapsed, text = await post_instances(
            self._client, self.name, f"{self._model_path}:predict", body, rows, self._n_classes
        )
        return Prediction(preds, self.version, elapsed, text)

    def _learn_version(self, status: dict[str, Any]) -> None:
        versions = [v for v in _available_versions(status) if str(v).isdigit()]
        if versions and not self._pinned:
            self.version = str(max(versions, key=int))

    async def refresh_version(self) -> None:
        if self._pinned:
            return
        with contextlib.suppress(BackendUnavailable, BackendTimeout, UpstreamError, AttributeError):
            self._learn_version(await self._status())

    async def _status(self) -> dict[str, Any]:
        status = await get_json(self._client, self.name, self._model_path, self._readiness_timeout)
        if not isinstance(status, dict):
            raise UpstreamError("model status answered something other than an object", backend=self.name)
        return status

    async def ready(self) -> tuple[bool, str]:
        try:
            status = await self._status()
        except (BackendUnavailable, BackendTimeout, UpstreamError) as exc:
            return False, str(exc)
        self._learn_version(status)
        if _available_versions(status):
            return True, "AVAILABLE"
        states = {s.get("version"): s.get("state") for s in status.get("model_version_status", [])}
        return False, f"model {self.model_name} not AVAILABLE: {states}"

    async def metadata(self) -> dict[str, Any]:
        return dict(await get_json(self._client, self.name, f"{self._model_path}/metadata", self._readiness_timeout))

    async def aclose(self) -> None:
        await self._client.aclose()


class TFServingGrpcBackend:
    """The same predictions over gRPC; readiness and metadata still use the REST model status API."""

    name = "tf"

    def __init__(self, settings: Settings) -> None:
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.model_name = settings.model_name
        self._version = settings.tf_model_version
        self._timeout = settings.request_timeout_s
        self._channel = grpc.aio.insecure_channel(settings.tf_grpc_target)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._rest = TFServingRestBackend(settings)

    async def predict(self, body: bytes, rows: int) -> Prediction:
        import grpc
        import numpy as np
        from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorflow_serving.apis import predict_pb2

        instances = orjson.loads(body)["instances"]  # validated by the route
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        if self._version:
            request.model_spec.version.value = self._version
        shape = tensor_shape_pb2.TensorShapeProto(
            dim=[
                tensor_shape_pb2.TensorShapeProto.Dim(size=len(instances)),
                tensor_shape_pb2.TensorShapeProto.Dim(size=len(instances[0])),
            ]
        )
        request.inputs["features"].CopyFrom(
            tensor_pb2.TensorProto(
                dtype=types_pb2.DT_FLOAT,
                tensor_shape=shape,
                tensor_content=np.asarray(instances, dtype=np.float32).tobytes(),
            )
        )
        watch = Stopwatch()
        try:
            response = await self._stub.Predict(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                raise BackendUnavailable(f"backend 'tf' (gRPC) is unreachable: {exc.details()}", backend="tf") from exc
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise BackendTimeout("backend 'tf' (gRPC) timed out", backend="tf") from exc
            raise UpstreamError(f"backend 'tf' (gRPC) answered {code.name}: {exc.details()}", backend="tf") from exc
        elapsed = watch.ms
        if len(response.outputs) != 1:
            raise UpstreamError("backend 'tf' (gRPC) returned an unexpected number of outputs", backend="tf")
        (tensor,) = response.outputs.values()
        dims = [d.size for d in tensor.tensor_shape.dim]
        values = (
            np.frombuffer(tensor.tensor_content, dtype=np.float32)
            if tensor.tensor_content
            else np.asarray(tensor.float_val, dtype=np.float32)
        )
        if len(dims) != 2 or values.size != dims[0] * dims[1]:
            raise UpstreamError("backend 'tf' (gRPC) returned a malformed tensor", backend="tf")
        preds = check_predictions(self.name, values.reshape(dims).tolist(), rows, self._rest._n_classes)
        # gRPC answers name the version that served them.
        answered = response.model_spec.version.value
        return Prediction(preds, str(answered) if answered else self._rest.version, elapsed)

    @property
    def version(self) -> str:
        return self._rest.version

    async def refresh_version(self) -> None:
        await self._rest.refresh_version()

    async def ready(self) -> tuple[bool, str]:
        return await self._rest.ready()

    async def metadata(self) -> dict[str, Any]:
        return await self._rest.metadata()

    async def aclose(self) -> None:
        await self._channel.close()
        await self._rest.aclose()


def create(settings: Settings) -> TFServingRestBackend | TFServingGrpcBackend:
    return TFServingGrpcBackend(settings) if settings.tf_protocol == "grpc" else TFServingRestBackend(settings)


__all__ = ["TFServingGrpcBackend", "TFServingRestBackend", "create"]
