"""The interface every serving backend implements, and the HTTP error translation they share."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from gateway.errors import BackendTimeout, BackendUnavailable, UpstreamError


@dataclass(frozen=True)
class Prediction:
    predictions: list[list[float]]
    model_version: str
    upstream_ms: float


class Backend(Protocol):
    name: str
    model_name: str
    version: str  # the model version last known to serve; kept fresh by refresh_version() in the background

    async def predict(self, instances: list[list[float]]) -> Prediction: ...

    async def refresh_version(self) -> None: ...

    async def ready(self) -> tuple[bool, str]: ...

    async def metadata(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


def new_client(base_url: str, settings: Any, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """One pooled client per backend, created once in the app's lifespan."""
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_keepalive_connections,
    )
    transport: httpx.AsyncBaseTransport | None = None
    if settings.upstream_transport == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(limits=limits, trust_env=False)
    return httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s),
        limits=limits,
        transport=transport,
        trust_env=False,
    )


@contextlib.contextmanager
def upstream_errors(backend: str) -> Iterator[None]:
    """Connection failures -> 503, timeouts -> 504, anything else from the transport -> 502."""
    try:
        yield
    except httpx.TimeoutException as exc:
        if _not_a_timeout(exc):
            raise BackendUnavailable(f"backend '{backend}' is unreachable: {exc.__cause__}", backend=backend) from exc
        kind = "connect" if isinstance(exc, httpx.ConnectTimeout) else "read"
        raise BackendTimeout(f"backend '{backend}' timed out ({kind})", backend=backend) from exc
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        raise BackendUnavailable(
            f"backend '{backend}' is unreachable: {exc or type(exc).__name__}", backend=backend
        ) from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"backend '{backend}' failed: {exc}", backend=backend) from exc


def _not_a_timeout(exc: httpx.TimeoutException) -> bool:
    """httpx-aiohttp reports every aiohttp connection error, a refused connection too, as ConnectTimeout;
    the aiohttp error it chains says what really happened."""
    cause = exc.__cause__
    if cause is None or type(cause).__module__.split(".")[0] != "aiohttp":
        return False
    return not isinstance(cause, TimeoutError)


def upstream_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict):
            return str(body.get("error") or body.get("message") or body)
    except ValueError:
        pass
    return response.text[:500] or response.reason_phrase


def check_predictions(backend: str, predictions: Any, rows: int, n_classes: int) -> list[list[float]]:
    """A backend's answer must be `rows` rows of `n_classes` finite numbers (booleans are not numbers); anything
    else is a bad gateway (502), never a success and never an internal error further down."""
    if not isinstance(predictions, list) or len(predictions) != rows:
        got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
        raise UpstreamError(
            f"backend '{backend}' returned malformed predictions: {got} rows for {rows}", backend=backend
        )
    for i, p in enumerate(predictions):
        if not isinstance(p, list) or len(p) != n_classes:
            got = len(p) if isinstance(p, list) else type(p).__name__
            raise UpstreamError(
                f"backend '{backend}' returned malformed predictions: row {i} has {got} values, expected {n_classes}",
                backend=backend,
            )
        if not all(type(v) in (int, float) and math.isfinite(v) for v in p):
            raise UpstreamError(
                f"backend '{backend}' returned malformed predictions: row {i} holds a value that is not a number",
                backend=backend,
            )
    return predictions


async def post_instances(
    client: httpx.AsyncClient, backend: str, path: str, instances: list[list[float]], n_classes: int
) -> tuple[list[list[float]], float]:
    """POST `{"instances": ...}` and return (predictions, upstream ms); every way it can go wrong is mapped:
    unreachable or 503 -> 503, timeout -> 504, other status or a body that is not predictions -> 502."""
    watch = Stopwatch()
    with upstream_errors(backend):
        response = await client.post(path, json={"instances": instances})
    elapsed = watch.ms
    if response.status_code == 503:
        raise BackendUnavailable(f"backend '{backend}' is unavailable: {upstream_message(response)}", backend=backend)
    if response.status_code != 200:
        raise UpstreamError(
            f"backend '{backend}' answered {response.status_code}: {upstream_message(response)}", backend=backend
        )
    try:
        body = response.json()
    except ValueError as exc:
        raise UpstreamError(f"backend '{backend}' answered with invalid JSON", backend=backend) from exc
    predictions = body.get("predictions") if isinstance(body, dict) else None
    return check_predictions(backend, predictions, len(instances), n_classes), elapsed


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000.0
