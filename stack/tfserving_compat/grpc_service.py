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

from stack.tfserving_compat.errors import ServingError, invalid, not_found
from stack.tfserving_compat.servable import Servable, Version


def _resolve(servable: Servable, spec: Any) -> Version:
    if spec.name != servable.name:
        raise not_found(f"Servable not found for request: Latest({spec.name})")
    which = spec.WhichOneof("version_choice")
    if which == "version":
        return servable.resolve(version=spec.version.value)
    if which == "version_label":
        return servable.resolve(label=spec.version_label)
    return servable.resolve()


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, servable: Servable) -> None:
        self.servable = servable

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            version = _resolve(self.servable, request.model_spec)
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            outputs = self.servable.run(version, request.model_spec.signature_name, inputs)
            wanted = set(request.output_filter) or set(outputs)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = self.servable.name
            response.model_spec.version.value = version.number
            response.model_spec.signature_name = request.model_spec.signature_name or "serving_default"
            for name in wanted:
                if name not in outputs:
                    raise invalid(f"output tensor alias not found in signature: {name}")
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
            version = _resolve(self.servable, request.model_spec)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = self.servable.name
            response.model_spec.version.value = version.number
            response.metadata["signature_def"].Pack(self.servable.signature_def_map(version))
            return response
        except ServingError as exc:
            context.abort(exc.grpc_status, exc.message)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, servable: Servable) -> None:
        self.servable = servable

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            spec = request.model_spec
            if spec.name != self.servable.name:
                raise not_found(f"Could not find any versions of model {spec.name}")
            version = spec.version.value if spec.HasField("version") else None
            response = get_model_status_pb2.GetModelStatusResponse()
            for entry in self.servable.status(version):
                status = response.model_version_status.add()
                status.version = int(entry["version"])
                status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            return response
        except ServingError as exc:
            context.abort(exc.grpc_status, exc.message)


def serve(servable: Servable, host: str, port: int, workers: int = 8) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(servable), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(servable), server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"cannot bind gRPC port {host}:{port}")
    server.start()
    return server
