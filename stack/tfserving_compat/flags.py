"""`tensorflow_model_server` 2.19's command line, read the way the binary reads it.

What the vendor does, and where it says so (tensorflow/serving tag 2.19.0 unless named otherwise):

- The flags, their types and defaults: tensorflow_serving/model_servers/main.cc:87-314 (the list) and the defaults
  in server.h:43-109 and server.cc:151-153 (`model_name` "default", `saved_model_tags` "serve"). REST is off
  unless `--rest_api_port` is set (http_port = 0, server.h:51); `--port` is 8500.
- Parsing is tsl::Flags::Parse (xla/tsl/util/command_line_flags.cc, in TF's third_party/xla; TF commit
  e36baa30 pinned by serving's WORKSPACE:28). Only `--name=value` is read; `--name value`, `-name=value` and a
  bare `--name` for a non-bool are not flags at all (they are left over as unknown arguments).
  * bool: `--name` alone is true; `=true`/`=false` in any case, `=1`/`=0`; anything else (`=on`, `=yes`, `=`)
    logs `Couldn't interpret value on for flag enable_batching.`. Checked, not only read: TF 2.19.1's own
    libtensorflow_framework.so.2 driven by a probe program gave exactly these answers (ParseBoolFlag,
    command_line_flags.cc:108 in that build).
  * int32 / int64: sscanf("%d%c") must read one number and nothing after it: `12x`, `1.5`, `0x10` and an empty
    value are refused with the same message; a sign and leading blanks are allowed. (An out-of-range number
    wraps in the vendor, C's undefined behaviour; here it is refused.)
  * float: sscanf("%f%c"), the same rule.
  * A malformed value makes Parse return false: main.cc:317-320 prints the usage to stdout and returns -1, so the
    process exits with status 255. `--help` does the same.
  * An argument that is no flag: main.cc:333-335 prints `unknown argument: <arg>` and the usage, and then STARTS
    ANYWAY (there is no return). The stand-in refuses it instead (status 255, after the same lines): an ignored
    flag is always a mistake in a command line that is also handed to the vendor, and the vendor's own
    behaviour (running without it) is what a user of this project would never want to find out in production.
    `--version_label` is such an argument: it is no TF Serving flag (labels live in the model config file).
- After parsing, validation happens in Server::BuildAndStart (server.cc:180-460) and in ServerCore; see
  server_config.py. A failure there is printed as `Failed to start server. Error: <absl::Status>` (main.cc:344),
  i.e. `INVALID_ARGUMENT: ...`, and the exit status is 255.

Flags this server does not implement: it parses them with their TF Serving types (so a malformed value is
refused as the vendor refuses it), accepts the vendor's default value, and refuses any other value
(UNSUPPORTED) rather than run without the behaviour asked for; knobs that only tune resources and change no
answer (NO_EFFECT: thread counts, load retries, cache flushing) are accepted with a warning in the log. Two flags
are this server's own (COMPAT_ONLY): the bind addresses (the vendor binds every interface; natively this server
binds loopback unless told otherwise).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

PROG = "python -m stack.tfserving_compat"
EXIT_FAILURE = 255  # main() returns -1

IMPLEMENTED, NO_EFFECT, UNSUPPORTED, COMPAT_ONLY = "implemented", "no effect here", "unsupported", "compat only"
_CPUS = os.cpu_count() or 1


@dataclass(frozen=True)
class Flag:
    name: str
    kind: str  # int32 | int64 | bool | string | float
    default: Any
    status: str
    help: str = ""


FLAGS: tuple[Flag, ...] = (
    Flag("port", "int32", 8500, IMPLEMENTED, "TCP port to listen on for gRPC/HTTP API. Disabled if port set to zero."),
    Flag("grpc_socket_path", "string", "", UNSUPPORTED),
    Flag("rest_api_port", "int32", 0, IMPLEMENTED, "Port to listen on for HTTP/REST API. Zero: not exported."),
    Flag("rest_api_num_threads", "int32", 4 * _CPUS, NO_EFFECT),
    Flag("rest_api_timeout_in_ms", "int32", 30000, UNSUPPORTED),
    Flag("rest_api_enable_cors_support", "bool", False, UNSUPPORTED),
    Flag("enable_batching", "bool", False, IMPLEMENTED, "enable batching"),
    Flag("allow_version_labels_for_unavailable_models", "bool", False, IMPLEMENTED),
    Flag("batching_parameters_file", "string", "", IMPLEMENTED, "an ascii BatchingParameters protobuf"),
    Flag("enable_per_model_batching_parameters", "bool", False, UNSUPPORTED),
    Flag("model_config_file", "string", "", IMPLEMENTED, "an ascii ModelServerConfig protobuf"),
    Flag("model_config_file_poll_wait_seconds", "int32", 0, UNSUPPORTED),
    Flag("model_name", "string", "default", IMPLEMENTED, "ignored if --model_config_file is set"),
    Flag("model_base_path", "string", "", IMPLEMENTED, "ignored if --model_config_file is set"),
    Flag("num_load_threads", "int32", 0, NO_EFFECT),
    Flag("num_unload_threads", "int32", 0, NO_EFFECT),
    Flag("max_num_load_retries", "int32", 5, NO_EFFECT),
    Flag("load_retry_interval_micros", "int64", 60_000_000, NO_EFFECT),
    Flag("file_system_poll_wait_seconds", "int32", 1, NO_EFFECT),
    Flag("flush_filesystem_caches", "bool", True, NO_EFFECT),
    Flag("tensorflow_session_parallelism", "int64", 0, IMPLEMENTED),
    Flag("tensorflow_session_config_file", "string", "", UNSUPPORTED),
    Flag("tensorflow_intra_op_parallelism", "int64", 0, IMPLEMENTED),
    Flag("tensorflow_inter_op_parallelism", "int64", 0, IMPLEMENTED),
    Flag("use_alts_credentials", "bool", False, UNSUPPORTED),
    Flag("ssl_config_file", "string", "", UNSUPPORTED),
    Flag("platform_config_file", "string", "", UNSUPPORTED),
    Flag("per_process_gpu_memory_fraction", "float", 0.0, NO_EFFECT),
    Flag("saved_model_tags", "string", "", UNSUPPORTED),  # "" and "serve": the serve graph, as here
    Flag("grpc_channel_arguments", "string", "", UNSUPPORTED),
    Flag("grpc_max_threads", "int32", 4 * _CPUS, NO_EFFECT),
    Flag("enable_model_warmup", "bool", True, IMPLEMENTED),
    Flag("num_request_iterations_for_warmup", "int32", 0, UNSUPPORTED),
    Flag("version", "bool", False, IMPLEMENTED, "Display version"),
    Flag("monitoring_config_file", "string", "", IMPLEMENTED, "an ascii MonitoringConfig protobuf"),
    Flag("remove_unused_fields_from_bundle_metagraph", "bool", True, NO_EFFECT),
    Flag("prefer_tflite_model", "bool", False, UNSUPPORTED),
    Flag("num_tflite_pools", "int32", _CPUS, NO_EFFECT),
    Flag("num_tflite_interpreters_per_pool", "int32", 1, NO_EFFECT),
    Flag("enable_signature_method_name_check", "bool", False, UNSUPPORTED),
    Flag("xla_cpu_compilation_enabled", "bool", False, UNSUPPORTED),
    Flag("xla_gpu_compilation_enabled", "bool", False, UNSUPPORTED),
    Flag("enable_profiler", "bool", True, NO_EFFECT),
    Flag("thread_pool_factory_config_file", "string", "", UNSUPPORTED),
    Flag("mixed_precision", "string", "", UNSUPPORTED),
    Flag("skip_initialize_tpu", "bool", False, NO_EFFECT),
    Flag("enable_grpc_healthcheck_service", "bool", False, UNSUPPORTED),
    Flag("enable_serialization_as_tensor_content", "bool", False, UNSUPPORTED),
    # This server's own: the vendor listens on every interface.
    Flag("rest_api_bind_address", "string", "127.0.0.1", COMPAT_ONLY, "(compat only) REST listen address"),
    Flag("grpc_bind_address", "string", "127.0.0.1", COMPAT_ONLY, "(compat only) gRPC listen address"),
)
_ACCEPTED_AS_DEFAULT = {"saved_model_tags": {"", "serve"}}
_INT = re.compile(r"\s*[+-]?\d+")
_RANGE = {"int32": 2**31, "int64": 2**63}


class FlagError(Exception):
    """The command line is refused; `lines` are printed to stdout (as main.cc does) before exiting 255."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class Options:
    """Parsed flags as attributes (`options.enable_batching`), plus `given`: the names set on the command line."""

    def __init__(self, values: dict[str, Any], given: set[str]) -> None:
        self.__dict__.update(values)
        self.given = given

    def __getattr__(self, name: str) -> Any:  # for mypy: every flag is an attribute
        raise AttributeError(name)


