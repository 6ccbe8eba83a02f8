"""Dependencies named as Annotated types: the settings, the backends and the metrics live on app.state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.backends.base import Backend
from gateway.metrics import GatewayMetrics
from gateway.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_backends(request: Request) -> dict[str, Backend]:
    return request.app.state.backends


def get_metrics(request: Request) -> GatewayMetrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
BackendsDep = Annotated[dict[str, Backend], Depends(get_backends)]
MetricsDep = Annotated[GatewayMetrics, Depends(get_metrics)]
