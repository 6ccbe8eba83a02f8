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

from stack.tfserving_compat.batching import Batcher
from stack.tfserving_compat.errors import ServingError, invalid, not_found
from stack.tfserving_compat.servable import Servable, Version


def _resolve(servable: Servable, spec: Any) -> Version:
    which = spec.WhichOneof("version_choice")
    if spec.name != servable.name:
        wanted = f"Specific({spec.name}, {spec.version.value})" if which == "version" else f"Latest({spec.name})"
        raise not_found(f"Servable not found for request: {wanted}")
    if which == "version":
        return servable.resolve(version=spec.version.value)
    if which == "version_label":
        return servable.resolve(label=spec.version_label)
    return servable.resolve()


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, servable: Servable, batcher: Batcher | None = None) -> None:
        self.servable = servable
        self.batcher = batcher  # the REST API's batcher: gRPC requests are batched with REST ones, as in TF Serving

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            version = _resolve(self.servable, request.model_spec)
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
            if self.batcher is not None:
                outputs = self.batcher.submit_from_thread(version, signature, inputs, context.time_remaining())
            else:
                outputs = self.servable.run(version, signature, inputs)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = self.servable.name
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


def serve(servable: Servable, host: str, port: int, workers: int = 8, batcher: Batcher | None = None) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(servable, batcher), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(servable), server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"cannot bind gRPC port {host}:{port}")
    server.start()
    return server
