"""One payload source for every locust user: real digits test rows with the answer the model must give."""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

REFERENCE_FILE = Path(__file__).resolve().parent.parent / "models" / "reference" / "digits_test.json"


@dataclass(frozen=True)
class Payload:
    body: bytes  # ready-made JSON, so the load generator spends no time encoding
    expected: tuple[int, ...]  # the exported models' argmax for each row


@lru_cache(maxsize=4)
def payloads(batch_size: int | None = None, path: Path = REFERENCE_FILE) -> tuple[Payload, ...]:
    batch = batch_size or int(os.environ.get("LOADTEST_BATCH_SIZE", "1"))
    ref = json.loads(Path(os.environ.get("LOADTEST_REFERENCE", path)).read_text())
    rows, expected = ref["rows"], ref["expected"]
    out = []
    for start in range(0, len(rows) - batch + 1, batch):
        chunk = rows[start : start + batch]
        out.append(Payload(json.dumps({"instances": chunk}).encode(), tuple(expected[start : start + batch])))
    return tuple(out)


def pick(rng: random.Random | None = None) -> Payload:
    return (rng or random).choice(payloads())


def argmax(row: list[float]) -> int:
    return max(range(len(row)), key=row.__getitem__)


def check_predictions(predictions: object, expected: tuple[int, ...], n_classes: int = 10) -> str | None:
    """None when right; else what is wrong. A wrong answer is a failure, never a success."""
    if not isinstance(predictions, list) or len(predictions) != len(expected):
        return f"expected {len(expected)} predictions, got {type(predictions).__name__}"
    for i, (row, want) in enumerate(zip(predictions, expected, strict=True)):
        if not isinstance(row, list) or len(row) != n_classes:
            return f"prediction {i} is not {n_classes} probabilities"
        if argmax(row) != want:
            return f"prediction {i}: label {argmax(row)}, expected {want}"
    return None
