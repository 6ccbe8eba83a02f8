"""The core of a prediction: the body validated once, one upstream call with admission and metrics, the answer
built as bytes.

The request body is validated straight from the bytes: a plain one (numbers with a point, no exponent) on its bytes
alone (gateway/plain_body.py), others by msgspec, which accepts the valid ones fast (`fast_request`), and
whatever it refuses is judged by pydantic-core against the `PredictRequest` model the docs show (its verdict,
its 400/413/422 messages). The body is then forwarded upstream as it came: it already is TF Serving's row format and
what the TorchServe handler reads. The backend's answer is validated by msgspec from its bytes
(gateway/backends/base.py), and its predictions go out as the backend wrote them (`Prediction.text`: the same
numbers); the answer is serialised once with orjson. No stdlib json, no second validation of the response model
on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import MutableMapping
from typing import Any

import msgspec
import orjson
from fastapi import Response
from pydantic import ValidationError

from gateway.admission import Admission
from gateway.backends.base import Backend, Prediction
from gateway.errors import (
    BackendTimeout,
    BackendUnavailable,
    BadInput,
    GatewayError,
    PayloadTooLarge,
    invalid_request,
)
from gateway.metrics import GatewayMetrics
from gateway.models import ServedModel, lookup
from gateway.plain_body import plain_rows
from gateway.routing import choose_backend, other
from gateway.schemas import DEFAULT_WIDTH, RequestRules, request_rules
from gateway.settings import Settings

JSON_MEDIA = "application/json"


def valid_rows(body: bytes, settings: Settings, rules: RequestRules | None = None) -> int:
    """The row count of a body known to be a valid prediction request for the model whose rules these are (the
    default model's by default), else 400/413/422."""
    rules = rules or request_rules(DEFAULT_WIDTH)
    rows = plain_rows(body, rules.width)  # a plain body, judged on its bytes alone (gateway/plain_body.py)
    if rows is None:
        rows = validated_rows(body, rules)
    if rows > settings.max_batch:
        raise PayloadTooLarge(f"batch of {rows} instances exceeds the limit of {settings.max_batch}")
    return rows


def validated_rows(body: bytes, rules: RequestRules) -> int:
    """The row count after the validators: msgspec's typed accept, else pydantic's verdict and messages."""
    if body.count(b'"instances"') != 1 or b"\\" in body:  # a valid body names it once, unescaped
        refuse_duplicate_keys(body)
    try:
        return len(rules.fast.decode(body).instances)
    except msgspec.DecodeError:  # (ValidationError is one) not necessarily invalid: the pydantic schema says
        try:
            return len(rules.schema.model_validate_json(body).instances)  # type: ignore[attr-defined]
        except ValidationError as exc:
            raise invalid_request(exc.errors()) from None


def refuse_duplicate_keys(body: bytes) -> None:
    """400 for a key given twice: TF Serving reads the first (RapidJSON's FindMember), the validators here the last,
    so `{"instances": [anything], "instances": [a valid row]}` would reach TF Serving unvalidated. Only bodies that
    could hold a duplicate get here (the key not exactly once, or an escape that could spell it another way)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                raise BadInput(f"duplicate key {key!r} in the JSON body: send each key once")
            seen.add(key)
        return dict(items)

    with contextlib.suppress(ValueError, RecursionError):  # not JSON: the validators say what is wrong
        json.loads(body, object_pairs_hook=pairs)


async def call_backend(
    backend: Backend, body: bytes, rows: int, metrics: GatewayMetrics, admission: Admission
) -> Prediction:
    """One upstream call within an admission slot, counted in the metrics."""
    try:
        async with admission.slot(backend.name):
            result = await backend.predict(body, rows)
    except GatewayError as exc:
        metrics.upstream_observe(backend.name, type(exc).__name__, 0.0)
        raise
    metrics.upstream_observe(backend.name, "ok", result.upstream_ms / 1000.0)
    return result


def answer_of(backend: Backend, result: Prediction) -> dict[str, Any]:
    """The gateway's answer for one backend (PredictResponse). The predictions go out as the backend wrote them
    where it could be checked that they are exactly the numbers validated (`Prediction.text`), else written anew."""
    predictions = result.predictions
    return {
        "backend": backend.name,
        "model_name": backend.model_name,
        "model_version": result.model_version,
        "predictions": predictions if result.text is None else orjson.Fragment(result.text),
        "labels": [p.index(max(p)) for p in predictions],  # the first of equal maxima, as argmax
        "upstream_ms": round(result.upstream_ms, 3),
    }


async def predict_with(
    backend: Backend, body: bytes, rows: int, metrics: GatewayMetrics, admission: Admission
) -> dict[str, Any]:
    return answer_of(backend, await call_backend(backend, body, rows, metrics, admission))


# ---- the three prediction routes, shared by the ASGI fast path (gateway/fastpath.py) and the FastAPI routes -------
def _label(scope: MutableMapping[str, Any], backend: str) -> None:
    scope.setdefault("state", {})["backend"] = backend  # read by MetricsMiddleware


def model_of(state: Any, name: str | None) -> ServedModel:
    """The named model (404 when not served), or the default one."""
    return lookup(state.models, name) if name is not None else state.models[state.settings.model_name]


async def predict_on(
    state: Any, scope: MutableMapping[str, Any], body: bytes, backend: str, model: str | None = None
) -> dict[str, Any]:
    served = model_of(state, model)
    rows = valid_rows(body, state.settings, served.rules)
    _label(scope, backend)
    return await predict_with(served.backends[backend], body, rows, state.metrics, state.admission)


async def predict_routed(
    state: Any, scope: MutableMapping[str, Any], body: bytes, x_backend: str | None, model: str | None = None
) -> dict[str, Any]:
    served = model_of(state, model)
    rows = valid_rows(body, state.settings, served.rules)
    name = choose_backend(state.settings, x_backend)
    _label(scope, name)
    try:
        return await predict_with(served.backends[name], body, rows, state.metrics, state.admission)
    except (BackendUnavailable, BackendTimeout):
        if not state.settings.failover or x_backend:
            raise
        fallback = other(name)
        _label(scope, fallback)
        return await predict_with(served.backends[fallback], body, rows, state.metrics, state.admission)


async def compare(state: Any, scope: MutableMapping[str, Any], body: bytes, model: str | None = None) -> dict[str, Any]:
    served = model_of(state, model)
    rows = valid_rows(body, state.settings, served.rules)
    backends = [served.backends[name] for name in ("tf", "torch")]
    calls = [
        asyncio.ensure_future(call_backend(backend, body, rows, state.metrics, state.admission)) for backend in backends
    ]
    try:
        tf, torch = await asyncio.gather(*calls)
    except BaseException:  # one side failed (or the client left): the other's answer is no use, its slot is
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        raise
    # Both answers were checked to have the same shape (rows x n_classes) before they got here.
    pairs = zip(tf.predictions, torch.predictions, strict=True)
    diff = max((abs(a - b) for pa, pb in pairs for a, b in zip(pa, pb, strict=True)), default=0.0)
    tf_answer, torch_answer = answer_of(backends[0], tf), answer_of(backends[1], torch)
    return {
        "tf": tf_answer,
        "torch": torch_answer,
        "max_abs_diff": diff,
        "labels_agree": tf_answer["labels"] == torch_answer["labels"],
    }


def json_response(content: Any) -> Response:
    return Response(orjson.dumps(content), media_type=JSON_MEDIA)
