"""The gateway's fast accept (msgspec) may only ever accept what the documented PredictRequest (pydantic) accepts,
with the same rows; everything else goes to pydantic, whose verdict and messages the client gets."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.schemas import FEATURE_ABS_MAX, FastPredictRequest, PredictRequest
from gateway.service import valid_rows
from gateway.settings import Settings
from stack.config import StackConfig

N = StackConfig.load().n_features
FAST = msgspec.json.Decoder(FastPredictRequest)

edge_numbers = st.sampled_from(
    [0, -0.0, 1, -1, FEATURE_ABS_MAX, -FEATURE_ABS_MAX, 1000000, -1000000, 1000001, 1e6 + 0.5, 2**63, 2**64, 10**30]
)
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.floats(min_value=-2e6, max_value=2e6),
    st.integers(min_value=-(2**70), max_value=2**70),
    edge_numbers,
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
valid_row = st.lists(st.floats(-1, 1), min_size=N, max_size=N)


@st.composite
def rows(draw: st.DrawFn) -> object:
    """Mostly a valid row with one value replaced (an out-of-range or mistyped value must be the only flaw to
    be found), sometimes a row of the wrong width or not a row."""
    kind = draw(st.integers(0, 9))
    if kind <= 6:
        row = draw(valid_row)
        row[draw(st.integers(0, N - 1))] = draw(values)
        return row
    if kind <= 8:
        return draw(st.lists(st.floats(-10, 10), min_size=N - 1, max_size=N + 1))
    return draw(values)


docs = st.one_of(
    st.fixed_dictionaries({"instances": st.lists(rows(), max_size=3)}),
    st.fixed_dictionaries({"instances": st.lists(rows(), max_size=2)}, optional={"extra": values}),
    st.lists(rows(), max_size=2),
    values,
)


def pydantic_rows(body: bytes) -> int | None:
    try:
        return len(PredictRequest.model_validate_json(body).instances)
    except ValidationError:
        return None


def fast_rows(body: bytes) -> int | None:
    try:
        return len(FAST.decode(body).instances)
    except msgspec.DecodeError:
        return None


@settings(max_examples=400, deadline=None)
@given(docs)
def test_fast_accept_never_accepts_what_the_schema_refuses(doc: object) -> None:
    body = json.dumps(doc).encode()
    fast = fast_rows(body)
    if fast is not None:
        assert pydantic_rows(body) == fast, body[:300]


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances": [[' + b",".join([b"1e400"] * N) + b"]]}",  # overflows to inf
        b'{"instances": [[' + b",".join([b"NaN"] * N) + b"]]}",
        b'{"instances": [[' + b",".join([b"1e6"] * N) + b"]]}\n",
        b'{"instances": [[' + b",".join([b"1"] * N) + b']], "instances": []}',  # duplicate key
        b'\xef\xbb\xbf{"instances": [[' + b",".join([b"0"] * N) + b"]]}",  # BOM
        b'{"instances": [[' + b",".join([b"0"] * N) + b"]]} []",  # trailing data
        b'{"instances": [[' + b",".join([b"true"] * N) + b"]]}",
        # just beyond the bound, each the only flaw of its body
        b'{"instances": [[1000001' + b",0" * (N - 1) + b"]]}",
        b'{"instances": [[1000000.5' + b",0" * (N - 1) + b"]]}",
        b'{"instances": [[0' + b",0" * (N - 2) + b",-1000001]]}",
        b'{"instances": [[0' + b",0" * (N - 1) + b"]], " + b'"extra": 1}',
    ],
)
def test_fast_accept_on_raw_edge_cases(body: bytes) -> None:
    fast = fast_rows(body)
    if fast is not None:
        assert pydantic_rows(body) == fast


def test_valid_rows_still_answers_with_the_schemas_messages() -> None:
    from gateway.errors import GatewayError

    body = json.dumps({"instances": [[0.5] * (N - 1)]}).encode()
    with pytest.raises(GatewayError) as err:
        valid_rows(body, Settings())
    assert err.value.status_code == 422 and "at least" in str(err.value.extra or err.value.message)
    assert valid_rows(json.dumps({"instances": [[0.5] * N] * 3}).encode(), Settings()) == 3


features = st.one_of(
    st.floats(-FEATURE_ABS_MAX, FEATURE_ABS_MAX, allow_nan=False, allow_infinity=False),
    st.integers(-int(FEATURE_ABS_MAX), int(FEATURE_ABS_MAX)),
    st.sampled_from([FEATURE_ABS_MAX, -FEATURE_ABS_MAX, 0.0, -0.0]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(features, min_size=N, max_size=N), min_size=1, max_size=4))
def test_fast_accept_takes_every_plain_valid_body(rows: list[list[float]]) -> None:
    """The other side: a fast path that accepts nothing would pass the test above. Every plain valid body (only
    "instances", rows of the width, numbers within the bound) is taken by the fast path, with its rows."""
    body = json.dumps({"instances": rows}).encode()
    assert fast_rows(body) == len(rows) == pydantic_rows(body)


@pytest.mark.parametrize("width", [3, N, N + 5])
def test_each_models_fast_accept_takes_its_width_exactly(width: int) -> None:
    from gateway.schemas import request_rules

    rules = request_rules(width)
    assert rules.width == width
    for n, taken in [(width - 1, False), (width, True), (width + 1, False)]:
        body = json.dumps({"instances": [[0.5] * n, [1] * n]}).encode()
        try:
            got: int | None = len(rules.fast.decode(body).instances)
        except msgspec.DecodeError:
            got = None
        assert got == (2 if taken else None), (width, n)
        schema_ok = True
        try:
            rules.schema.model_validate_json(body)
        except ValidationError:
            schema_ok = False
        assert schema_ok is taken, (width, n)


def test_a_fast_accept_built_for_a_width_holds_every_rule() -> None:
    """fast_request itself, built here (the default model's is built at import): bounds on both sides, one row at
    least, no field but instances."""
    from gateway.schemas import fast_request

    decoder = msgspec.json.Decoder(fast_request(2, "FastPredictRequestTest"))

    def taken(doc: object) -> bool:
        try:
            decoder.decode(json.dumps(doc).encode())
        except msgspec.DecodeError:
            return False
        return True

    assert taken({"instances": [[FEATURE_ABS_MAX, -FEATURE_ABS_MAX]]})
    assert taken({"instances": [[0, 1]]})
    assert not taken({"instances": [[FEATURE_ABS_MAX * 1.5, 0]]})
    assert not taken({"instances": [[0, -FEATURE_ABS_MAX * 1.5]]})
    assert not taken({"instances": []})
    assert not taken({"instances": [[0, 1]], "extra": 1})
