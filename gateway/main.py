"""Builds the gateway app: lifespan (one pooled client per backend), middleware, error handlers, routers."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import logs
from gateway.admission import Admission
from gateway.backends.base import Backend
from gateway.body_limits import BodyLimitMiddleware
from gateway.errors import install_error_handlers
from gateway.fastpath import PredictFastPath, is_fast
from gateway.metrics import GatewayMetrics, MetricsMiddleware
from gateway.models import create_models
from gateway.routes import compare, health, metrics, models, predict
from gateway.schemas import PredictRequest
from gateway.settings import Settings


async def keep_versions_fresh(backends: list[Backend], settings: Settings) -> None:
    """The model versions the backends serve, re-read now and then so predictions never wait for them."""
    while True:
        await asyncio.sleep(settings.version_refresh_s)
        await asyncio.gather(*(b.refresh_version() for b in backends), return_exceptions=True)


class GatewayApp(FastAPI):
    """FastAPI, with the prediction POSTs taken before its own middleware stack (error and telemetry wrappers,
    its body limit, routing: about a tenth of the gateway's CPU at 64 rows) by `fast`, which gives them the
    gateway's metrics and body limits and the plain-ASGI handlers of gateway/fastpath.py. Everything else, and
    any other method on those paths, is FastAPI's: the same routes document them in the OpenAPI spec."""

    fast: ASGIApp

    async def slow(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and is_fast(scope["path"]):
            scope["app"] = self
            await self.fast(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logs.configure()
    gateway_metrics = GatewayMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.models = create_models(settings)
        app.state.backends = app.state.models[settings.model_name].backends  # the default model's
        every = [b for m in app.state.models.values() for b in m.backends.values()]
        # Learn the versions once before serving (bounded: a backend that is down must not hold the start-up).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(b.refresh_version() for b in every), return_exceptions=True),
                settings.readiness_timeout_s,
            )
        versions = asyncio.create_task(keep_versions_fresh(every, settings))
        log_start(app, settings)
        try:
            yield
        finally:
            logs.event("stopping")
            versions.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await versions
            for backend in every:
                await backend.aclose()

    app = GatewayApp(
        title="servecompare gateway",
        description="One front door to the same model on TensorFlow Serving and TorchServe.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = gateway_metrics
    app.state.readiness = {}  # backend name -> ready at the last check (routes/health.py logs the changes)
    app.state.admission = Admission(
        ["tf", "torch"], settings.concurrency_limit, settings.admission_wait_s, gateway_metrics
    )
    install_error_handlers(app)
    # Every other request: FastAPI's stack, with the same limits and metrics.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=gateway_metrics, access_log=settings.access_log)
    # The prediction POSTs: metrics -> body limits -> the plain-ASGI handlers, in front of FastAPI's stack.
    app.fast = MetricsMiddleware(
        BodyLimitMiddleware(PredictFastPath(app.slow), max_body_bytes=settings.max_body_bytes),
        gateway_metrics,
        access_log=settings.access_log,
    )
    for router in (predict.router, compare.router, models.router, health.router, metrics.router):
        app.include_router(router)
    _document_request_schema(app)
    return app


def log_start(app: FastAPI, settings: Settings) -> None:
    """The start-up line: what this gateway serves, from where, and within which limits."""
    logs.event(
        "started",
        version=app.version,
        pid=os.getpid(),
        backends={
            "tf": settings.tf_url,
            "torch": settings.torch_url,
            "torch_management": settings.torch_management_url,
        },
        tf_protocol=settings.tf_protocol,
        models={name: {"width": m.width, "classes": m.classes} for name, m in app.state.models.items()},
        default_model=settings.model_name,
        limits={
            "concurrency_per_backend": settings.concurrency_limit,
            "admission_wait_s": settings.admission_wait_s,
            "request_timeout_s": settings.request_timeout_s,
            "connect_timeout_s": settings.connect_timeout_s,
            "max_batch": settings.max_batch,
            "max_body_bytes": settings.max_body_bytes,
            "max_upstream_body_bytes": settings.max_upstream_body_bytes,
        },
        upstream_transport=settings.upstream_transport,
        access_log=settings.access_log,
    )


def _document_request_schema(app: FastAPI) -> None:
    """The predict routes read the raw body (validated against PredictRequest from bytes), so FastAPI does not see
    the model as a body parameter: put it into the OpenAPI components the routes' requestBody refers to."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            spec.setdefault("components", {}).setdefault("schemas", {})["PredictRequest"] = (
                PredictRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            )
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
