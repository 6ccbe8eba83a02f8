"""Liveness (no backend calls) and readiness (both backends report the model available)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway import logs
from gateway.deps import BackendsDep
from gateway.schemas import HealthResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, summary="Liveness: the gateway process answers")
async def healthz() -> HealthResponse:
    return HealthResponse(status="alive")


Require = Literal["all", "any", "tf", "torch"]


def log_changes(state: Any, now: dict[str, tuple[bool, str]]) -> None:
    """A line when a backend turns ready or unready (the first check counts as a change), never one a probe."""
    seen: dict[str, bool] = state.readiness
    for name, (ok, detail) in now.items():
        if seen.get(name) != ok:
            seen[name] = ok
            logs.event("backend ready" if ok else "backend not ready", backend=name, detail=detail)


@router.get(
    "/readyz",
    response_model=HealthResponse,
    summary="Readiness: the backends serve every model",
    description=(
        "`require=all` (default): both backends ready, what the native launcher and compose wait for. "
        "`require=any`: this gateway can serve (at least one backend ready), for a Kubernetes readinessProbe, "
        "so one backend down does not take the gateway, and the routes to the other, out of the Service. "
        "`require=tf|torch`: that backend. Every backend's state is in `backends` either way."
    ),
    responses={503: {"description": "Not ready in the sense asked for"}},
)
async def readyz(request: Request, backends: BackendsDep, require: Require = "all") -> JSONResponse:
    names = list(backends)
    models = request.app.state.models
    # A backend is ready when it serves every model of this gateway.
    pairs = [(n, m) for n in names for m in models]
    results = await asyncio.gather(*(models[m].backends[n].ready() for n, m in pairs))
    by_backend: dict[str, list[tuple[str, bool, str]]] = {n: [] for n in names}
    for (n, m), (ok, msg) in zip(pairs, results, strict=True):
        by_backend[n].append((m, ok, msg))
    detail = {
        n: entries[0][2] if len(entries) == 1 else "; ".join(f"{m}: {msg}" for m, _, msg in entries)
        for n, entries in by_backend.items()
    }
    ready = {n for n, entries in by_backend.items() if all(ok for _, ok, _ in entries)}
    log_changes(request.app.state, {n: (n in ready, detail[n]) for n in names})
    needed = names if require == "all" else [require] if require in names else []
    ok = bool(ready) if require == "any" else all(n in ready for n in needed)
    body = {"status": "ready" if ok else "not ready", "require": require, "backends": detail, "ready": sorted(ready)}
    if not ok:
        missing = [n for n in (names if require == "any" else needed) if n not in ready]
        body["error"] = "not ready: " + "; ".join(f"{n}: {detail[n]}" for n in missing)
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)