def usage() -> str:
    """Flags::Usage's layout: `\\t%-33s\\t%s\\t%s` per flag."""
    lines = [f"usage: {PROG}", "Flags:"]
    for f in FLAGS:
        shown = {"bool": lambda v: "true" if v else "false", "string": lambda v: f'"{v}"', "float": "{:f}".format}
        value = shown.get(f.kind, str)(f.default)
        lines.append(f"\t{f'--{f.name}={value}':<33}\t{f.kind}\t{f.help}")
    return "\n".join(lines) + "\n"


def _value(flag: Flag, text: str) -> Any:
    """The value, or ValueError where tsl's Parse<Type>Flag logs "Couldn't interpret value"."""
    if flag.kind == "string":
        return text
    if flag.kind == "bool":
        if text.lower() == "true" or text == "1":
            return True
        if text.lower() == "false" or text == "0":
            return False
        raise ValueError(text)
    if flag.kind in _RANGE:
        if not _INT.fullmatch(text):
            raise ValueError(text)
        number = int(text)
        if not -_RANGE[flag.kind] <= number < _RANGE[flag.kind]:
            raise ValueError(text)  # the vendor wraps (undefined behaviour); refused here
        return number
    stripped = text.lstrip()  # float: what sscanf("%f") reads, whole
    if not stripped or "_" in stripped or stripped != stripped.rstrip():
        raise ValueError(text)
    return float(stripped)  # raises ValueError where sscanf fails (it also reads inf and nan)


