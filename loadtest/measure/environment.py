"""What ran: machine, versions, the TF side's real name, batching settings and the load generator."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
from typing import Any

from stack.config import StackConfig
from stack.launcher import TF_BINARY, tf_server_kind
from stack.tfserving_compat import DISPLAY_NAME as COMPAT_NAME

DRIVERS = {
    "lean": "the lean client (loadtest/drive/lean.py: asyncio + uvloop, raw HTTP/1.1 keep-alive, every answer "
    "checked), one process on the same machine as the servers",
    "locust": "locust (FastHttpUser), one process on the same machine as the servers, exact latencies from the "
    "locustfile's HDR hook",
}


def _version(pkg: str) -> str:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return "not installed"


def environment(cfg: StackConfig, opts: Any, batching_on: dict[int, dict[str, str]]) -> dict[str, Any]:
    kind = tf_server_kind()
    return {
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tf_server": "TensorFlow Serving (tensorflow_model_server)" if kind == TF_BINARY else COMPAT_NAME,
        "tf_server_is_real_tf_serving": kind == TF_BINARY,
        "versions": {
            p: _version(p)
            for p in ("tensorflow-cpu", "torch", "torchserve", "locust", "fastapi", "uvicorn", "httpx", "aiohttp")
        },
        "model": {"name": cfg.model_name, "version": cfg.model_version},
        "rows_per_request": opts.rows,
        "batching_modes": opts.batching,
        "batching_on_settings": {
            rows: {
                "rows_per_batch": int(o["TF_MAX_BATCH_SIZE"]),
                "tf_max_batch_size": int(o["TF_MAX_BATCH_SIZE"]),
                "tf_batch_timeout_micros": cfg.tf_batch_timeout_micros,
                "ts_batch_size": int(o["TS_BATCH_SIZE"]),
                "ts_max_batch_delay_ms": int(o["TS_MAX_BATCH_DELAY_MS"]),
            }
            for rows, o in batching_on.items()
        },
        "ts_workers": cfg.ts_workers,
        "runtime_threads": f"{cfg.runtime_threads} (TF intra-op and inter-op; torch threads per TorchServe worker)",
        "load_generator": DRIVERS.get(opts.driver, opts.driver),
        "trials": trials_text(opts),
    }


def trials_text(opts: Any) -> str:
    """How many trials a point got and how long each was, as the summary line reads it."""
    if opts.driver == "lean" and opts.window_s:
        each = (f"each one continuous load: a {opts.warmup_s:g} s warm-up, then {opts.window_s:g} s windows until "
                f"the last 3 agree within {opts.stable_within:.0%} (at most {opts.max_windows})")  # fmt: skip
    else:
        each = f"{opts.duration_s:g} s each"
    least, most = opts.verdict_bounds()
    text = (f"{opts.trials} to {opts.max_trials} per point ({least} to {most} for the points the verdict reads), "
            f"interleaved, until the last 3 agree within {opts.stable_within:.0%}; {each}")  # fmt: skip
    if opts.load_warmup_s:
        text += f"; every target first warmed under load for {opts.load_warmup_s:g} s"
    return text
