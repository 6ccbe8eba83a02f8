"""The stack's one source of truth: `.env` at the repository root, overridable by the environment.

docker compose substitutes the same names natively; the native launcher, the gateway settings, the
export and the load tests read them here. Nothing else spells a port, a model name or a model path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = ROOT / ".env"
MODELS_DIR = ROOT / "models"
TF_MODEL_BASE = MODELS_DIR / "tf"
TORCH_MODEL_STORE = MODELS_DIR / "torch"
RUN_DIR = Path(os.environ.get("SERVECOMPARE_RUN_DIR", ROOT / ".run"))


def read_env_file(path: Path = ENV_FILE) -> dict[str, str]:
    """Parse KEY=VALUE lines (comments and blanks skipped), as compose does for `.env`."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


class ConfigError(ValueError):
    """A setting has a value the stack can't use; the message names the variable and what it holds."""


def _as_bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _as_int(key: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        pass
    hint = ""
    if "://" in raw:
        # Kubernetes injects <SERVICE>_PORT=tcp://<ip>:<port> for every Service in the namespace ("service links"):
        # a Service named `gateway` yields GATEWAY_PORT, which collides with the .env key of the same name.
        hint = (
            ": it looks like a Kubernetes service-link variable; set `enableServiceLinks: false` on the pod "
            "(k8s/ does) or unset it"
        )
    raise ConfigError(f"{key}={raw!r} is not a whole number{hint}")


@dataclass(frozen=True)
class StackConfig:
    model_name: str
    model_version: int
    n_features: int
    n_classes: int
    tf_rest_port: int
    tf_grpc_port: int
    tf_serving_image: str
    tf_batching: bool
    tf_max_batch_size: int
    tf_batch_timeout_micros: int
    ts_inference_port: int
    ts_management_port: int
    ts_metrics_port: int
    ts_grpc_inference_port: int
    ts_grpc_management_port: int
    torchserve_image: str
    torchserve_gpu_image: str
    ts_batch_size: int
    ts_max_batch_delay_ms: int
    ts_workers: int
    gateway_port: int
    host: str = "127.0.0.1"
    python_base_image: str = "python:3.11.14-slim-bookworm"
    locust_web_port: int = 8089
    runtime_threads: int = 1
    gateway_workers: int = 1

    @classmethod
    def load(cls, overrides: dict[str, str] | None = None, environ: bool = True) -> StackConfig:
        """`.env`, then the process environment (unless `environ` is false), then explicit overrides (tests).

        A value that can't be parsed is a ConfigError naming the variable."""
        merged = read_env_file()
        if environ:
            merged.update({k: v for k, v in os.environ.items() if k in merged})
        merged.update(overrides or {})
        kwargs: dict[str, object] = {}
        for f in fields(cls):
            key = f.name.upper()
            if key not in merged:
                continue
            raw = merged[key]
            if f.type == "int":
                kwargs[f.name] = _as_int(key, raw)
            elif f.type == "bool":
                kwargs[f.name] = _as_bool(raw)
            else:
                kwargs[f.name] = raw
        return cls(**kwargs)  # type: ignore[arg-type]

    @property
    def tf_version_dir(self) -> Path:
        return TF_MODEL_BASE / self.model_name / str(self.model_version)

    @property
    def mar_path(self) -> Path:
        return TORCH_MODEL_STORE / f"{self.model_name}.mar"

    @property
    def tf_rest_url(self) -> str:
        return f"http://{self.host}:{self.tf_rest_port}"

    @property
    def ts_inference_url(self) -> str:
        return f"http://{self.host}:{self.ts_inference_port}"

    @property
    def ts_management_url(self) -> str:
        return f"http://{self.host}:{self.ts_management_port}"

    @property
    def ts_metrics_url(self) -> str:
        return f"http://{self.host}:{self.ts_metrics_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.gateway_port}"
