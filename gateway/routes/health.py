"""Liveness (no backend calls) and readiness (both backends report the model available)."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gateway.deps import BackendsDep
from gateway.schemas import HealthResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, summary="Liveness: the gateway process answers")
async def healthz() -> HealthResponse:
    return HealthResponse(status="alive")


Require = Literal["all", "any", "tf", "torch"]


@router.get(
    "/readyz",
    response_model=HealthResponse,
    summary="Readiness: the backends serve the model",
    description=(
        "`require=all` (default): both backends ready, what the native launcher and compose wait for. "
        "`require=any`: this gateway can serve (at least one backend ready), for a Kubernetes readinessProbe, "
        "so one backend down does not take the gateway, and the routes to the other, out of the Service. "
        "`require=tf|torch`: that backend. Every backend's state is in `backends` either way."
    ),
    responses={503: {"description": "Not ready in the sense asked for"}},
)
async def readyz(backends: BackendsDep, require: Require = "all") -> JSONResponse:
    names = list(backends)
    results = await asyncio.gather(*(backends[n].ready() for n in names))
    detail = {n: msg for n, (_, msg) in zip(names, results, strict=True)}
    ready = {n for n, (ok, _) in zip(names, results, strict=True) if ok}
    needed = names if require == "all" else [require] if require in names else []
    ok = bool(ready) if require == "any" else all(n in ready for n in needed)
    body = {"status": "ready" if ok else "not ready", "require": require, "backends": detail, "ready": sorted(ready)}
    if not ok:
        missing = [n for n in (names if require == "any" else needed) if n not in ready]
        body["error"] = "not ready: " + "; ".join(f"{n}: {detail[n]}" for n in missing)
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)
