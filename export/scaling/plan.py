"""What every worker of both frameworks agrees on, and how a worker reports back."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

GLOBAL_BATCH = 64
LEARNING_RATE = 1e-2
ADAM = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}  # PyTorch's defaults; the TF loop applies the same update


@dataclass(frozen=True)
class Plan:
    framework: str
    workers: int
    epochs: int
    seed: int = 0
    global_batch: int = GLOBAL_BATCH
    learning_rate: float = LEARNING_RATE
    train_rows: int | None = None  # a prefix of the training split (tests use fewer rows)

    @property
    def per_worker_batch(self) -> int:
        if self.global_batch % self.workers:
            raise ValueError(f"global batch {self.global_batch} does not split evenly over {self.workers} workers")
        return self.global_batch // self.workers


@dataclass
class WorkerResult:
    framework: str
    workers: int
    device: str
    epoch_seconds: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    train_rows: int = 0
    setup_seconds: float = 0.0
    strategy: str = ""

    def record(self, epoch: int, loss: float, accuracy: float, logger: Any = None) -> None:
        """Rank 0's figures for one epoch, and the same to TensorBoard when it logs (export/tensorboard.py)."""
        self.losses.append(loss)
        self.accuracies.append(accuracy)
        if logger is not None:
            logger.log(epoch, loss, accuracy)


def worker_args(argv: list[str] | None = None) -> tuple[Plan, int, int, Path, Path | None]:
    """The command line every worker takes: (plan, rank, port, out JSON, TensorBoard dir or None)."""
    p = argparse.ArgumentParser()
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--port", type=int, required=True, help="rank 0's port; worker r uses port + r where needed")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--global-batch", type=int, default=GLOBAL_BATCH)
    p.add_argument("--train-rows", type=int, default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--log-dir", type=Path, default=None)
    p.add_argument("--framework", required=True)
    a = p.parse_args(argv)
    plan = Plan(a.framework, a.workers, a.epochs, a.seed, a.global_batch, LEARNING_RATE, a.train_rows)
    return plan, a.rank, a.port, a.out, a.log_dir


def write_result(result: WorkerResult, out: Path) -> None:
    out.write_text(json.dumps(asdict(result)))


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The same shuffled order of the training rows for every worker of both frameworks (numpy, not either
    framework's RNG); worker r then takes its share of each global batch."""
    import numpy as np

    return [int(i) for i in np.random.default_rng([seed, epoch]).permutation(n)]


def shard(order: list[int], plan: Plan, rank: int) -> list[list[int]]:
    """Rank r's rows of each full global batch (a last partial batch is dropped, as on every worker)."""
    b, per = plan.global_batch, plan.per_worker_batch
    return [order[s + rank * per : s + (rank + 1) * per] for s in range(0, len(order) - b + 1, b)]


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        took, self.start = now - self.start, now
        return took
