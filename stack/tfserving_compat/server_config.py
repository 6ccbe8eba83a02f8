"""What Server::BuildAndStart and ServerCore check before they serve, and the text-proto files they read.

The rules, in the vendor's order (tensorflow/serving tag 2.19.0, tensorflow_serving/model_servers/):
- server.cc:181-186  gRPC port 0 and no socket path: INVALID_ARGUMENT "At least one of server_options.grpc_port or
  server_options.grpc_socket_path must be set."
- server.cc:195-200  neither --model_base_path nor --model_config_file: "Both server_options.model_base_path and
  server_options.model_config_file are empty!"
- server.cc:210-216  --model_config_file wins: --model_name and --model_base_path are then IGNORED (main.cc:137
  says so; no error). Without it, one model named --model_name ("default") at --model_base_path,
  platform "tensorflow" (server.cc:75-88).
- server.cc:224-241  --enable_batching reads --batching_parameters_file (or uses the defaults); a batching file
  WITHOUT --enable_batching is INVALID_ARGUMENT "server_options.batching_parameters_file is set without setting
  server_options.enable_batching to true."
- server.cc:254-261  intra, inter and session parallelism all > 0: INVALID_ARGUMENT "Either configure ...".
- Every text-proto file goes through util/proto_util.h:27-38 ParseProtoTextFile: a file that cannot be read is
  the Env's error (NOT_FOUND "<path>; No such file or directory"); one TextFormat refuses (a typo'd field, a bad
  enum, a malformed number) is INVALID_ARGUMENT "Invalid protobuf file: '<path>'".
- server_core.cc:89-125 (ValidateModelConfigList): a model listed twice; a relative base_path ("Expected model X to
  have an absolute path or URI; got base_path()=..."). server_core.cc:50-77 and 620-636: no platform, or one
  that is not "tensorflow".
- server_core.cc:514-558 (UpdateModelVersionLabelMap, run BEFORE any version loads): a version label in the
  config at start is FAILED_PRECONDITION "Request to assign label to version N of model X, which is not
  currently available for inference" unless --allow_version_labels_for_unavailable_models; labels belong to
  their own model (a map per model name).
- server.cc:435-447  the monitoring config is read only when REST is on (--rest_api_port not 0 and not --port).
- Batching values: TF's SharedBatchScheduler refuses num_batch_threads < 1, batch_timeout_micros < 0 and
  max_batch_size / max_enqueued_batches of 0 when the model loads (tensorflow/core/kernels/batching_util/
  shared_batch_scheduler.h, Create and AddQueue). It reads max_batch_size and max_enqueued_batches as size_t, so
  a negative one wraps to a huge limit there; this server refuses it at start instead, as it does every value
  the scheduler would refuse. Fields left out take the scheduler's defaults (QueueOptions: max_batch_size 1000,
  batch_timeout_micros 0, max_enqueued_batches 10; Options: num_batch_threads = the machine's parallelism).

ModelServerConfig is the class tensorflow-serving-api ships (tensorflow_serving.config.model_server_config_pb2).
The package does not ship MonitoringConfig (config/monitoring_config.proto) nor BatchingParameters
(servables/tensorflow/session_bundle_config.proto), so protos.py declares them field for field from the 2.19.0
.proto files, and text_format reads them as protoc-generated classes would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from stack.tfserving_compat import protos
from stack.tfserving_compat.flags import Options

TENSORFLOW_PLATFORM = "tensorflow"


class StartError(Exception):
    """Server::BuildAndStart's error: printed as `Failed to start server. Error: CODE: message`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ModelEntry:
    name: str
    base_path: str
    labels: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchingSettings:
    """The effective BatchingParameters (the scheduler's defaults where the file leaves a field out)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = os.cpu_count() or 1


@dataclass(frozen=True)
class StartPlan:
    models: list[ModelEntry]
    batching: BatchingSettings | None
    monitoring_path: str | None
    intra_op_threads: int
    inter_op_threads: int


def read_text_proto(path: str, message: Any) -> Any:
    """ParseProtoTextFile: the file's text into `message`, or StartError with TF Serving's words."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        raise StartError("NOT_FOUND", f"{path}; No such file or directory") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise StartError("INVALID_ARGUMENT", f"Invalid protobuf file: '{path}'") from exc
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise StartError("INVALID_ARGUMENT", f"Invalid protobuf file: '{path}' ({exc})") from exc
    return message


def _is_relative(uri: str) -> bool:
    """UriIsRelativePath: no scheme, no host, and not an absolute path."""
    return "://" not in uri and not uri.startswith("/")


