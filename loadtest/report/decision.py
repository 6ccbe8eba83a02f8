"""The decision rule: a bootstrap interval on the ratio of two sides' means, and a side named only when the interval
clears 1 by the margin.

For each side the trials' values (one per trial, or one per start) are resampled with replacement, `DRAWS` times,
each resample's mean taken; the ratio TorchServe ÷ TF side of each pair of resampled means gives the distribution
whose 2.5 and 97.5 percentiles are the 95 % interval. With few values a bootstrap is too narrow (the resamples'
spread is (n-1)/n of the sample's), so each side's deviations from its mean are first widened by sqrt(n/(n-1)).
The generator is seeded from the dimension's name: the same summary.json always gives the same interval.

A side is named only if the whole interval is beyond 1 + margin in its favour (or below 1 / (1 + margin)), and
only with at least MIN_VALUES values a side; the simulation in tests/loadtest/test_decision.py checks that two
identical sides are named in <= 5 % of runs and a side 20 % slower in >= 95 %.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

DRAWS = 4000
LEVEL = 0.95
MIN_VALUES = 5


@dataclass(frozen=True)
class Ratio:
    """TorchServe ÷ TF side: the ratio of the means and its interval."""

    value: float
    low: float
    high: float
    n_tf: int
    n_torch: int


def seed_for(name: str) -> int:
    return zlib.crc32(name.encode())


def _resampled_means(values: list[float], rng: np.random.Generator, draws: int) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    n = len(x)
    mean = x.mean()
    widened = mean + (x - mean) * np.sqrt(n / (n - 1)) if n > 1 else x
    return np.asarray(widened[rng.integers(0, n, size=(draws, n))].mean(axis=1))


def ratio_interval(tf: list[float], torch: list[float], seed: int, draws: int = DRAWS, level: float = LEVEL) -> Ratio:
    """mean(torch) / mean(tf) and its bootstrap interval at `level`."""
    rng = np.random.default_rng(seed)
    a, b = _resampled_means(tf, rng, draws), _resampled_means(torch, rng, draws)
    ratios = b / np.where(a > 0, a, np.nan)
    tail = (1 - level) / 2
    low, high = np.nanquantile(ratios, [tail, 1 - tail])
    return Ratio(float(np.mean(torch) / np.mean(tf)), float(low), float(high), len(tf), len(torch))


def winner(r: Ratio, lower_is_better: bool, margin: float) -> str | None:
    """'tf', 'torch' or None. The ratio is TorchServe ÷ TF side: above 1 + margin throughout, TorchServe's values
    are higher (it is ahead if higher is better); below 1 / (1 + margin) throughout, they are lower."""
    if r.low > 1 + margin:
        return "tf" if lower_is_better else "torch"
    if r.high < 1 / (1 + margin):
        return "torch" if lower_is_better else "tf"
    return None


def advantage(r: Ratio, side: str, lower_is_better: bool) -> tuple[float, float, float]:
    """How many times better `side` is, with the interval in the same terms (always >= 1 for the named side)."""
    if (side == "tf") == lower_is_better:  # the ahead side's advantage is TorchServe's values over TF's
        return r.value, r.low, r.high
    return 1 / r.value, 1 / r.high, 1 / r.low
