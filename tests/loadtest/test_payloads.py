"""The payload source and the answer check the locust users rely on."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from loadtest.drive.locust_run import run_locust
from loadtest.payloads import check_predictions, duplicate_key, payloads
from stack.config import StackConfig
from tests.conftest import serve_in_thread


def test_payloads_are_real_rows_with_expected_labels() -> None:
    single = payloads(1)
    assert len(single) == 450
    body = json.loads(single[0].body)
    assert len(body["instances"]) == 1 and len(body["instances"][0]) == 64
    batched = payloads(8)
    assert len(batched) == 450 // 8
    assert all(len(p.expected) == 8 and len(json.loads(p.body)["instances"]) == 8 for p in batched)


def test_check_predictions() -> None:
    one_hot = [[1.0 if i == k else 0.0 for i in range(10)] for k in (3, 7)]
    assert check_predictions(one_hot, (3, 7)) is None
    assert "label 7, expected 3" in check_predictions(one_hot[::-1], (3, 7))  # type: ignore[operator]
    assert "expected 2 predictions" in check_predictions(one_hot[:1], (3, 7))  # type: ignore[operator]
    assert "not 10 probabilities" in check_predictions([[1.0], [1.0]], (0, 0))  # type: ignore[operator]
    assert check_predictions(None, (1,)) is not None


def test_malformed_rows_are_failures_even_when_the_argmax_would_match() -> None:
    """All-zero or all-NaN rows have argmax 0; nulls and strings used to raise inside locust's catch_response."""
    for row in (
        [0.0] * 10,
        [float("nan")] * 10,
        [None] * 10,
        ["1"] + [0.0] * 9,
        [True] + [False] * 9,
        [2.0] + [-1.0] * 9,
    ):
        assert check_predictions([row], (0,)) is not None, row
    assert check_predictions([[0.91] + [0.01] * 9], (0,)) is None


def _first_wins(body: bytes) -> dict:  # type: ignore[type-arg]
    """How TF Serving reads a body (RapidJSON FindMember): the first of duplicate keys."""

    def first(pairs: list[tuple[str, object]]) -> dict:  # type: ignore[type-arg]
        out: dict = {}  # type: ignore[type-arg]
        for key, value in pairs:
            out.setdefault(key, value)
        return out

    return json.loads(body, object_pairs_hook=first)  # type: ignore[no-any-return]


def _answer(labels: tuple[int, ...]) -> str:
    return json.dumps({"predictions": [[0.91 if i == k else 0.01 for i in range(10)] for k in labels]})


def test_the_duplicate_key_case_reads_differently_first_and_last() -> None:
    case = duplicate_key(2)
    assert case.body.count(b'"instances"') == 2
    assert _first_wins(case.body)["instances"] == json.loads(case.first.body)["instances"]
    assert json.loads(case.body)["instances"] == json.loads(case.last.body)["instances"]  # last wins
    assert case.first.expected != case.last.expected and len(case.first.expected) == 2


def test_the_duplicate_key_check() -> None:
    case = duplicate_key(1)
    assert case.check("first-wins", 200, _answer(case.first.expected)) is None
    assert "last 'instances' was read" in (case.check("first-wins", 200, _answer(case.last.expected)) or "")
    assert case.check("first-wins", 400, '{"error": "duplicate key"}') is not None
    assert case.check("rejected", 400, '{"error": "duplicate key \'instances\' in the body"}') is None
    assert case.check("rejected", 200, _answer(case.last.expected)) is not None  # validated one, forwarded both
    assert case.check("rejected", 400, '{"error": "bad"}') is not None  # a 400 that does not name the key


@pytest.mark.integration
def test_the_load_test_checks_tf_reads_the_first_instances(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A TF REST server that reads the last duplicate key (json.loads; the compatible server did): the load runs
    clean, and exactly one failure, the duplicate-key check's, says what was read. A first-wins server: none."""
    answers = {p.body: p.expected for p in payloads(1)}

    def app(read: Callable[[bytes], dict]) -> Starlette:  # type: ignore[type-arg]
        async def predict(request: Request) -> Response:
            body = await request.body()
            labels = answers.get(body)
            if labels is None:  # the duplicate-key case: answer the rows this server read
                rows = read(body)["instances"]
                labels = next(p.expected for p in payloads(1) if json.loads(p.body)["instances"] == rows)
            return Response(_answer(labels), media_type="application/json")

        return Starlette(routes=[Route("/v1/models/digits:predict", predict, methods=["POST"])])

    for read, failures in ((json.loads, 1), (_first_wins, 0)):
        with serve_in_thread(app(read)) as url:
            cfg = StackConfig.load({"TF_REST_PORT": url.rsplit(":", 1)[1]})
            m = run_locust(cfg, "tf-direct", users=2, duration_s=3, out_prefix=tmp_path / read.__name__, rows=1)
        assert m["failures"] == failures and m["requests"] > 20, m
        if failures:
            assert "last 'instances' was read" in m["failure_samples"][0]
