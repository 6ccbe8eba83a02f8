"""Domain errors of the gateway, each with its HTTP status, all mapped to one body shape `{"error": ...}`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import logs


class GatewayError(Exception):
    status_code = 500

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class BadInput(GatewayError):
    """400: the request body is not a valid prediction request."""

    status_code = 400


class UnknownModel(GatewayError):
    """404: no registered model has this name; the message lists the ones there are."""

    status_code = 404


class PayloadTooLarge(GatewayError):
    """413: the body exceeds the configured size or the batch the configured row count."""

    status_code = 413


class UnsupportedMediaType(GatewayError):
    """415: the body is not declared as JSON."""

    status_code = 415


class UpstreamError(GatewayError):
    """502: the backend answered with an error or with something that is not a valid prediction."""

    status_code = 502


class BackendUnavailable(GatewayError):
    """503: the backend cannot be reached (connection refused or reset)."""

    status_code = 503


class GatewayOverloaded(GatewayError):
    """503 with Retry-After: the gateway's own limit of concurrent upstream requests was reached and no slot freed
    up within the admission wait. Not the backend's fault, and said so."""

    status_code = 503
    retry_after_s = 1


class BackendTimeout(GatewayError):
    """504: the backend did not answer within the configured timeout."""

    status_code = 504


def error_body(message: str, **extra: Any) -> dict[str, Any]:
    return {"error": message, **extra}


def log_answer(exc: GatewayError, path: str) -> None:
    """Every 5xx the gateway makes is logged (4xx are the client's, and in the access log when it is on)."""
    if exc.status_code >= 500:
        logs.event(
            "answered with an error",
            logging.ERROR if exc.status_code == 500 else logging.WARNING,
            status=exc.status_code,
            error=exc.message,
            error_type=type(exc).__name__,
            path=path,
            **exc.extra,
        )


def log_unexpected(exc: BaseException, path: str) -> None:
    logs.event("unexpected exception: answered 500", logging.ERROR, exc_info=exc, status=500, path=path)


class UnprocessableRequest(GatewayError):
    """422: well-formed JSON that is not a valid prediction request (width, ragged rows, non-numbers, bounds...)."""

    status_code = 422


def invalid_request(errors: Sequence[Any]) -> GatewayError:
    """pydantic's validation errors as the gateway's 400 (not JSON) or 422 (not a valid request), one message."""
    status, message = _format_validation(errors)
    return BadInput(message) if status == 400 else UnprocessableRequest(message)


def _format_validation(errors: Sequence[Any]) -> tuple[int, str]:
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        ctx = first.get("ctx") or {}
        return 400, f"invalid JSON body: {ctx.get('error', first.get('msg'))}"
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {e.get('msg')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return 422, "; ".join(parts) + more


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _domain(request: Request, exc: GatewayError) -> JSONResponse:
        log_answer(exc, request.url.path)
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, GatewayOverloaded) else None
        return JSONResponse(error_body(exc.message, **exc.extra), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _format_validation(exc.errors())
        return JSONResponse(error_body(message), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log_unexpected(exc, request.url.path)
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}"), status_code=500)
