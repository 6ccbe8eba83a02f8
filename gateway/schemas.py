"""Request and response models of the gateway's own API."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
from pydantic import AllowInfNan, BaseModel, ConfigDict, Field, Strict, create_model

from stack.config import StackConfig

_cfg = StackConfig.load(environ=False)  # the gateway is configured by GATEWAY_* only (see settings.py)
_EXAMPLE_ROW = [
    0.0,
    0.0,
    0.3125,
    0.8125,
    0.5625,
    0.0625,
    0.0,
    0.0,
    0.0,
    0.0,
    0.8125,
    0.9375,
    0.625,
    0.9375,
    0.3125,
    0.0,
    0.0,
    0.1875,
    0.9375,
    0.125,
    0.0,
    0.6875,
    0.5,
    0.0,
    0.0,
    0.25,
    0.75,
    0.0,
    0.0,
    0.5,
    0.5,
    0.0,
    0.0,
    0.3125,
    0.5,
    0.0,
    0.0,
    0.5625,
    0.5,
    0.0,
    0.0,
    0.25,
    0.6875,
    0.0,
    0.0625,
    0.75,
    0.4375,
    0.0,
    0.0,
    0.125,
    0.875,
    0.3125,
    0.625,
    0.75,
    0.0,
    0.0,
    0.0,
    0.0,
    0.375,
    0.8125,
    0.625,
    0.0,
    0.0,
    0.0,
]  # fmt: skip  (the first digit of scikit-learn's digits, a 0, scaled to [0, 1])

# Finite and bounded: the servers compute in float32, and a bound far above any pixel intensity keeps every
# activation finite, so no client input can turn into a backend error.
FEATURE_ABS_MAX = 1e6
Feature = Annotated[float, Strict(), AllowInfNan(False), Field(ge=-FEATURE_ABS_MAX, le=FEATURE_ABS_MAX)]
Row = Annotated[list[Feature], Field(min_length=_cfg.n_features, max_length=_cfg.n_features)]
Backend = Literal["tf", "torch"]


class PredictRequest(BaseModel):
    """TF Serving's row format: one row of pixel intensities (scaled to [0, 1]) per instance."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"instances": [list(_EXAMPLE_ROW)]}]})  # type: ignore[list-item]

    instances: Annotated[list[Row], Field(min_length=1)]


def fast_request(width: int, name: str) -> type[msgspec.Struct]:
    """The same rules as PredictRequest for rows of `width` features, checked by msgspec (about a third cheaper at
    64 rows): the gateway's fast accept. It only ever accepts; anything it refuses goes through the pydantic schema,
    whose verdict and messages are the ones the client gets (gateway/service.py), so it can't change what is valid,
    only how fast. A property test holds the two to that: whatever this accepts, PredictRequest accepts with the
    same rows."""
    row = Annotated[
        list[Annotated[float, msgspec.Meta(ge=-FEATURE_ABS_MAX, le=FEATURE_ABS_MAX)]],
        msgspec.Meta(min_length=width, max_length=width),
    ]
    return msgspec.defstruct(
        name,
        [("instances", Annotated[list[row], msgspec.Meta(min_length=1)])],  # type: ignore[valid-type]
        forbid_unknown_fields=True,
    )


DEFAULT_WIDTH = _cfg.n_features  # the default model's (.env): PredictRequest's
FastPredictRequest = fast_request(DEFAULT_WIDTH, "FastPredictRequest")


@dataclass(frozen=True)
class RequestRules:
    """A model's request rules: msgspec's fast accept and pydantic's verdict and messages (gateway/service.py)."""

    width: int
    fast: msgspec.json.Decoder  # type: ignore[type-arg]
    schema: type[BaseModel]


@functools.cache
def request_rules(width: int) -> RequestRules:
    """The rules for rows of `width` features: PredictRequest itself for the default width (the documented schema),
    the same model with another row width for other registered models."""
    if width == DEFAULT_WIDTH:
        return RequestRules(width, msgspec.json.Decoder(FastPredictRequest), PredictRequest)
    row = Annotated[list[Feature], Field(min_length=width, max_length=width)]
    schema = create_model(
        f"PredictRequest{width}",
        __config__=ConfigDict(extra="forbid"),
        instances=(Annotated[list[row], Field(min_length=1)], ...),  # type: ignore[valid-type]
    )
    fast = fast_request(width, f"FastPredictRequest{width}")
    return RequestRules(width, msgspec.json.Decoder(fast), schema)


# The handlers read the raw body (validated against PredictRequest from bytes, gateway/service.py), so the request
# schema is documented here rather than derived from a body parameter.
REQUEST_BODY_DOC: dict[str, object] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
    }
}


class PredictResponse(BaseModel):
    backend: Backend
    model_name: str
    model_version: str
    predictions: list[list[float]]
    labels: list[int]
    upstream_ms: float


class CompareResponse(BaseModel):
    tf: PredictResponse
    torch: PredictResponse
    max_abs_diff: float
    labels_agree: bool


class ErrorResponse(BaseModel):
    error: str


class HealthResponse(BaseModel):
    status: str
    backends: dict[str, str] = {}


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Invalid JSON",
        413: "Body or batch too large",
        415: "Body is not JSON",
        422: "Well-formed JSON that is not a valid request",
        502: "The backend answered with an error",
        503: "The backend is unreachable",
        504: "The backend timed out",
    }.items()
}
