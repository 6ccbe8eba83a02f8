"""TF Serving's REST API (api_rest.md) over a Servable: predict, model status, metadata, Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stack.tfserving_compat import DISPLAY_NAME, SERVER_NAME, json_tensor
from stack.tfserving_compat.batching import Batcher
from stack.tfserving_compat.errors import ServingError, invalid, not_found
from stack.tfserving_compat.servable import Served, not_served

MODEL_URL = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>-?\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>predict|classify|regress))?$"
)


class Metrics:
    """Named for what this is: the compatible server's own metrics, not TF Serving's `:tensorflow:serving:*`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tfserving_compat_requests",
            f"Requests handled by the {DISPLAY_NAME}",
            ["api", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tfserving_compat_request_latency_seconds",
            f"Request latency in the {DISPLAY_NAME}",
            ["api"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        # What this server actually runs with, for clients that must not take a config file's word for it.
        self.effective = Gauge(
            "tfserving_compat_effective_config",
            "Settings in force (labels); the value is always 1",
            list(EFFECTIVE_KEYS),
            registry=self.registry,
        )

    def record_effective(self, batcher: Batcher | None) -> None:
        import tensorflow as tf

        params = batcher.params if batcher is not None else None
        values = {
            "batching": "true" if params else "false",
            "max_batch_size": str(params.max_batch_size) if params else "",
            "batch_timeout_micros": str(params.batch_timeout_micros) if params else "",
            "max_enqueued_batches": str(params.max_enqueued_batches) if params else "",
            "num_batch_threads": str(params.num_batch_threads) if params else "",
            "intra_op_threads": str(tf.config.threading.get_intra_op_parallelism_threads()),
            "inter_op_threads": str(tf.config.threading.get_inter_op_parallelism_threads()),
        }
        self.effective.labels(*(values[k] for k in EFFECTIVE_KEYS)).set(1)


EFFECTIVE_KEYS = (
    "batching",
    "max_batch_size",
    "batch_timeout_micros",
    "max_enqueued_batches",
    "num_batch_threads",
    "intra_op_threads",
    "inter_op_threads",
)


def _json(body: str | dict[str, Any], status: int = 200) -> Response:
    text = body if isinstance(body, str) else json.dumps(body, indent=1)
    return Response(text, status_code=status, media_type="application/json", headers={"Server": SERVER_NAME})


def _error(exc: ServingError) -> Response:
    return _json({"error": exc.message}, exc.http_status)


def create_app(models: dict[str, Served], monitoring_path: str | None = None) -> Starlette:
    metrics = Metrics()
    batchers = [m.batcher for m in models.values() if m.batcher is not None]
    metrics.record_effective(batchers[0] if batchers else None)

    async def dispatch(request: Request, match: re.Match[str] | None, api: str) -> Response:
        try:
            path = request.url.path
            if not path.startswith("/v1/"):
                raise not_found(f"Not found: {request.method} {path}")
            if match is None:
                raise invalid(f"Malformed request: {request.method} {path}")
            served = models.get(match["name"])
            if served is None:
                raise not_served(models, match["name"], match["version"], api)
            servable, batcher = served.servable, served.batcher
            version = int(match["version"]) if match["version"] is not None else None
            if api == "status":
                if request.method != "GET":
                    raise invalid(f"Malformed request: {request.method} {path}")
                if match["label"]:  # the status of the version the label points at
                    version = servable.resolve(None, match["label"]).number
                return _json({"model_version_status": servable.status(version)})
            if api == "metadata":
                if request.method != "GET":
                    raise invalid(f"Malformed request: {request.method} {path}")
                return _json(servable.metadata_json(servable.resolve(version, match["label"])))
            if request.method != "POST":
                raise invalid(f"Malformed request: {request.method} {path}")
            target = servable.resolve(version, match["label"])
            body = await request.body()
            if api != "predict":
                raise invalid(
                    f"Expected {api} signature method_name to be tensorflow/serving/{api}. "
                    "Was: tensorflow/serving/predict"
                )
            parsed = json_tensor.parse_predict_request(body, target.input_dtypes)
            if batcher is not None:
                outputs = await batcher.submit(target, parsed.signature_name, parsed.inputs)
            else:
                outputs = await asyncio.to_thread(servable.run, target, parsed.signature_name, parsed.inputs)
            return _json(json_tensor.encode_predict_response(outputs, parsed.format))
        except ServingError as exc:
            return _error(exc)

    async def counted(request: Request) -> Response:
        started = time.perf_counter()
        match = MODEL_URL.match(request.url.path)
        api = "other" if match is None else match["verb"] or ("metadata" if match["metadata"] else "status")
        response = await dispatch(request, match, api)
        metrics.latency.labels(api).observe(time.perf_counter() - started)
        metrics.requests.labels(api, str(response.status_code)).inc()
        return response

    async def prometheus(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routes = []
    if monitoring_path:
        routes.append(Route(monitoring_path, prometheus, methods=["GET"]))
    routes.append(Route("/{path:path}", counted, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        for batcher in batchers:
            batcher.start()
        yield
        for batcher in batchers:
            await batcher.stop()

    return Starlette(routes=routes, lifespan=lifespan)
