"""POST /predict/{tf,torch} and POST /predict (routing policy, optional fail-over)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request

from gateway.deps import AdmissionDep, BackendsDep, MetricsDep, SettingsDep
from gateway.errors import BackendTimeout, BackendUnavailable
from gateway.routing import choose_backend, other
from gateway.schemas import ERROR_RESPONSES, Backend, PredictRequest, PredictResponse
from gateway.service import check_batch, predict_with

router = APIRouter(prefix="/predict", tags=["predict"], responses=ERROR_RESPONSES)


@router.post("", response_model=PredictResponse, summary="Predict on the backend the routing policy picks")
async def predict(
    body: PredictRequest,
    request: Request,
    settings: SettingsDep,
    backends: BackendsDep,
    metrics: MetricsDep,
    admission: AdmissionDep,
    x_backend: Annotated[str | None, Header(description="Override the routing policy: tf or torch")] = None,
) -> PredictResponse:
    check_batch(body.instances, settings)
    name = choose_backend(settings, x_backend)
    request.scope.setdefault("state", {})["backend"] = name
    try:
        return await predict_with(backends[name], body.instances, metrics, admission)
    except (BackendUnavailable, BackendTimeout):
        if not settings.failover or x_backend:
            raise
        fallback = other(name)
        request.scope["state"]["backend"] = fallback
        return await predict_with(backends[fallback], body.instances, metrics, admission)


@router.post("/{backend}", response_model=PredictResponse, summary="Predict on one backend")
async def predict_on(
    backend: Backend,
    body: PredictRequest,
    request: Request,
    settings: SettingsDep,
    backends: BackendsDep,
    metrics: MetricsDep,
    admission: AdmissionDep,
) -> PredictResponse:
    check_batch(body.instances, settings)
    request.scope.setdefault("state", {})["backend"] = backend
    return await predict_with(backends[backend], body.instances, metrics, admission)
