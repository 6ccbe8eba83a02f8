"""The interface every serving backend implements, and the HTTP error translation they share."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import orjson
from pydantic import AllowInfNan, BaseModel, Strict, TypeAdapter, ValidationError

from gateway.errors import BackendUnavailable, UpstreamError
from gateway.upstream import UpstreamClient


@dataclass(frozen=True)
class Prediction:
    predictions: list[list[float]]
    model_version: str
    upstream_ms: float


class Backend(Protocol):
    name: str
    model_name: str
    version: str  # the model version last known to serve; kept fresh by refresh_version() in the background

    async def predict(self, body: bytes, rows: int) -> Prediction:
        """`body`: a validated `{"instances": [...]}` request, forwarded as it came; `rows`: how many instances."""
        ...

    async def refresh_version(self) -> None: ...

    async def ready(self) -> tuple[bool, str]: ...

    async def metadata(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


MESSAGE_CHARS = 500  # of an upstream's error message passed on in the gateway's own


def upstream_message(body: bytes, status: int) -> str:
    try:
        doc = orjson.loads(body)
        if isinstance(doc, dict):
            text = str(doc.get("error") or doc.get("message") or doc)
            return text if len(text) <= MESSAGE_CHARS else f"{text[:MESSAGE_CHARS]}... ({len(text)} characters)"
    except orjson.JSONDecodeError:
        pass
    return body[:MESSAGE_CHARS].decode(errors="replace") or f"HTTP {status}"


def check_predictions(
    backend: str, predictions: Any, rows: int, n_classes: int, values_checked: bool = False
) -> list[list[float]]:
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
        if not values_checked and not all(type(v) in (int, float) and math.isfinite(v) for v in p):
            raise UpstreamError(
                f"backend '{backend}' returned malformed predictions: row {i} holds a value that is not a number",
                backend=backend,
            )
    return predictions


async def post_instances(
    client: UpstreamClient, backend: str, path: str, body: bytes, rows: int, n_classes: int
) -> tuple[list[list[float]], float]:
    """POST an already-valid `{"instances": ...}` body as it came and return (predictions, upstream ms); every way
    it can go wrong is mapped: unreachable or 503 -> 503, timeout -> 504, other status or a body that is not
    predictions -> 502."""
    watch = Stopwatch()
    status, answer = await client.post(path, body)
    elapsed = watch.ms
    if status == 503:
        raise BackendUnavailable(
            f"backend '{backend}' is unavailable: {upstream_message(answer, status)}", backend=backend
        )
    if status != 200:
        raise UpstreamError(
            f"backend '{backend}' answered {status}: {upstream_message(answer, status)}", backend=backend
        )
    checked = True
    try:  # the common case, validated in pydantic-core straight from the bytes: finite numbers, no booleans
        predictions: Any = _ANSWER.validate_json(answer).predictions
    except ValidationError:  # anything else takes the slow path below, which says what is wrong
        checked = False
        try:
            doc = orjson.loads(answer)
        except orjson.JSONDecodeError:
            doc = _lenient_json(answer, backend)  # TF Serving writes NaN/Infinity tokens, which strict JSON refuses
        predictions = doc.get("predictions") if isinstance(doc, dict) else None
    return check_predictions(backend, predictions, rows, n_classes, values_checked=checked), elapsed


class _Answer(BaseModel):
    predictions: list[list[Annotated[float, Strict(), AllowInfNan(False)]]]


_ANSWER = TypeAdapter(_Answer)


def _lenient_json(answer: bytes, backend: str) -> Any:
    import json

    try:
        return json.loads(answer)
    except ValueError as exc:
        raise UpstreamError(f"backend '{backend}' answered with invalid JSON", backend=backend) from exc


async def get_json(client: UpstreamClient, backend: str, path: str, timeout: float) -> Any:
    """A management/status call: the JSON answer of a 200, else UpstreamError (transport errors as mapped)."""
    status, body = await client.get(path, timeout)
    if status != 200:
        raise UpstreamError(f"{path} answered {status}: {upstream_message(body, status)}", backend=backend)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(f"{path} answered with invalid JSON", backend=backend) from exc


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000.0
