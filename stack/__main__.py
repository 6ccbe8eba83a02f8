"""`python -m stack up|down|status`: the whole stack as local processes on 127.0.0.1, no Docker.

`up` waits until every part is really ready, prints the URLs and stays in the foreground: Ctrl-C (or any part
dying) stops everything it started. `up --detach` returns once ready; `down` stops a detached stack.
Ports, model name and batch settings come from `.env`; any of them can be overridden in the environment,
e.g. `GATEWAY_PORT=9000 python -m stack up`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from stack.launcher import NativeStack, StackError, tf_server_kind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the stack and wait until it is ready")
    up.add_argument("--detach", action="store_true", help="return once ready; stop later with `down`")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds each part may take to be ready")
    sub.add_parser("down", help="stop everything the launcher started")
    sub.add_parser("status", help="show what runs")
    args = parser.parse_args(argv)
    stack = NativeStack()

    if args.command == "down":
        stack.down()
        return 0
    if args.command == "status":
        rows = stack.status()
        if not rows:
            print("not running")
            return 3
        for proc, alive in rows:
            print(f"{proc.name:18s} pid {proc.pid:<8d} {'running' if alive else 'DEAD':8s} {proc.url}")
        return 0 if all(alive for _, alive in rows) else 1

    print(f"== starting the native stack (TF side: {tf_server_kind()})")
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        procs = stack.up(timeout=args.timeout)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print("== ready:")
    for name, url in stack.urls().items():
        print(f"   {name:20s} {url}")
    if args.detach:
        print("== detached; stop with `python -m stack down` (or `make down`)")
        return 0
    print("== Ctrl-C stops everything")
    try:
        while True:
            dead = [p for p, alive in stack.status() if not alive]
            if dead:
                print(f"error: {', '.join(p.name for p in dead)} exited; stopping the stack", file=sys.stderr)
                stack.down()
                return 1
            time.sleep(1)
    except KeyboardInterrupt:
        print("\n== stopping")
        stack.down()
        return 0
    finally:
        del procs


if __name__ == "__main__":
    raise SystemExit(main())