def model_entries(config: Any, allow_unavailable_labels: bool) -> list[ModelEntry]:
    which = config.WhichOneof("config")
    if which is None:
        return []  # "Taking no action for empty config." (server_core.cc:462-467): serves nothing
    if which != "model_config_list":
        raise StartError("UNIMPLEMENTED", "custom_model_config is not supported (the vendor LOG(FATAL)s on it)")
    entries, seen = [], set()
    for model in config.model_config_list.config:
        if model.name in seen:
            raise StartError("INVALID_ARGUMENT", f"Illegal to list model {model.name} multiple times in config list")
        seen.add(model.name)
        if _is_relative(model.base_path):
            raise StartError(
                "INVALID_ARGUMENT",
                f"Expected model {model.name} to have an absolute path or URI; got base_path()={model.base_path}",
            )
    for model in config.model_config_list.config:
        labels = dict(model.version_labels)
        if labels and not allow_unavailable_labels:
            version = next(iter(labels.values()))
            raise StartError(
                "FAILED_PRECONDITION",
                f"Request to assign label to version {version} of model {model.name}, "
                "which is not currently available for inference",
            )
        platform = model.model_platform
        if not platform:
            raise StartError(
                "INVALID_ARGUMENT",
                "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
                f"ModelServerConfig::model_platform, model name is {model.name}",
            )
        if platform != TENSORFLOW_PLATFORM:
            raise StartError("INVALID_ARGUMENT", f"Model {model.name} requests unsupported platform {platform}")
        policy = model.model_version_policy
        if policy.WhichOneof("policy_choice") not in (None, "latest") or policy.latest.num_versions > 1:
            raise StartError(
                "UNIMPLEMENTED", f"model {model.name}: this compatible server serves the latest version only"
            )
        entries.append(ModelEntry(model.name, model.base_path, labels))
    return entries


def batching_settings(path: str) -> BatchingSettings:
    params = read_text_proto(path, protos.BatchingParameters()) if path else protos.BatchingParameters()
    default = BatchingSettings()
    values = {
        name: getattr(params, name).value if params.HasField(name) else getattr(default, name)
        for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads")
    }
    for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
        if values[name] < 1:
            raise StartError("INVALID_ARGUMENT", f"{name} must be positive; was {values[name]} ({path})")
    if values["batch_timeout_micros"] < 0:
        raise StartError(
            "INVALID_ARGUMENT", f"batch_timeout_micros must be non-negative; was {values['batch_timeout_micros']}"
        )
    unsupported = [f for f in ("allowed_batch_sizes", "pad_variable_length_inputs") if _is_set(params, f)]
    unsupported += [f for f in ("enable_large_batch_splitting", "max_execution_batch_size") if params.HasField(f)]
    if unsupported:
        raise StartError("UNIMPLEMENTED", f"{path}: {', '.join(unsupported)} not supported by this compatible server")
    return BatchingSettings(**values)


def _is_set(message: Any, name: str) -> bool:
    value = getattr(message, name)
    return bool(len(value)) if hasattr(value, "__len__") else bool(value)


def plan(options: Options) -> StartPlan:
    """Server::BuildAndStart's checks, in its order, up to what it would serve. Raises StartError."""
    if options.port == 0 and not options.grpc_socket_path:
        raise StartError(
            "INVALID_ARGUMENT",
            "At least one of server_options.grpc_port or server_options.grpc_socket_path must be set.",
        )
    if options.use_alts_credentials and options.ssl_config_file:
        raise StartError(
            "INVALID_ARGUMENT", "Either use_alts_credentials must be false or ssl_config_file must be empty."
        )
    if not options.model_base_path and not options.model_config_file:
        raise StartError(
            "INVALID_ARGUMENT",
            "Both server_options.model_base_path and server_options.model_config_file are empty!",
        )
    if options.model_config_file:
        config = read_text_proto(options.model_config_file, model_server_config_pb2.ModelServerConfig())
    else:
        config = model_server_config_pb2.ModelServerConfig()
        single = config.model_config_list.config.add()
        single.name, single.base_path = options.model_name, options.model_base_path
        single.model_platform = TENSORFLOW_PLATFORM
    batching = None
    if options.enable_batching:
        batching = batching_settings(options.batching_parameters_file)
    elif options.batching_parameters_file:
        raise StartError(
            "INVALID_ARGUMENT",
            "server_options.batching_parameters_file is set without setting server_options.enable_batching to true.",
        )
    intra, inter, session = (
        options.tensorflow_intra_op_parallelism,
        options.tensorflow_inter_op_parallelism,
        options.tensorflow_session_parallelism,
    )
    if intra > 0 and inter > 0 and session > 0:
        raise StartError(
            "INVALID_ARGUMENT",
            "Either configure server_options.tensorflow_session_parallelism or "
            "(server_options.tensorflow_intra_op_parallelism, server_options.tensorflow_inter_op_parallelism) "
            "separately. You cannot configure all.",
        )
    if intra <= 0 and inter <= 0:
        intra = inter = session
    models = model_entries(config, options.allow_version_labels_for_unavailable_models)
    monitoring_path = None
    if options.rest_api_port != 0 and options.rest_api_port != options.port and options.monitoring_config_file:
        monitoring = read_text_proto(options.monitoring_config_file, protos.MonitoringConfig())
        if monitoring.prometheus_config.enable:
            monitoring_path = monitoring.prometheus_config.path or "/monitoring/prometheus/metrics"
    return StartPlan(models, batching, monitoring_path, max(intra, 0), max(inter, 0))
