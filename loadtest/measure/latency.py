"""Exact latencies: every response time at microsecond resolution in an HDR histogram.

Locust stores response times below 100 ms rounded to whole milliseconds, and its percentiles come from those
buckets; here every sample is kept to 1 µs (3 significant digits: buckets of 1 µs below 2 ms, 1/1024 of the value
above), histograms from several processes merge exactly, and percentiles are reported in ms with 3 decimals as the
middle of their bucket, within 0.05 % of the recorded values.
"""

from __future__ import annotations

import math
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 120_000_000  # 2 minutes
DIGITS = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def record_ms(hist: HdrHistogram, ms: float) -> None:
    hist.record_value(min(max(round(ms * 1000.0), LOWEST_US), HIGHEST_US))


def encode(hist: HdrHistogram) -> str:
    """Compressed, base64: what a process hands to another (a locust worker to its master, a driver to the bench)."""
    data = hist.encode()
    return data.decode() if isinstance(data, bytes) else str(data)


def decode(text: str) -> HdrHistogram:
    hist = new_histogram()
    hist.decode_and_add(text.encode() if isinstance(text, str) else text)
    return hist


def merge(encoded: list[str]) -> HdrHistogram:
    total = new_histogram()
    for text in encoded:
        total.add(decode(text))
    return total


def value_us(hist: HdrHistogram, value: int) -> float:
    """The middle of `value`'s bucket, not its top: at most half a bucket (< 0.05 %) from any value in it. With 3
    significant digits a bucket is 1 µs wide below 2 ms and 1/1024 of the value above (8 µs at 10 ms)."""
    return (hist.get_lowest_equivalent_value(value) + hist.get_highest_equivalent_value(value)) / 2


def percentile_ms(hist: HdrHistogram, percentile: float) -> float | None:
    """A percentile in ms at the histogram's full resolution (1 µs); None for an empty one."""
    return value_us(hist, hist.get_value_at_percentile(percentile)) / 1000.0 if hist.get_total_count() else None


def quantile_ranks(n: int, q: float, level: float = 0.95) -> tuple[int, int | None]:
    """Ranks (1-based) of the order statistics that bracket the true `q` quantile (0 < q < 1) of n samples with
    probability >= `level`: the number of samples below the quantile is Binomial(n, q). The upper rank is None when
    even the largest sample is not a bound at that level (too few samples for the percentile)."""
    tail = (1 - level) / 2
    logs = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) for k in range(n + 1)]
    pmf = [math.exp(c + k * math.log(q) + (n - k) * math.log1p(-q)) for k, c in enumerate(logs)]
    cdf, low = 0.0, 1
    for k in range(n + 1):  # P(K < low) <= tail
        if cdf + pmf[k] > tail:
            low = max(k, 1)
            break
        cdf += pmf[k]
    above, high = 0.0, None
    for k in range(n, -1, -1):  # P(K >= high) <= tail
        if above + pmf[k] > tail:
            high = k + 1 if k + 1 <= n else None
            break
        above += pmf[k]
    return low, high


def percentile_interval_ms(hist: HdrHistogram, percentile: float, level: float = 0.95) -> list[float | None]:
    """[low, high] ms between which the true percentile lies with probability `level`, from the order statistics of
    the histogram's samples (high None: too few samples to bound it)."""
    n = int(hist.get_total_count())
    if n == 0:
        return [None, None]
    low, high = quantile_ranks(n, percentile / 100.0, level)

    def at_rank(rank: int) -> float:
        return round(value_us(hist, hist.get_value_at_percentile(100.0 * rank / n)) / 1000.0, 3)

    return [at_rank(low), at_rank(high) if high else None]


def summary(hist: HdrHistogram) -> dict[str, Any]:
    """count, p50, p90, p99, p99.9, max, mean, all in ms with 3 decimals (1 µs): each within 0.05 % of a recorded
    value, where 2 decimals were 1 % at 1 ms."""
    out: dict[str, Any] = {"count": int(hist.get_total_count())}
    if out["count"] == 0:
        return out | {f"p{_name(p)}": None for p in PERCENTILES} | {"max": None, "mean": None}
    for p in PERCENTILES:
        out[f"p{_name(p)}"] = round(value_us(hist, hist.get_value_at_percentile(p)) / 1000.0, 3)
    out["max"] = round(value_us(hist, hist.get_max_value()) / 1000.0, 3)
    out["mean"] = round(hist.get_mean_value() / 1000.0, 3)
    return out


def _name(p: float) -> str:
    return f"{p:g}".replace(".", "_")  # 99.9 -> "99_9"


__all__ = ["HdrHistogram", "decode", "encode", "merge", "new_histogram", "record_ms", "summary"]
