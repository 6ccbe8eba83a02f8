"""Server-side time, as each server reports it in its own Prometheus metrics, read before and after a run.

The difference between what the client observed and what the server says it spent is the HTTP/JSON (and queueing
in front of the server) share of a request.
- TorchServe: `ts_inference_latency_microseconds` (frontend: request in to response out, queue included) and
  `ts_queue_latency_microseconds`, with `ts_inference_requests_total` (counters, summed over label sets). The
  latency counters grow only for requests answered 2xx (its error path records no time) while the request counter
  counts every one, so the mean divides by requests less the errors (`Requests4XX` + `Requests5XX`, host-wide);
  where those counters are missing, the result says the errors are unknown.
- The TF-Serving-compatible server: `tfserving_compat_request_latency_seconds{api="predict"}` (sum and count).
- TF Serving: `:tensorflow:serving:request_latency{API="predict"}` (µs, sum and count).
"""

from __future__ import annotations

import re
from typing import Any

import httpx

_LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)")


def scrape(url: str, timeout: float = 5.0) -> dict[str, float]:
    """`name{labels}` -> value, with samples of the same name and label filter summed by the readers below."""
    out: dict[str, float] = {}
    for line in httpx.get(url, timeout=timeout).text.splitlines():
        m = _LINE.match(line)
        if m:
            out[m[1] + (m[2] or "")] = float(m[3])
    return out


def _sum(samples: dict[str, float], name: str, must_contain: str = "") -> float:
    return sum(v for k, v in samples.items() if k.split("{")[0] == name and must_contain in k)


def torchserve_counters(samples: dict[str, float]) -> dict[str, float]:
    out = {
        "requests": _sum(samples, "ts_inference_requests_total"),
        "latency_us": _sum(samples, "ts_inference_latency_microseconds"),
        "queue_us": _sum(samples, "ts_queue_latency_microseconds"),
    }
    if any(k.split("{")[0] in ("Requests4XX", "Requests5XX") for k in samples):
        out["errors"] = _sum(samples, "Requests4XX") + _sum(samples, "Requests5XX")
    return out


def counters(backend: str, samples: dict[str, float]) -> dict[str, float]:
    """The counters of `backend` ('tf' or 'torch') from its scraped samples."""
    return tf_counters(samples) if backend == "tf" else torchserve_counters(samples)


def tf_counters(samples: dict[str, float]) -> dict[str, float]:
    if any(k.startswith("tfserving_compat_") for k in samples):
        return {
            "requests": _sum(samples, "tfserving_compat_request_latency_seconds_count", 'api="predict"'),
            "latency_us": 1e6 * _sum(samples, "tfserving_compat_request_latency_seconds_sum", 'api="predict"'),
        }
    return {
        "requests": _sum(samples, ":tensorflow:serving:request_latency_count", 'API="predict"'),
        "latency_us": _sum(samples, ":tensorflow:serving:request_latency_sum", 'API="predict"'),
    }


def server_time(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Mean server-side ms per request over the run (and queue ms where the server reports it). Where the server
    times only its good answers (TorchServe), the mean is over those: requests less the errors."""
    requests = after.get("requests", 0.0) - before.get("requests", 0.0)
    errors = after["errors"] - before.get("errors", 0.0) if "errors" in after else 0.0
    n = requests - max(errors, 0.0)
    if n <= 0:
        return {"requests": int(max(requests, 0)), "mean_ms": None}
    out: dict[str, Any] = {
        "requests": int(requests),
        "mean_ms": round((after["latency_us"] - before["latency_us"]) / n / 1000.0, 3),
    }
    if "errors" in after:
        out["errors"] = int(errors)
    elif "queue_us" in after:  # TorchServe without its error counters: the errors are unknown
        out["errors"] = None
    if "queue_us" in after:
        out["queue_mean_ms"] = round((after["queue_us"] - before.get("queue_us", 0.0)) / n / 1000.0, 3)
    return out
