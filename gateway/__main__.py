"""`python -m gateway [--host H] [--port P] [--workers N]`: serve the gateway with uvicorn."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

import uvicorn

from gateway.settings import Settings
from stack.config import StackConfig


def main(argv: list[str] | None = None) -> int:
    cfg = StackConfig.load(environ=False)  # GATEWAY_* configure the gateway; see settings.py
    parser = argparse.ArgumentParser(prog="python -m gateway")
    parser.add_argument("--host", default=cfg.host)
    parser.add_argument("--port", type=int, default=cfg.gateway_port)
    parser.add_argument(
        "--workers", type=int, default=None, help="processes on the port (default: GATEWAY_WORKERS, else 1)"
    )
    parser.add_argument(
        "--graceful-timeout", type=float, default=10.0, help="seconds in-flight requests get to finish after SIGTERM"
    )
    args = parser.parse_args(argv)
    workers = args.workers or Settings().workers
    if workers < 1:
        parser.error("--workers must be at least 1")
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its metrics here and /metrics sums them (gateway/metrics.py); set before the workers
        # start, which import prometheus_client.
        metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            "gateway.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=workers,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=args.graceful_timeout,
            # The gateway reads no client address or scheme: X-Forwarded-* rewriting would be per-request cost only.
            proxy_headers=False,
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
