"""POST /compare: the same input to both backends at once; both answers and how far apart they are.

Served by the ASGI fast path (gateway/fastpath.py) with the same handler; this route documents it."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway import service
from gateway.schemas import ERROR_RESPONSES, REQUEST_BODY_DOC, CompareResponse

router = APIRouter(tags=["compare"], responses=ERROR_RESPONSES)


@router.post(
    "/compare",
    response_model=CompareResponse,
    summary="Predict on both backends and compare",
    openapi_extra=REQUEST_BODY_DOC,
)
async def compare(request: Request) -> Response:
    body = await request.body()
    return service.json_response(await service.compare(request.app.state, request.scope, body))
