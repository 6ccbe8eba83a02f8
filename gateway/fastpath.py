"""The prediction routes as plain ASGI: the same handlers as the FastAPI routes (gateway/service.py), without
FastAPI's routing, dependency solving, Request/Response objects and exception middleware on the hot path.

Installed in front of FastAPI (gateway/main.py `GatewayApp`), inside the body-limit middleware (so content type
and size are already checked, the body buffered) and the metrics middleware (so these requests are counted like
any other). Everything else, and any path it does not know exactly, goes on to FastAPI. Errors have the gateway's
one shape, `{"error": ...}`, with the same statuses.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import service
from gateway.errors import GatewayError, GatewayOverloaded, error_body, log_answer, log_unexpected

_JSON = (b"content-type", b"application/json")
FAST_PATHS = frozenset({"/predict/tf", "/predict/torch", "/predict", "/compare"})  # also under /models/{name}


def is_fast(path: str) -> bool:
    return route_of(path)[1] in FAST_PATHS


def _handler(path: str) -> Any:
    """The handler for a route, taking (state, scope, body, model); model None is the default model."""
    if path == "/predict/tf":
        return lambda state, scope, body, model: service.predict_on(state, scope, body, "tf", model)
    if path == "/predict/torch":
        return lambda state, scope, body, model: service.predict_on(state, scope, body, "torch", model)
    if path == "/predict":
        return lambda state, scope, body, model: service.predict_routed(
            state, scope, body, _header(scope, b"x-backend"), model
        )
    if path == "/compare":
        return service.compare
    return None


def route_of(path: str) -> tuple[str | None, str]:
    """`/models/{name}/predict/tf` -> ("name", "/predict/tf"); any other path -> (None, path)."""
    if path.startswith("/models/"):
        name, sep, rest = path[len("/models/") :].partition("/")
        if sep and name:
            return name, "/" + rest
    return None, path


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class PredictFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._routes = {p: _handler(p) for p in FAST_PATHS}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        model, route = route_of(scope["path"])
        handler = self._routes.get(route) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:  # the body-limit middleware has buffered it: one message
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        headers = [_JSON]
        try:
            payload = orjson.dumps(await handler(scope["app"].state, scope, b"".join(chunks), model))
            status = 200
        except GatewayError as exc:
            payload, status = orjson.dumps(error_body(exc.message, **exc.extra)), exc.status_code
            if isinstance(exc, GatewayOverloaded):
                headers.append((b"retry-after", str(exc.retry_after_s).encode()))
            log_answer(exc, scope["path"])
        except Exception as exc:
            payload, status = orjson.dumps(error_body(f"internal error: {type(exc).__name__}")), 500
            log_unexpected(exc, scope["path"])
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
