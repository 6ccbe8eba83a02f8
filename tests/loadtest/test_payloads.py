"""The payload source and the answer check the locust users rely on."""

from __future__ import annotations

import json

from loadtest.payloads import check_predictions, payloads


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
