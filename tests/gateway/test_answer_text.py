"""The gateway passes a backend's predictions on as the backend wrote them (`Prediction.text`), without writing 640
floats again, only where that text is exactly the predictions it validated: the answer's only key, well-formed,
finite numbers. Any other answer (another key, the key twice, NaN, booleans) is judged as before, and where it is
valid its floats are written anew."""

from __future__ import annotations

import json
import math
import sys

import httpx
import msgspec
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from gateway.backends.base import _ANSWER, predictions_text
from tests.gateway.test_routes import PROBS, ROW, TF, TF_PREDICT, TS_PREDICT, TSM, make_client

finite = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**15), 10**15)
tables = st.lists(st.lists(finite, min_size=1, max_size=4), min_size=1, max_size=4)
spacing = st.sampled_from([(", ", ": "), (",", ":"), (",\n    ", ": ")])


@given(tables, spacing)
def test_the_text_is_the_same_numbers_as_the_floats(table: list[list[float]], seps: tuple[str, str]) -> None:
    answer = json.dumps({"predictions": table}, separators=seps, indent=None if seps[1] == ":" else 4).encode()
    floats = _ANSWER.decode(answer).predictions
    text = predictions_text(answer)
    assert text is not None
    assert msgspec.json.decode(text, type=list[list[float]]) == floats  # the very numbers that were validated
    assert json.loads(text) == table


@pytest.mark.parametrize(
    "answer",
    [
        b'{"predictions": [[0.5, 0.5]], "predictions": [[0.25, 0.75]]}',  # twice: the validators read the last
        b'{"model_version": "1", "predictions": [[0.5, 0.5]]}',
        b'{"predictions": [[0.5, 0.5]], "outputs": [[1]]}',
        b'{"predictio\\u006es": [[0.5, 0.5]], "x": {"y": "]}"}}',
    ],
)
def test_an_answer_with_any_other_key_gives_no_text(answer: bytes) -> None:
    _ANSWER.decode(answer)  # valid for the decoder, which ignores other keys and reads the last of a duplicate
    assert predictions_text(answer) is None


def _post(ts_answer: bytes, tf_answer: bytes, route: str, rows: int = 2) -> httpx.Response:
    """The gateway's answer to `rows` rows on `route`, the backends answering these bytes."""
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{TF}/v1/models/digits").respond(json={"model_version_status": []})
        mock.get(f"{TSM}/models/digits").respond(json=[])
        mock.post(TS_PREDICT).respond(content=ts_answer, headers={"Content-Type": "application/json"})
        mock.post(TF_PREDICT).respond(content=tf_answer, headers={"Content-Type": "application/json"})
        with make_client() as c:
            return c.post(route, json={"instances": [ROW] * rows})


def _through_gateway(ts_answer: bytes, tf_answer: bytes, route: str) -> dict[str, object]:
    r = _post(ts_answer, tf_answer, route)
    assert r.status_code == 200, r.text
    return r.json()


TF_STYLE = (
    b'{\n    "predictions": [[1e-05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.19999], ['
    + b", ".join(b"%.9g" % v for v in PROBS)
    + b"]\n    ]\n}"
)


@pytest.mark.parametrize("route", ["/predict/tf", "/predict/torch", "/compare"])
def test_passed_on_text_makes_a_valid_answer_with_the_same_numbers_and_labels(route: str) -> None:
    ts_answer = json.dumps({"predictions": [PROBS, PROBS[::-1]]}).encode()
    got = _through_gateway(ts_answer, TF_STYLE, route)
    answers = [got] if route != "/compare" else [got["tf"], got["torch"]]
    for answer in answers:
        assert isinstance(answer, dict)
        sent = TF_STYLE if answer["backend"] == "tf" else ts_answer
        want = json.loads(sent)["predictions"]
        assert answer["predictions"] == want
        assert answer["labels"] == [row.index(max(row)) for row in want]
    if route == "/compare":
        tf, ts = json.loads(TF_STYLE)["predictions"], json.loads(ts_answer)["predictions"]
        diff = max(abs(a - b) for ra, rb in zip(tf, ts, strict=True) for a, b in zip(ra, rb, strict=True))
        assert math.isclose(got["max_abs_diff"], diff)


@pytest.mark.parametrize(
    "answer",
    [
        b'{"predictions": [[0.5, 0.5, 0, 0, 0, 0, 0, 0, 0, 0]], "predictions": '
        + json.dumps([PROBS] * 2).encode()
        + b"}",
        b'{"extra": "x", "predictions": ' + json.dumps([PROBS] * 2).encode() + b"}",
    ],
)
def test_an_answer_with_other_keys_is_written_anew_from_its_floats(answer: bytes) -> None:
    got = _through_gateway(answer, answer, "/predict/torch")
    assert got["predictions"] == [PROBS, PROBS]  # the last of a duplicate, as validated; the JSON is well-formed


@pytest.mark.parametrize(
    "answer",
    [
        b'{"predictions": [[1' + b"0" * 400 + b", " + b", ".join([b"0.1"] * 9) + b"]]}",  # an int past a float
        b'{"predictions": ' + b"[" * 1030 + b"]" * 1030 + b"}",  # deeper than orjson's limit and the json module's
    ],
    ids=["huge-integer", "deep-nesting"],
)
def test_answers_only_the_lenient_reader_fails_on_are_a_bad_gateway_not_an_internal_error(answer: bytes) -> None:
    r = _post(answer, answer, "/predict/torch", rows=1)
    assert r.status_code == 502, r.text
    assert r.json()["backend"] == "torch"


BIG = int(sys.float_info.max)  # the largest finite float, written as the 309-digit integer it is


@pytest.mark.parametrize(
    "row",
    [[BIG, -BIG, -1, 0, 1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]],
    ids=["the-largest-integers-a-float-holds", "small-integers"],
)
def test_integers_a_float_can_hold_are_numbers_on_the_slow_path_too(row: list[int]) -> None:
    """NaN under another key sends the answer to the lenient reader, which keeps integers as ints: they are finite
    numbers (so 200), and the answer writes them as the floats they are (orjson writes no int past 64 bits)."""
    answer = b'{"note": NaN, "predictions": ' + json.dumps([row]).encode() + b"}"
    r = _post(answer, answer, "/predict/torch", rows=1)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == [[float(v) for v in row]]
    assert r.json()["labels"] == [row.index(max(row))]


def test_an_integer_just_past_the_largest_float_is_a_bad_gateway() -> None:
    answer = b'{"note": NaN, "predictions": [[' + str(-BIG - 10**292).encode() + b", 0, 0, 0, 0, 0, 0, 0, 0, 1]]}"
    r = _post(answer, answer, "/predict/torch", rows=1)
    assert r.status_code == 502, r.text
