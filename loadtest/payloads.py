"""One payload source for every locust user: real digits test rows with the answer the model must give."""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

REFERENCE_FILE = Path(__file__).resolve().parent.parent / "models" / "reference" / "digits_test.json"


@dataclass(frozen=True)
class Payload:
    body: bytes  # ready-made JSON, so the load generator spends no time encoding
    expected: tuple[int, ...]  # the TF model's argmax for each row
    expected_torch: tuple[int, ...]  # the TorchScript model's (the same unless trained apart: --train native)

    def expected_for(self, backend: str) -> tuple[int, ...]:
        return self.expected_torch if backend == "torch" else self.expected


def payloads(batch_size: int | None = None, path: Path | None = None) -> tuple[Payload, ...]:
    """Bodies of `batch_size` rows from a model's reference file: `path`, else $LOADTEST_REFERENCE (the bench sets
    it per model), else the default model's."""
    batch = batch_size or int(os.environ.get("LOADTEST_BATCH_SIZE", "1"))
    return _payloads(batch, Path(path or os.environ.get("LOADTEST_REFERENCE") or REFERENCE_FILE))


@lru_cache(maxsize=8)
def _payloads(batch: int, path: Path) -> tuple[Payload, ...]:
    ref = json.loads(path.read_text())
    rows, expected = ref["rows"], ref["expected"]
    expected_torch = ref.get("expected_torch", expected)
    out = []
    for start in range(0, len(rows) - batch + 1, batch):
        chunk, end = rows[start : start + batch], start + batch
        body = json.dumps({"instances": chunk}).encode()
        out.append(Payload(body, tuple(expected[start:end]), tuple(expected_torch[start:end])))
    return tuple(out)


def pick(rng: random.Random | None = None) -> Payload:
    return (rng or random).choice(payloads())


def argmax(row: list[float]) -> int:
    return max(range(len(row)), key=row.__getitem__)


def classes() -> int:
    """The measured model's class count: $LOADTEST_N_CLASSES (the bench sets it per model, compose and k8s from
    .env), else .env's."""
    value = os.environ.get("LOADTEST_N_CLASSES")
    return int(value) if value else _env_classes()


@lru_cache(maxsize=1)
def _env_classes() -> int:
    from stack.config import StackConfig

    return StackConfig.load().n_classes


def check_predictions(predictions: object, expected: tuple[int, ...], n_classes: int | None = None) -> str | None:
    """None when right; else what is wrong. A wrong or malformed answer is a failure, never a success: each row
    must be `n_classes` probabilities (finite numbers in [0, 1] summing to 1) whose argmax is the expected label."""
    n_classes = n_classes or classes()
    if not isinstance(predictions, list) or len(predictions) != len(expected):
        return f"expected {len(expected)} predictions, got {type(predictions).__name__}"
    for i, (row, want) in enumerate(zip(predictions, expected, strict=True)):
        if not isinstance(row, list) or len(row) != n_classes:
            return f"prediction {i} is not {n_classes} probabilities"
        if not all(type(v) in (int, float) and 0.0 <= v <= 1.0 for v in row):  # NaN fails the comparison too
            return f"prediction {i} holds a value that is not a probability"
        if not math.isclose(sum(row), 1.0, abs_tol=1e-3):
            return f"prediction {i} does not sum to 1 ({sum(row):.4g})"
        if argmax(row) != want:
            return f"prediction {i}: label {argmax(row)}, expected {want}"
    return None


@dataclass(frozen=True)
class DuplicateKey:
    """A TF REST body with "instances" twice, each a valid list of rows the model labels differently. TF Serving
    reads it with RapidJSON's FindMember: the first wins (the gateway validated the last and forwarded both, so the
    limits it checked were not what TF Serving read). The gateway must refuse it with a 400 naming the key; the TF
    side must answer the first value's rows."""

    body: bytes
    first: Payload
    last: Payload

    def check(self, expect: str, status: int, text: str) -> str | None:
        """expect: 'first-wins' (a TF Serving REST API) or 'rejected' (the gateway). None when the answer is right."""
        if expect == "rejected":
            if status != 400 or "instances" not in text:
                return f"duplicate key: expected a 400 naming 'instances', got HTTP {status}: {text[:120]}"
            return None
        if status != 200:
            return f"duplicate key: expected the first value's rows answered, got HTTP {status}: {text[:120]}"
        try:
            predictions = json.loads(text).get("predictions")
        except (ValueError, AttributeError):
            return "duplicate key: response is not a JSON object"
        if check_predictions(predictions, self.first.expected) is None:
            return None
        if check_predictions(predictions, self.last.expected) is None:
            return "duplicate key: the last 'instances' was read (TF Serving reads the first)"
        return "duplicate key: the answer is neither value's rows"


def duplicate_key(batch_size: int | None = None) -> DuplicateKey:
    """The duplicate-key case from the first two payloads whose labels differ (same row count as the load's)."""
    pool = payloads(batch_size)
    first = pool[0]
    last = next(p for p in pool[1:] if p.expected != first.expected)
    first_rows, last_rows = (json.dumps(json.loads(p.body)["instances"]) for p in (first, last))
    body = f'{{"instances": {first_rows}, "instances": {last_rows}}}'.encode()
    return DuplicateKey(body, first, last)
