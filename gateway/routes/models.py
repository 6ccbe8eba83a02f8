"""The registry's models under /models/{model}/...: the same predictions as /predict, /predict/{backend} and
/compare (which serve the default model), for any model this gateway serves; GET /models lists them.

Like the default routes, the POSTs are served by the ASGI fast path (gateway/fastpath.py); these document them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response

from gateway import service
from gateway.schemas import ERROR_RESPONSES, REQUEST_BODY_DOC, Backend, CompareResponse, PredictResponse

router = APIRouter(prefix="/models", tags=["models"], responses=ERROR_RESPONSES)
UNKNOWN: dict[int | str, dict[str, Any]] = {404: {"description": "No such model here (the message lists them)"}}


@router.get("", summary="The models this gateway serves (the first is the default of /predict)")
async def list_models(request: Request) -> dict[str, Any]:
    models = request.app.state.models
    return {
        "default": request.app.state.settings.model_name,
        "models": [{"name": m.name, "width": m.width, "classes": m.classes} for m in models.values()],
    }


@router.post(
    "/{model}/predict",
    response_model=PredictResponse,
    summary="Predict with this model on the backend the routing policy picks",
    openapi_extra=REQUEST_BODY_DOC,
    responses=UNKNOWN,
)
async def predict(
    model: str,
    request: Request,
    x_backend: Annotated[str | None, Header(description="Override the routing policy: tf or torch")] = None,
) -> Response:
    body = await request.body()
    answer = await service.predict_routed(request.app.state, request.scope, body, x_backend, model)
    return service.json_response(answer)


@router.post(
    "/{model}/predict/{backend}",
    response_model=PredictResponse,
    summary="Predict with this model on one backend",
    openapi_extra=REQUEST_BODY_DOC,
    responses=UNKNOWN,
)
async def predict_on(model: str, backend: Backend, request: Request) -> Response:
    body = await request.body()
    return service.json_response(await service.predict_on(request.app.state, request.scope, body, backend, model))


@router.post(
    "/{model}/compare",
    response_model=CompareResponse,
    summary="Predict with this model on both backends and compare",
    openapi_extra=REQUEST_BODY_DOC,
    responses=UNKNOWN,
)
async def compare(model: str, request: Request) -> Response:
    body = await request.body()
    return service.json_response(await service.compare(request.app.state, request.scope, body, model))
