"""Dependencies named as Annotated types: the settings, the backends and the metrics live on app.state.

They are `async def` on purpose: FastAPI runs plain `def` dependencies in its thread pool, three thread hops
per request for what is an attribute lookup."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.backends.base import Backend
from gateway.metrics import GatewayMetrics


async def get_backends(request: Request) -> dict[str, Backend]:
    return request.app.state.backends


async def get_metrics(request: Request) -> GatewayMetrics:
    return request.app.state.metrics


BackendsDep = Annotated[dict[str, Backend], Depends(get_backends)]
MetricsDep = Annotated[GatewayMetrics, Depends(get_metrics)]
