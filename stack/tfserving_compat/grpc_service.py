"""TF Serving's gRPC PredictionService (Predict, GetModelMetadata) and ModelService (GetModelStatus)."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from stack.tfserving_compat.errors import ServingError, invalid
from stack.tfserving_compat.servable import Served, Version, not_served


def _resolve(models: dict[str, Served], spec: Any) -> tuple[Served, Version]:
    which = spec.WhichOneof("version_choice")
    served = models.get(spec.name)
    if served is None:
        raise not_served(models, spec.name, spec.version.value if which == "version" else None, "predict")
    if which == "version":
        return served, served.servable.resolve(version=spec.version.value)
    if which == "version_label":
        return served, served.servable.resolve(label=spec.version_label)
    return served, served.servable.resolve()


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, models: dict[str, Served]) -> None:
        # each model's REST batcher: gRPC requests are batched with REST ones, as in TF Serving
        self.models = models

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            served, version = _resolve(self.models, request.model_spec)
            inputs = {}
            for alias, proto in request.inputs.items():
                try:
                    inputs[alias] = tf.make_ndarray(proto)
                except (TypeError, ValueError) as exc:
                    raise invalid(f"tensor parsing error: {alias}") from exc
            signature = request.model_spec.signature_name
            wanted = list(request.output_filter)
            if len(set(wanted)) != len(wanted):
                duplicate = next(a for i, a in enumerate(wanted) if a in wanted[:i])
                raise invalid(f"duplicate output tensor alias: {duplicate}")
            if served.batcher is not None:
                outputs = served.batcher.submit_from_thread(version, signature, inputs, context.time_remaining())
            else:
                outputs = served.servable.run(version, signature, inputs)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = served.servable.name
            response.model_spec.version.value = version.number
            response.model_spec.signature_name = signature or "serving_default"
            for name in wanted or list(outputs):
                if name not in outputs:
                    raise invalid(
                        f"output tensor alias not found in signature: {name} "
                        f"Outputs expected to be in the set {{{','.join(sorted(outputs))}}}."
                    )
                response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
            return response
        except ServingError as exc:
            context.abort(exc.grpc_status, exc.message)

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise invalid(
                    "Metadata field signature_def must be requested"
                    if not fields
                    else f"Metadata field {fields[0]} is not supported"
                )
            served, version = _resolve(self.models, request.model_spec)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = served.servable.name
            response.model_spec.version.value = version.number
            response.metadata["signature_def"].Pack(served.servable.signature_def_map(version))
            return response
        except ServingError as exc:
            context.abort(exc.grpc_status, exc.message)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, models: dict[str, Served]) -> None:
        self.models = models

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            spec = request.model_spec
            served = self.models.get(spec.name)
            if served is None:
                raise not_served(self.models, spec.name, None, "status")
            version = spec.version.value if spec.HasField("version") else None
            response = get_model_status_pb2.GetModelStatusResponse()
            for entry in served.servable.status(version):
                status = response.model_version_status.add()
                status.version = int(entry["version"])
                status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            return response
        except ServingError as exc:
            context.abort(exc.grpc_status, exc.message)


def serve(models: dict[str, Served], host: str, port: int, workers: int = 8) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(models), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(models), server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"cannot bind gRPC port {host}:{port}")
    server.start()
    return server
