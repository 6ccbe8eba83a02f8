"""The interface every serving backend implements, and the HTTP error translation they share."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import msgspec
import orjson

from gateway.errors import BackendUnavailable, UpstreamError
from gateway.upstream import UpstreamClient


@dataclass(frozen=True)
class Prediction:
    predictions: list[list[float]]
    model_version: str
    upstream_ms: float
    # The predictions as the backend wrote them (checked: the same numbers as `predictions`), passed on in the
    # gateway's answer without writing 640 floats again; None where there is no such text (gRPC, odd answers).
    text: bytes | None = None


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
        if not values_checked and not all(map(_finite_number, p)):
            raise UpstreamError(
                f"backend '{backend}' returned malformed predictions: row {i} holds a value that is not a number",
                backend=backend,
            )
    return predictions


async def post_instances(
    client: UpstreamClient, backend: str, path: str, body: bytes, rows: int, n_classes: int
) -> tuple[list[list[float]], float, bytes | None]:
    """POST an already-valid `{"instances": ...}` body as it came and return (predictions, upstream ms, their
    text: see `predictions_text`); every way it can go wrong is mapped: unreachable or 503 -> 503, timeout -> 504,
    other status or a body that is not predictions -> 502."""
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
    try:  # the common case, validated by msgspec straight from the bytes: finite numbers, no booleans
        predictions: Any = _ANSWER.decode(answer).predictions
    except msgspec.DecodeError:  # (ValidationError is one) anything else takes the slow path, which says what is wrong
        try:
            doc = orjson.loads(answer)
        except orjson.JSONDecodeError:
            doc = _lenient_json(answer, backend)  # TF Serving writes NaN/Infinity tokens, which strict JSON refuses
        predictions = doc.get("predictions") if isinstance(doc, dict) else None
        checked = check_predictions(backend, predictions, rows, n_classes)
        # As floats, as the fast path has them: orjson writes no int past 64 bits, and json.loads keeps 1e300
        # written as digits an int.
        return [[float(v) for v in row] for row in checked], elapsed, None
    checked = check_predictions(backend, predictions, rows, n_classes, values_checked=True)
    return checked, elapsed, predictions_text(answer)


def predictions_text(answer: bytes) -> bytes | None:
    """The predictions array as written in an answer that msgspec decoded (so well-formed JSON whose predictions
    are finite numbers): the value of `{"predictions": VALUE}` when that is the answer's only key. Another key, or
    the key twice, puts a string into the slice (numbers hold no quotes): None, and the floats are written instead."""
    text = answer[answer.find(b":") + 1 : answer.rfind(b"}")].strip()
    return None if b'"' in text else text


_FINITE = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]  # ints taken, not bools;
# 1e999 is refused (out of range), as are NaN/Infinity tokens (not JSON): the slow path says what is wrong.


class _Answer(msgspec.Struct):
    predictions: list[list[_FINITE]]


_ANSWER = msgspec.json.Decoder(_Answer)  # other keys ignored, as by the slow path


def _finite_number(v: object) -> bool:
    """A float that is finite, or an int a float can hold (json.loads reads 1e400 written as digits as an int, on
    which math.isfinite would raise OverflowError)."""
    if type(v) is float:
        return math.isfinite(v)
    return type(v) is int and -sys.float_info.max <= v <= sys.float_info.max


def _lenient_json(answer: bytes, backend: str) -> Any:
    import json

    try:
        return json.loads(answer)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the interpreter's stack
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
