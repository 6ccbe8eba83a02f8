"""The gateway's one settings class: environment variables (GATEWAY_*), defaults from the stack's `.env` file.

Only GATEWAY_* variables configure the gateway: the `.env` file gives defaults, but other variables of the
environment are not read, so names Kubernetes injects for Services (`GATEWAY_PORT=tcp://...`, service links)
can't break it. The native launcher passes every URL explicitly."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stack.config import StackConfig

_stack = StackConfig.load(environ=False)

BackendName = Literal["tf", "torch"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    model_name: str = _stack.model_name  # the default model: /predict, /predict/{backend}, /compare
    n_classes: int = Field(_stack.n_classes, ge=1)  # every answer must have this many probabilities per row
    # The other models served under /models/{name}/...: "all" of the registry (models.toml), or a comma-separated
    # list of registered names ("" for the default model only).
    models: str = "all"

    tf_url: str = _stack.tf_rest_url
    tf_protocol: Literal["rest", "grpc"] = "rest"
    tf_grpc_target: str = f"{_stack.host}:{_stack.tf_grpc_port}"
    tf_model_version: int | None = None  # None: the latest version, as TF Serving picks it
    # How often the versions the backends serve are re-read in the background (never on the prediction path).
    version_refresh_s: float = Field(30.0, gt=0)

    torch_url: str = _stack.ts_inference_url
    torch_management_url: str = _stack.ts_management_url
    # "workers": ready when the management API shows a READY worker (native, compose). "ping": trust /ping,
    # for clusters where a NetworkPolicy keeps the management port closed and the pod's own readiness probe
    # already waits for a READY worker before the Service routes to it (k8s/).
    torch_readiness: Literal["workers", "ping"] = "workers"
    torch_token: str | None = None  # for TorchServe deployments that keep token authorization on
    # The .mar's version (the registry's): TorchServe's inference API doesn't say which version answered. With
    # "workers" readiness the management API's answer replaces it in the background; with "ping" nothing asks it.
    torch_model_version: str = str(_stack.model_version)

    default_backend: BackendName = "tf"
    # Weighted split for POST /predict (canary / A-B). Both 0: always the default backend.
    tf_weight: float = Field(0.0, ge=0)
    torch_weight: float = Field(0.0, ge=0)
    failover: bool = False

    # The pooled upstream client (gateway/upstream.py): "raw" (default: HTTP/1.1 keep-alive, an asyncio.Protocol
    # feeding httptools, the cheapest per call), "stream" (the same client on asyncio streams,
    # gateway/stream_upstream.py), "aiohttp", or "httpcore" (httpx on its own transport, what respx fakes).
    upstream_transport: Literal["raw", "stream", "aiohttp", "httpcore"] = "raw"
    connect_timeout_s: float = Field(1.0, gt=0)
    request_timeout_s: float = Field(5.0, gt=0)
    readiness_timeout_s: float = Field(1.0, gt=0)
    max_connections: int = Field(100, ge=1)
    # Idle connections kept per upstream; the raw client keeps at least the admission limit, so a burst reuses the
    # previous burst's connections instead of closing and reopening the difference.
    max_keepalive_connections: int = Field(100, ge=0)
    # The largest answer body accepted from a backend (a larger one is a 502, and its connection is closed).
    max_upstream_body_bytes: int = Field(8_000_000, ge=1)
    # Admission (gateway/admission.py): requests in flight per backend (default: max_connections less a few kept
    # for readiness and version calls) and how long a request may wait for a slot before a 503 + Retry-After.
    max_concurrency_per_backend: int | None = Field(None, ge=1)
    admission_wait_s: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _backend_urls_speak_http(self) -> Settings:
        """Refused at start, not spoken as plain HTTP to a TLS port: the raw client speaks http:// only."""
        allowed = ("http",) if self.upstream_transport in ("raw", "stream") else ("http", "https")
        for field in ("tf_url", "torch_url", "torch_management_url"):
            url = getattr(self, field)
            scheme = urlsplit(url).scheme
            if scheme not in allowed:
                hint = " (for https, set GATEWAY_UPSTREAM_TRANSPORT=aiohttp)" if scheme == "https" else ""
                raise ValueError(
                    f"GATEWAY_{field.upper()}={url!r}: the {self.upstream_transport!r} upstream transport speaks "
                    f"{' or '.join(allowed)} only{hint}"
                )
        return self

    @property
    def concurrency_limit(self) -> int:
        return self.max_concurrency_per_backend or max(1, self.max_connections - 4)

    max_batch: int = Field(256, ge=1)
    # Processes serving the gateway (`python -m gateway`): uvicorn workers on one port, metrics summed over them
    # (Prometheus' multiprocess mode). The admission limit above holds per process. In Kubernetes keep 1 and let
    # the HPA add pods; on a VM or with compose, up to the cores the gateway may use.
    workers: int = Field(_stack.gateway_workers, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1)
    # One JSON line a request on stderr (gateway/logs.py); 5xx, exceptions, start-up and readiness are always logged.
    access_log: bool = False
