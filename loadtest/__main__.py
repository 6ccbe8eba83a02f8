"""`python -m loadtest bench|soak|report`: the comparison benchmark on the native stack, and its report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from stack.config import ROOT


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="concurrency sweep + SLO search on the native stack; writes reports/<time>/")
    b.add_argument("--users", type=_ints, default=[1, 4, 16, 64], help="comma-separated sweep (default 1,4,16,64)")
    b.add_argument("--duration", type=float, default=8.0, help="seconds per run (default 8)")
    b.add_argument("--targets", default="tf-direct,torch-direct,gateway-tf,gateway-torch,gateway-compare")
    b.add_argument("--batch-size", type=int, default=1, help="rows per request")
    b.add_argument(
        "--batching",
        choices=["off", "on", "both"],
        default="off",
        help="server-side batching on both backends (default off)",
    )
    b.add_argument("--slo-ms", type=float, default=50.0, help="p99 bound for the SLO search; 0 skips it")
    b.add_argument("--slo-users", type=int, default=16)
    b.add_argument("--slo-duration", type=float, default=6.0)
    b.add_argument("--out", type=Path, default=None, help="report folder (default reports/<timestamp>)")
    b.add_argument("--replace", action="store_true", help="first stop any stack this checkout left running")
    s = sub.add_parser("soak", help="constant load through the gateway to both backends for minutes")
    s.add_argument("--minutes", type=float, default=3.0)
    s.add_argument("--users", type=int, default=8)
    s.add_argument("--out", type=Path, default=None)
    r = sub.add_parser("report", help="rewrite report.md and plots from a summary.json")
    r.add_argument("folder", type=Path)
    args = parser.parse_args(argv)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    if args.command == "report":
        import json

        from loadtest.report import write_report

        print(write_report(json.loads((args.folder / "summary.json").read_text()), args.folder))
        return 0

    from stack.lifecycle import stop_on_signals

    # SIGTERM and SIGHUP (a CI time-out, `kill`, a closed terminal) stop the stack as Ctrl-C does; the servers also
    # die with this process if it is SIGKILLed (stack/lifecycle.py).
    with stop_on_signals():
        try:
            return _run(args, stamp)
        except KeyboardInterrupt as stop:
            print(f"== interrupted ({stop or 'Ctrl-C'}): the stack was stopped", file=sys.stderr)
            return 130


def _run(args: argparse.Namespace, stamp: str) -> int:
    from export.__main__ import main as export_main
    from stack.config import StackConfig
    from stack.launcher import StackError, stop_registered

    cfg = StackConfig.load()
    if not (cfg.tf_version_dir / "saved_model.pb").exists() or not cfg.mar_path.exists():
        print("== models missing: exporting first")
        export_main(["--quiet"])

    if args.command == "soak":
        from loadtest.soak import soak

        out = args.out or ROOT / "reports" / f"soak-{stamp}"
        try:
            soak(minutes=args.minutes, users=args.users, out=out)
        except (StackError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0

    from loadtest.runner import BenchOptions, StageFailed, bench

    if getattr(args, "replace", False):
        stop_registered()

    opts = BenchOptions(
        users=args.users,
        duration_s=args.duration,
        targets=args.targets.split(","),
        batch_size=args.batch_size,
        batching=["off", "on"] if args.batching == "both" else [args.batching],
        slo_ms=args.slo_ms or None,
        slo_users=args.slo_users,
        slo_duration_s=args.slo_duration,
    )
    out = args.out or ROOT / "reports" / stamp
    print(f"== benchmark -> {out}")
    try:
        summary = bench(opts, out)
    except (StageFailed, StackError) as exc:
        print(f"error: benchmark stage failed: {exc}", file=sys.stderr)
        return 1
    print(f"== report: {out / 'report.md'} ({summary['wall_s']} s)")
    measurements: list[dict[str, int]] = summary["measurements"]  # type: ignore[assignment]
    failed = sum(m["failures"] for m in measurements)
    if failed:
        print(f"!! {failed} failed requests: see the report", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
