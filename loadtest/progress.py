"""Where a benchmark is: `[step k/N, elapsed, about M min left]`, from a plan made before the run.

A plan is a list of stages, each with an upper bound on its steps and an estimate of a step's seconds, computed
from the options alone (loadtest/bench.py: bench_plan). Steps whose count depends on the measurements (a sweep
point that settles early, an SLO search that brackets its rate in fewer steps than it may take) are counted at
their upper bound, and N is lowered as soon as a stage is known to need fewer: N never grows, and the last step
reads N/N. Time left: the estimated seconds of the steps left, scaled by how the steps done so far compared with
their estimate (a busy machine runs slower than the plan, and the estimate follows it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

Log = Callable[[str], None]


@dataclass
class Stage:
    key: Hashable  # names the stage, e.g. ("sweep", model, batching, rows, users)
    steps: int  # at most this many steps
    seconds: float  # the estimate of one step


class Progress:
    def __init__(self, stages: list[Stage], log: Log, clock: Callable[[], float] = time.monotonic) -> None:
        self.bound = {s.key: s.steps for s in stages}
        self.seconds = {s.key: s.seconds for s in stages}
        self.done = dict.fromkeys(self.bound, 0)
        self.log, self.clock, self.started = log, clock, clock()

    @property
    def total(self) -> int:
        return sum(max(self.bound[k], self.done[k]) for k in self.bound)

    @property
    def steps_done(self) -> int:
        return sum(self.done.values())

    def step(self, key: Hashable, line: str) -> None:
        """One step of `key` done: `line` logged behind the position."""
        self.done[key] += 1
        self.log(f"{self.position()} {line.strip()}")

    def at_most(self, key: Hashable, steps: int) -> None:
        """`key` now needs at most `steps` in all (only ever lowers N)."""
        self.bound[key] = max(min(self.bound[key], steps), self.done[key])

    def finish(self, key: Hashable) -> None:
        """`key` is over: the steps it did not need leave N."""
        self.at_most(key, self.done[key])

    def stepping(self, key: Hashable) -> Log:
        """A log for a callee that logs exactly one line per step of `key` (the SLO search, the hop rounds)."""
        return lambda line: self.step(key, line)

    def minutes_left(self) -> float:
        planned_done = sum(self.done[k] * self.seconds[k] for k in self.bound)
        planned_left = sum(max(self.bound[k] - self.done[k], 0) * self.seconds[k] for k in self.bound)
        elapsed = self.clock() - self.started
        pace = elapsed / planned_done if planned_done > 0 and elapsed > 0 else 1.0
        return planned_left * pace / 60.0

    def position(self) -> str:
        elapsed = int(self.clock() - self.started)
        k, n = self.steps_done, self.total
        left = "done" if k >= n else f"about {max(1, round(self.minutes_left()))} min left"
        return f"[step {k}/{n}, {elapsed // 60}:{elapsed % 60:02d} elapsed, {left}]"
