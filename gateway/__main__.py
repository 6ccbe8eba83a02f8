"""`python -m gateway [--host H] [--port P]`: serve the gateway with uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from stack.config import StackConfig


def main(argv: list[str] | None = None) -> int:
    cfg = StackConfig.load(environ=False)  # GATEWAY_* configure the gateway; see settings.py
    parser = argparse.ArgumentParser(prog="python -m gateway")
    parser.add_argument("--host", default=cfg.host)
    parser.add_argument("--port", type=int, default=cfg.gateway_port)
    parser.add_argument(
        "--graceful-timeout", type=float, default=10.0, help="seconds in-flight requests get to finish after SIGTERM"
    )
    args = parser.parse_args(argv)
    uvicorn.run(
        "gateway.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=args.graceful_timeout,
        # The gateway reads no client address or scheme: X-Forwarded-* rewriting would be per-request cost only.
        proxy_headers=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
