"""Builds the gateway app: lifespan (one pooled client per backend), middleware, error handlers, routers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from gateway.backends import tfserving, torchserve
from gateway.body_limits import BodyLimitMiddleware
from gateway.errors import install_error_handlers
from gateway.metrics import GatewayMetrics, MetricsMiddleware
from gateway.routes import compare, health, metrics, predict
from gateway.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    gateway_metrics = GatewayMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.backends = {"tf": tfserving.create(settings), "torch": torchserve.create(settings)}
        try:
            yield
        finally:
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
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=gateway_metrics)
    for router in (predict.router, compare.router, health.router, metrics.router):
        app.include_router(router)
    return app
