"""What every worker of both frameworks agrees on, and how a worker reports back."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SEED_MODEL = "digits"
GLOBAL_BATCH = 64
ADAM = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}  # PyTorch's defaults; the TF loop applies the same update
# Per registry model: (global batch, epochs). The seed MLP keeps the short run `make scaling` always made; the wide
# one (~500x the multiply-adds) gets a batch whose step is compute-bound on one core (~0.1 s a step, ~1 s an epoch).
RUN_DEFAULTS = {SEED_MODEL: (GLOBAL_BATCH, 20)}
WIDE_DEFAULTS = (128, 8)
PROBE_ROUNDS = 20  # rounds of (synced step, compute-only step, all-reduce alone) after training


@dataclass(frozen=True)
class Plan:
    framework: str
    workers: int
    epochs: int
    seed: int = 0
    global_batch: int = GLOBAL_BATCH
    learning_rate: float = 1e-2
    train_rows: int | None = None  # a prefix of the training split (tests use fewer rows)
    model: str = SEED_MODEL
    hidden: tuple[int, ...] = (64, 64)
    probe_rounds: int = PROBE_ROUNDS

    @property
    def per_worker_batch(self) -> int:
        if self.global_batch % self.workers:
            raise ValueError(f"global batch {self.global_batch} does not split evenly over {self.workers} workers")
        return self.global_batch // self.workers


def make_plan(
    framework: str, workers: int, model: str = SEED_MODEL, epochs: int | None = None,
    global_batch: int | None = None, seed: int = 0, train_rows: int | None = None, probe_rounds: int = PROBE_ROUNDS,
) -> Plan:  # fmt: skip
    """A plan for one of the registry's builtin MLPs (models.toml): its hidden widths and Adam rate, this run's
    batch and epochs (RUN_DEFAULTS unless given)."""
    from stack.registry import load_registry

    specs = {s.name: s for s in load_registry()}
    spec = specs.get(model)
    if spec is None or spec.hidden is None:
        builtin = ", ".join(s.name for s in specs.values() if s.builtin)
        raise ValueError(f"--model {model!r}: not a builtin model of the registry (models.toml); one of: {builtin}")
    batch, n_epochs = RUN_DEFAULTS.get(model, WIDE_DEFAULTS)
    plan = Plan(
        framework, workers, epochs or n_epochs, seed, global_batch or batch, spec.lr, train_rows, model, spec.hidden,
        probe_rounds,
    )  # fmt: skip
    plan.per_worker_batch  # noqa: B018 - refuses a batch that does not split
    return plan


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
    steps_per_epoch: int = 0
    gradient_bytes: int = 0
    # The split, timed after training (probe_rounds of each, interleaved): a step as trained, the same step without
    # the gradient all-reduce, and the all-reduce alone on the gradient's tensors. Each starts after a barrier and
    # ends when the slowest worker is done (a barrier, or the collective itself).
    probe: dict[str, list[float]] = field(default_factory=dict)

    def record(self, epoch: int, loss: float, accuracy: float, logger: Any = None) -> None:
        """The reporting worker's figures for one epoch, and the same to TensorBoard when it logs."""
        self.losses.append(loss)
        self.accuracies.append(accuracy)
        if logger is not None:
            logger.log(epoch, loss, accuracy)


class Probe:
    """The three timings of the compute/communication split, each a list of seconds."""

    KINDS = ("step", "compute", "allreduce")

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {k: [] for k in self.KINDS}

    def round(self, index: int, runs: dict[str, Any], barrier: Any) -> None:
        """One round: each kind once, the order rotated round by round so that none always follows another."""
        first = index % len(self.KINDS)
        for kind in self.KINDS[first:] + self.KINDS[:first]:
            self.time(kind, runs[kind], barrier)

    def time(self, kind: str, run: Any, barrier: Any) -> None:
        barrier()
        start = time.perf_counter()
        run()
        barrier()
        self.times[kind].append(time.perf_counter() - start)


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def worker_args(argv: list[str] | None = None) -> tuple[Plan, int, int, Path, Path | None]:
    """The command line every worker takes: (plan, rank, port, out JSON, TensorBoard dir or None). Under torchrun
    the rank comes from $RANK and --port is unused (the c10d rendezvous gives the address)."""
    p = argparse.ArgumentParser()
    p.add_argument("--rank", type=int, default=int(os.environ.get("RANK", "-1")))
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--port", type=int, default=0, help="rank 0's port; worker r uses port + r where needed")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--global-batch", type=int, required=True)
    p.add_argument("--train-rows", type=int, default=None)
    p.add_argument("--model", default=SEED_MODEL)
    p.add_argument("--probe-rounds", type=int, default=PROBE_ROUNDS)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--log-dir", type=Path, default=None)
    p.add_argument("--framework", required=True)
    a = p.parse_args(argv)
    if a.rank < 0:
        p.error("--rank is required (or $RANK, as torchrun sets it)")
    plan = make_plan(a.framework, a.workers, a.model, a.epochs, a.global_batch, a.seed, a.train_rows, a.probe_rounds)
    return plan, a.rank, a.port, a.out, a.log_dir


def reports(rank: int) -> bool:
    """Whether this worker evaluates and writes the result: rank 0 on loopback; in a Kubernetes Indexed Job the pod
    of completion index 0 (torchrun's c10d rendezvous hands out ranks in its own order)."""
    index = os.environ.get("JOB_COMPLETION_INDEX")
    return int(index) == 0 if index is not None else rank == 0


def write_result(result: WorkerResult, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
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
