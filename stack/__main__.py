"""`python -m stack up|down|status`: the whole stack as local processes on 127.0.0.1, no Docker.

`up` waits until every part is really ready, prints the URLs and stays in the foreground: Ctrl-C, SIGTERM, SIGHUP
(a closed terminal) or any part dying stops everything it started. `up --detach` returns once ready; `down` stops
a detached stack, and any other stack this checkout started and left running (a killed benchmark's, wherever its
run dir is: they are recorded under .run/registry/). `up --replace` stops those first.
Ports, model name and batch settings come from `.env`; any of them can be overridden in the environment,
e.g. `GATEWAY_PORT=9000 python -m stack up`.
"""

from __future__ import annotations

import argparse
import sys
import time

from stack.launcher import NativeStack, StackError, registered_stacks, stop_registered, tf_server_kind
from stack.lifecycle import stop_on_signals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the stack and wait until it is ready")
    up.add_argument("--detach", action="store_true", help="return once ready; stop later with `down`")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds each part may take to be ready")
    up.add_argument("--replace", action="store_true", help="first stop any stack this checkout left running")
    sub.add_parser("down", help="stop everything the launcher started (this checkout's stacks, wherever they run)")
    sub.add_parser("status", help="show what runs")
    args = parser.parse_args(argv)
    stack = NativeStack(owned=not (args.command == "up" and args.detach))

    if args.command == "down":
        stack.down()
        stop_registered()
        return 0
    if args.command == "status":
        return _status()

    print(f"== starting the native stack (TF side: {tf_server_kind()})")
    with stop_on_signals():
        ready = False
        try:
            if args.replace:
                stop_registered()
            stack.up(timeout=args.timeout)
            ready = True
            print("== ready:")
            for name, url in stack.urls().items():
                print(f"   {name:20s} {url}")
            if args.detach:
                print("== detached; stop with `python -m stack down` (or `make down`)")
                return 0
            print("== Ctrl-C stops everything")
            while True:
                dead = [p for p, alive in stack.status() if not alive]
                if dead:
                    print(f"error: {', '.join(p.name for p in dead)} exited; stopping the stack", file=sys.stderr)
                    stack.down()
                    return 1
                time.sleep(1)
        except StackError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as stop:
            print(f"\n== stopping ({stop or 'Ctrl-C'})")
            stack.down()  # up() already stopped what it started if the signal came during start-up
            return 0 if ready else 130


def _status() -> int:
    stacks = registered_stacks()
    if not any(rows for _, rows in stacks):
        print("not running")
        return 3
    healthy = True
    for run_dir, rows in stacks:
        print(f"stack in {run_dir}:")
        for proc, alive in rows:
            print(f"  {proc.name:18s} pid {proc.pid:<8d} {'running' if alive else 'DEAD':8s} {proc.url}")
            healthy &= alive
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
