"""POST /predict/{tf,torch} and POST /predict (routing policy, optional fail-over).

These routes document the API (OpenAPI: the PredictRequest body, the PredictResponse answer, the errors). Requests
to them are served by the ASGI fast path (gateway/fastpath.py) with the same handlers (gateway/service.py); the
FastAPI routes serve them only where the fast path is not installed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from gateway import service
from gateway.schemas import ERROR_RESPONSES, REQUEST_BODY_DOC, Backend, PredictResponse

router = APIRouter(prefix="/predict", tags=["predict"], responses=ERROR_RESPONSES)


@router.post(
    "",
    response_model=PredictResponse,
    summary="Predict on the backend the routing policy picks",
    openapi_extra=REQUEST_BODY_DOC,
)
async def predict(
    request: Request,
    x_backend: Annotated[str | None, Header(description="Override the routing policy: tf or torch")] = None,
) -> Response:
    body = await request.body()
    return service.json_response(await service.predict_routed(request.app.state, request.scope, body, x_backend))


@router.post(
    "/{backend}", response_model=PredictResponse, summary="Predict on one backend", openapi_extra=REQUEST_BODY_DOC
)
async def predict_on(backend: Backend, request: Request) -> Response:
    body = await request.body()
    return service.json_response(await service.predict_on(request.app.state, request.scope, body, backend))
