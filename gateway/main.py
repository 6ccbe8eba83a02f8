"""Builds the gateway app: lifespan (one pooled client per backend), middleware, error handlers, routers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from gateway.admission import Admission
from gateway.backends import tfserving, torchserve
from gateway.backends.base import Backend
from gateway.body_limits import BodyLimitMiddleware
from gateway.errors import install_error_handlers
from gateway.fastpath import PredictFastPath
from gateway.metrics import GatewayMetrics, MetricsMiddleware
from gateway.routes import compare, health, metrics, predict
from gateway.schemas import PredictRequest
from gateway.settings import Settings


async def keep_versions_fresh(backends: list[Backend], settings: Settings) -> None:
    """The model versions the backends serve, re-read now and then so predictions never wait for them."""
    while True:
        await asyncio.sleep(settings.version_refresh_s)
        await asyncio.gather(*(b.refresh_version() for b in backends), return_exceptions=True)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    gateway_metrics = GatewayMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.backends = {"tf": tfserving.create(settings), "torch": torchserve.create(settings)}
        # Learn the versions once before serving (bounded: a backend that is down must not hold the start-up).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(b.refresh_version() for b in app.state.backends.values()), return_exceptions=True),
                settings.readiness_timeout_s,
            )
        versions = asyncio.create_task(keep_versions_fresh(list(app.state.backends.values()), settings))
        try:
            yield
        finally:
            versions.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await versions
            for backend in app.state.backends.values():
                await backend.aclose()

    app = FastAPI(
        title="servecompare gateway",
        description="One front door to the same model on TensorFlow Serving and TorchServe.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = gateway_metrics
    app.state.admission = Admission(
        ["tf", "torch"], settings.concurrency_limit, settings.admission_wait_s, gateway_metrics
    )
    install_error_handlers(app)
    app.add_middleware(PredictFastPath)  # innermost of the three: limits and metrics apply to it
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=gateway_metrics)
    for router in (predict.router, compare.router, health.router, metrics.router):
        app.include_router(router)
    _document_request_schema(app)
    return app


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
