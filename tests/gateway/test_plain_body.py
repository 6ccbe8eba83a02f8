"""The plain-body accept (gateway/plain_body.py) judges a body on its bytes alone: it may only ever accept what the
documented PredictRequest (pydantic) accepts, with the same rows, and every other body still gets the validators'
verdict (400/413/422). The other side: the bodies clients send (json.dumps of floats) take it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.errors import GatewayError
from gateway.plain_body import plain_rows
from gateway.schemas import PredictRequest, request_rules
from gateway.service import valid_rows
from gateway.settings import Settings
from loadtest.payloads import payloads
from stack.config import StackConfig
from tests.gateway.stub_http import StubBackend
from tests.gateway.test_error_paths import PROBS, TF_PREDICT, TS_PREDICT, _json, gateway

N = StackConfig.load().n_features


def pydantic_rows(body: bytes) -> int | None:
    try:
        return len(PredictRequest.model_validate_json(body).instances)
    except ValidationError:
        return None


def body_of(rows: list[list[float]], sep: str = ", ") -> bytes:
    return ('{"instances": [' + sep.join("[" + sep.join(repr(v) for v in r) + "]" for r in rows) + "]}").encode()


plain_values = st.floats(-999_999.0, 999_999.0, allow_nan=False).filter(lambda v: "e" not in repr(v))
plain_bodies = st.lists(st.lists(plain_values, min_size=N, max_size=N), min_size=1, max_size=3)


@settings(max_examples=200, deadline=None)
@given(plain_bodies, st.sampled_from([", ", ",", " , ", ",\n\t"]))
def test_plain_valid_bodies_take_it_with_their_rows(rows: list[list[float]], sep: str) -> None:
    body = body_of(rows, sep)
    assert plain_rows(body, N) == len(rows) == pydantic_rows(body)


def test_the_load_tests_bodies_take_it() -> None:
    for n in (1, 64):
        body = payloads(n)[0].body
        assert plain_rows(body, N) == n == valid_rows(body, Settings())


# One byte inserted or replaced anywhere in a valid plain body: whatever plain_rows still takes, pydantic takes.
SMALL = [0.0, 0.5, -1.25, 999999.9, 16.0]
NOISE = [*b'0123456789.,-+[]{}":eE \t\n\\tfnaINu', 0, 0xA0, 0xEF]


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(SMALL), min_size=3, max_size=3), min_size=1, max_size=2),
    st.lists(st.tuples(st.integers(0, 200), st.sampled_from(NOISE), st.booleans()), min_size=1, max_size=3),
)
def test_it_never_accepts_what_the_schema_refuses(rows: list[list[float]], edits: list[tuple[int, int, bool]]) -> None:
    body = bytearray(body_of(rows))
    for at, byte, insert in edits:
        at %= len(body) + 1
        if insert or at == len(body):
            body.insert(at, byte)
        else:
            body[at] = byte
    got = plain_rows(bytes(body), 3)
    if got is not None:
        schema = request_rules(3).schema
        assert len(schema.model_validate_json(bytes(body)).instances) == got, bytes(body)  # type: ignore[attr-defined]


ROW = [0.5] * N


def text(row: list[str]) -> str:
    return "[" + ", ".join(row) + "]"


REFUSED = {
    "narrow row": (json.dumps({"instances": [[0.5] * (N - 1)]}), 422),
    "wide row": (json.dumps({"instances": [[0.5] * (N + 1)]}), 422),
    "ragged rows that sum right": (json.dumps({"instances": [[0.5] * (N + 1), [0.5] * (N - 1)]}), 422),
    "NaN": ('{"instances": [' + text(["NaN"] + ["0.5"] * (N - 1)) + "]}", 422),
    "Infinity": ('{"instances": [' + text(["-Infinity"] + ["0.5"] * (N - 1)) + "]}", 422),
    "overflows to inf": ('{"instances": [' + text(["1e400"] + ["0.5"] * (N - 1)) + "]}", 422),
    "beyond the bound": ('{"instances": [' + text(["1000000.5"] + ["0.5"] * (N - 1)) + "]}", 422),
    "beyond the bound, negative": ('{"instances": [' + text(["-12345678.0"] + ["0.5"] * (N - 1)) + "]}", 422),
    "a string": ('{"instances": [' + text(['"0.5"'] + ["0.5"] * (N - 1)) + "]}", 422),
    "a boolean": ('{"instances": [' + text(["true"] + ["0.5"] * (N - 1)) + "]}", 422),
    "null": ('{"instances": [' + text(["null"] + ["0.5"] * (N - 1)) + "]}", 422),
    "a nested row": ('{"instances": [' + text(["[0.5]"] + ["0.5"] * (N - 1)) + "]}", 422),
    "no rows": ('{"instances": []}', 422),
    "an empty row": ('{"instances": [' + text(["0.5"] * N) + ", []]}", 422),
    "duplicate key": (json.dumps({"instances": [ROW]})[:-1] + ', "instances": [' + text(["0.5"] * N) + "]}", 400),
    "another key": (json.dumps({"instances": [ROW], "extra": 1.0}), 422),
    "two points in a number": ('{"instances": [' + text(["0.5.5"] + ["0.5"] * (N - 1)) + "]}", 400),
    "trailing data": (json.dumps({"instances": [ROW]}) + " []", 400),
    "too many rows": (json.dumps({"instances": [ROW] * 257}), 413),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_invalid_bodies_are_still_refused(case: str) -> None:
    body, status = REFUSED[case]
    with pytest.raises(GatewayError) as err:
        valid_rows(body.encode(), Settings())
    assert err.value.status_code == status, err.value.message


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"instances": [[1] * N]}),  # integers: no point
        json.dumps({"instances": [[1e-05] * N]}),  # an exponent
        '{"instances": [' + text(["1000000.0"] + ["0.5"] * (N - 1)) + "]}",  # the bound itself: 7 digits
        '{"\\u0069nstances": [' + text(["0.5"] * N) + "]}",  # the key spelled with an escape
    ],
)
def test_valid_bodies_it_leaves_to_the_validators_are_still_valid(body: str) -> None:
    assert plain_rows(body.encode(), N) is None
    assert valid_rows(body.encode(), Settings()) == 1


def test_through_the_routes_plain_bodies_skip_the_validators_and_invalid_ones_never_leave(
    stub: StubBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both backends: a plain 64-row body is taken without the validators and reaches the backend byte for byte;
    every invalid body above gets its status from the route and nothing reaches a backend."""
    from gateway import service

    validated: list[bytes] = []
    real = service.validated_rows

    def spy(body: bytes, rules: object) -> int:
        validated.append(body)
        return real(body, rules)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "validated_rows", spy)
    answer = _json(200, {"predictions": [PROBS] * 64})
    stub.answers[TF_PREDICT] = stub.answers[TS_PREDICT] = answer
    plain = payloads(64)[0].body
    with gateway(stub, "raw") as c:
        for route in ("/predict/tf", "/predict/torch"):
            r = c.post(route, content=plain, headers={"content-type": "application/json"})
            assert r.status_code == 200 and len(r.json()["labels"]) == 64, r.text
        assert validated == []
        sent = [r.body for r in stub.server.requests if r.method == "POST"]
        assert sent == [plain, plain]
        for case, (body, status) in REFUSED.items():
            for route in ("/predict/tf", "/predict/torch"):
                r = c.post(route, content=body.encode(), headers={"content-type": "application/json"})
                assert r.status_code == status and "error" in r.json(), (case, route, r.text)
    assert len([r for r in stub.server.requests if r.method == "POST"]) == 2
    assert len(validated) == 2 * len(REFUSED) - 2  # "too many rows" is plain: refused by the batch limit alone