def _match(arg: str) -> tuple[Flag, str | None] | None:
    """(flag, value text or None for a bare bool) when `arg` is one of FLAGS' `--name=value` / `--bool`."""
    if not arg.startswith("--"):
        return None
    name, eq, text = arg[2:].partition("=")
    for flag in FLAGS:
        if flag.name == name and (eq or flag.kind == "bool"):
            return flag, text if eq else None
    return None


def parse(argv: list[str]) -> Options:
    """tsl::Flags::Parse plus main.cc's handling of what it leaves over. Raises FlagError."""
    values = {f.name: f.default for f in FLAGS}
    given: set[str] = set()
    errors: list[str] = []
    unknown: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            unknown.extend(argv[i:])
            break
        found = _match(arg)
        if found is None:
            unknown.append(arg)
            continue
        flag, text = found
        try:
            values[flag.name] = True if text is None else _value(flag, text)
            given.add(flag.name)
        except ValueError:
            errors.append(f"Couldn't interpret value {text} for flag {flag.name}.")
    if errors or (unknown and unknown[0] == "--help"):
        raise FlagError(*errors, usage())
    if unknown:
        raise FlagError(
            f"unknown argument: {unknown[0]}",
            usage(),
            "(TF Serving 2.19 would print this and start anyway, without the argument; this compatible server "
            "refuses it: see stack/tfserving_compat/flags.py)",
        )
    return Options(values, given)


def unsupported(options: Options) -> list[str]:
    """`--flag=value` for every UNSUPPORTED flag set to something other than the vendor's default."""
    out = []
    for f in FLAGS:
        value = getattr(options, f.name)
        if f.status == UNSUPPORTED and value != f.default and value not in _ACCEPTED_AS_DEFAULT.get(f.name, ()):
            out.append(f"--{f.name}={value}")
    return out


def no_effect(options: Options) -> list[str]:
    """NO_EFFECT flags given on the command line (accepted; they tune what this server does not have)."""
    return [f"--{f.name}" for f in FLAGS if f.status == NO_EFFECT and f.name in options.given]
