"""What the running servers actually use, asked of the servers themselves, and how it differs from what was asked.

A config file that parses is not a setting in force: TorchServe silently ignores per-model settings keyed by
another version string, for instance. So the benchmark reads the settings back before it measures anything.
- TorchServe: the management API's describe call (batch size, delay, workers, timeouts).
- The TF-Serving-compatible server: its `tfserving_compat_effective_config` metric.
- TF Serving itself has no API for its batching parameters: the process's own command line and the batching
  file it names (the source is recorded as such).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from stack.config import StackConfig


def torchserve_effective(cfg: StackConfig, timeout: float = 5.0) -> dict[str, Any]:
    r = httpx.get(f"{cfg.ts_management_url}/models/{cfg.model_name}", timeout=timeout)
    r.raise_for_status()
    (model,) = [m for m in r.json() if m.get("modelName") == cfg.model_name][:1] or [{}]
    workers = model.get("workers", [])
    return {
        "source": "TorchServe management API (describe model)",
        "model_version": str(model.get("modelVersion")),
        "batch_size": model.get("batchSize"),
        "max_batch_delay_ms": model.get("maxBatchDelay"),
        "min_workers": model.get("minWorkers"),
        "max_workers": model.get("maxWorkers"),
        "workers": len(workers),
        "workers_ready": sum(1 for w in workers if w.get("status") == "READY"),
        "response_timeout_s": model.get("responseTimeout"),
        "torch_threads_per_worker": _worker_threads(workers),
    }


def _worker_threads(workers: list[dict[str, Any]]) -> int | None:
    """The torch threads the handler sets in its worker (DIGITS_TORCH_THREADS in the worker's environment, 1 when
    unset), read from the first worker process found on this machine; None where no worker process is visible."""
    for w in workers:
        try:
            environ = Path(f"/proc/{int(w['pid'])}/environ").read_bytes().split(b"\0")
        except (OSError, KeyError, TypeError, ValueError):
            continue
        found = [e.split(b"=", 1)[1] for e in environ if e.startswith(b"DIGITS_TORCH_THREADS=")]
        return int(found[0]) if found else 1
    return None


_LABELS = re.compile(r'(\w+)="([^"]*)"')


def compat_effective(cfg: StackConfig, monitoring_path: str, timeout: float = 5.0) -> dict[str, Any]:
    r = httpx.get(f"{cfg.tf_rest_url}{monitoring_path}", timeout=timeout)
    r.raise_for_status()
    line = next((x for x in r.text.splitlines() if x.startswith("tfserving_compat_effective_config{")), None)
    if line is None:
        raise ValueError("the TF side's metrics have no tfserving_compat_effective_config")
    labels = dict(_LABELS.findall(line))
    return {"source": "TF-Serving-compatible server's metrics", **_typed_tf(labels)}


def tf_serving_effective_from_cmdline(pid: int) -> dict[str, Any]:
    """Real TF Serving: the flags of the running process and the batching file they name."""
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    flags = dict(a.decode().lstrip("-").split("=", 1) for a in args if a.startswith(b"--") and b"=" in a)
    values: dict[str, str] = {
        "batching": flags.get("enable_batching", "false").lower(),
        "intra_op_threads": flags.get("tensorflow_intra_op_parallelism", "0"),
        "inter_op_threads": flags.get("tensorflow_inter_op_parallelism", "0"),
    }
    if values["batching"] == "true" and "batching_parameters_file" in flags:
        text = Path(flags["batching_parameters_file"]).read_text()
        values.update(dict(re.findall(r"(\w+)\s*\{\s*value:\s*(\d+)\s*\}", text)))
    return {"source": "tensorflow_model_server command line and batching file", **_typed_tf(values)}


def _typed_tf(values: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"batching": values.get("batching") == "true"}
    for key in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        out[key] = int(values[key]) if values.get(key, "").isdigit() else None
    for key in ("intra_op_threads", "inter_op_threads"):
        if values.get(key, "").isdigit():
            out[key] = int(values[key])  # 0: TensorFlow's default, one thread per core
    return out


def expected(cfg: StackConfig) -> dict[str, dict[str, Any]]:
    """What `cfg` asks each server for, in the same keys as the read-back."""
    tf: dict[str, Any] = {
        "batching": cfg.tf_batching,
        "intra_op_threads": cfg.runtime_threads,
        "inter_op_threads": cfg.runtime_threads,
    }
    if cfg.tf_batching:
        tf |= {"max_batch_size": cfg.tf_max_batch_size, "batch_timeout_micros": cfg.tf_batch_timeout_micros}
    torch = {
        "model_version": str(cfg.model_version),
        "batch_size": cfg.ts_batch_size,
        "max_batch_delay_ms": cfg.ts_max_batch_delay_ms,
        "min_workers": cfg.ts_workers,
        "max_workers": cfg.ts_workers,
        "workers_ready": cfg.ts_workers,
    }
    return {"tf": tf, "torch": torch}


def mismatches(wanted: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]]) -> list[str]:
    """Every setting whose value in force differs from the one asked for, as 'side key: asked X, runs Y'."""
    return [
        f"{side} {key}: asked {value!r}, runs {actual.get(side, {}).get(key)!r}"
        for side, keys in wanted.items()
        for key, value in keys.items()
        if actual.get(side, {}).get(key) != value
    ]
