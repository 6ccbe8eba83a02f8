"""Liveness (no backend calls) and readiness (both backends report the model available)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gateway.deps import BackendsDep
from gateway.schemas import HealthResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, summary="Liveness: the gateway process answers")
async def healthz() -> HealthResponse:
    return HealthResponse(status="alive")


@router.get(
    "/readyz",
    response_model=HealthResponse,
    summary="Readiness: both backends serve the model",
    responses={503: {"description": "A backend is not ready"}},
)
async def readyz(backends: BackendsDep) -> JSONResponse:
    names = list(backends)
    results = await asyncio.gather(*(backends[n].ready() for n in names))
    detail = {n: msg for n, (_, msg) in zip(names, results, strict=True)}
    not_ready = [n for n, (ok, _) in zip(names, results, strict=True) if not ok]
    if not_ready:
        message = "not ready: " + "; ".join(f"{n}: {detail[n]}" for n in not_ready)
        return JSONResponse({"error": message, "status": "not ready", "backends": detail}, status_code=503)
    return JSONResponse({"status": "ready", "backends": detail})
