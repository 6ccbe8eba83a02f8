"""`python -m loadtest bench|soak|report`: the comparison benchmark on the native stack, and its report."""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from stack.config import ROOT


def _cores(text: str) -> dict[str, float]:
    """`2` (both backends) or `tf=2,torch=1.5`: cores, each > 0."""
    try:
        if "=" not in text:
            pairs = {"tf": float(text), "torch": float(text)}
        else:
            pairs = {k.strip(): float(v) for k, v in (part.split("=", 1) for part in text.split(","))}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: N, or tf=N,torch=M ({exc})") from exc
    bad = [k for k, v in pairs.items() if k not in ("tf", "torch") or not v > 0]
    if bad:
        raise argparse.ArgumentTypeError(f"{text!r}: backends are tf and torch, cores > 0 (not {', '.join(bad)})")
    return pairs


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser(
        "bench",
        help="start-up, concurrency x rows sweep with repeated trials, open-loop SLO search; writes reports/<time>/",
        description="The comparison benchmark on the native stack (loopback only). Defaults take about 10 minutes on "
        "2 cores; --quick about 2.",
    )
    b.add_argument("--users", type=_ints, default=None, help="closed-loop concurrency levels (default 1,4,16,64)")
    b.add_argument("--rows", type=_ints, default=None, help="rows per request, a dimension (default 1,64)")
    b.add_argument("--duration", type=float, default=None, help="seconds per trial (default 2.5)")
    b.add_argument("--trials", type=int, default=None, help="trials per point, interleaved (default 3)")
    b.add_argument(
        "--max-trials", type=int, default=None, help="trials for a point that does not settle (default 5; --quick 3)"
    )
    b.add_argument(
        "--verdict-trials", type=int, default=5,
        help="minimum trials of the points the verdict reads (each side direct, batching off, fewest rows; default 5)",
    )  # fmt: skip
    b.add_argument(
        "--verdict-max-trials", type=int, default=0,
        help="most trials of the points the verdict reads (default: one more than --verdict-trials)",
    )  # fmt: skip
    b.add_argument(
        "--load-warmup", type=float, default=None,
        help="seconds each target runs under load (the most users) before the sweep, discarded (default 2; --quick 1)",
    )  # fmt: skip
    b.add_argument(
        "--stable-within", type=float, default=0.10, help="spread allowed between the last 3 trials (default 0.10)"
    )
    b.add_argument(
        "--window", type=float, default=None,
        help="seconds a measurement window inside each trial's continuous load, after a discarded warm-up; a trial "
        "ends when its last 3 windows agree within --stable-within (default 0.5; --quick 0.4; 0: fixed --duration)",
    )  # fmt: skip
    b.add_argument("--max-windows", type=int, default=None, help="windows a trial may take to agree (default 5)")
    b.add_argument("--targets", default="tf-direct,torch-direct,gateway-tf,gateway-torch,gateway-compare")
    b.add_argument(
        "--batching", choices=["off", "on", "both"], default="off", help="server-side batching (default off)"
    )
    b.add_argument(
        "--models", default="", help="registered models, a dimension (models.toml; default: the default model)"
    )
    b.add_argument("--driver", choices=["lean", "locust"], default="lean", help="load generator (default lean)")
    b.add_argument("--slo-ms", type=float, default=50.0, help="p99 bound of the open-loop SLO search; 0 skips it")
    b.add_argument("--slo-start", type=float, default=None, help="first offered rate, req/s (default 100)")
    b.add_argument("--slo-arrivals", type=int, default=None, help="arrivals per SLO step (default 600; --quick 300)")
    b.add_argument(
        "--plan-rate", type=float, default=10_000.0, help="target rate of the report's capacity plan (default 10000)"
    )
    b.add_argument("--no-startup", action="store_true", help="skip the start-up and footprint measurement")
    b.add_argument("--startup-repeats", type=int, default=None, help="starts per server (default 5; --quick 3)")
    b.add_argument("--no-overhead", action="store_true", help="skip the gateway-vs-passthrough hop measurement")
    b.add_argument("--quick", action="store_true", help="a 2-minute look: users 1,16, rows 1, short trials")
    b.add_argument("--out", type=Path, default=None, help="report folder (default reports/<timestamp>)")
    b.add_argument("--replace", action="store_true", help="first stop any stack this checkout left running")
    b.add_argument(
        "--quiet", action="store_true",
        help="for CI: print the stage lines (==) and the verdict only, no line per trial or step with its progress",
    )  # fmt: skip
    d = b.add_argument_group("the deployment under test (stack/deployments)")
    d.add_argument("--deployment", choices=["native", "compose", "endpoints"], default="native",
                   help="native: stacks this checkout starts (default); compose: the docker compose project; "
                   "endpoints: a running deployment given by URLs")  # fmt: skip
    d.add_argument("--attach", action="store_true", help="compose: measure the running project, leave it running")
    d.add_argument("--project", default="", help="compose project name (default $COMPOSE_PROJECT_NAME or the folder)")
    d.add_argument("--compose-file", type=Path, action="append", default=None,
                   help="compose file, repeatable (default docker-compose.yml)")  # fmt: skip
    d.add_argument("--tf-url", default="", help="endpoints: TF Serving's REST base URL")
    d.add_argument("--torch-url", default="", help="endpoints: TorchServe's inference base URL")
    d.add_argument("--gateway-url", default="", help="endpoints: the gateway's base URL")
    d.add_argument("--torch-metrics-url", default="", help="endpoints: TorchServe's metrics base URL (optional)")
    d.add_argument("--torch-management-url", default="", help="endpoints: TorchServe's management URL (optional)")
    d.add_argument("--prometheus", default="", help="endpoints: Prometheus base URL for each pod's CPU and memory")
    d.add_argument("--namespace", default="servecompare", help="endpoints: the pods' namespace (Prometheus labels)")
    d.add_argument(
        "--server-cores", type=_cores, default={},
        help="endpoints: the cores each backend's pods may use together (their CPU limits summed), for the capacity "
        "plan: N for both, or tf=N,torch=M",
    )  # fmt: skip
    o = sub.add_parser(
        "overhead",
        help="the gateway's added latency and CPU vs calling the backend directly and vs a bare passthrough",
    )
    o.add_argument("--rows", type=_ints, default=[1, 64], help="rows per request (default 1,64)")
    o.add_argument("--trials", type=int, default=5, help="rounds per backend and rows (default 5)")
    o.add_argument(
        "--duration", type=float, default=6.0, help="seconds per round, its three routes in turn (default 6)"
    )
    o.add_argument("--out", type=Path, default=None)
    s = sub.add_parser("soak", help="constant load through the gateway to both backends for minutes")
    s.add_argument("--minutes", type=float, default=3.0)
    s.add_argument("--users", type=int, default=8)
    s.add_argument("--out", type=Path, default=None)
    r = sub.add_parser("report", help="rewrite report.md, report.html and the plots from a summary.json")
    r.add_argument("folder", type=Path)
    r.add_argument("--plan-rate", type=float, default=None, help="re-plan capacity for this target rate (req/s)")
    r.add_argument(
        "--against", type=Path, default=None,
        help="another run's folder: print both runs' verdicts side by side, whether they agree and why not",
    )  # fmt: skip
    args = parser.parse_args(argv)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    if args.command == "report":
        import json

        from loadtest.report import write_report

        summary = json.loads((args.folder / "summary.json").read_text())
        if args.against:
            from loadtest.report.repeat import compare, markdown

            names = (str(args.folder), str(args.against))
            other = json.loads((args.against / "summary.json").read_text())
            print(markdown(compare(summary, other, names), names))
            return 0
        if args.plan_rate:
            summary["options"]["plan_rate_rps"] = args.plan_rate
        print(write_report(summary, args.folder))
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
    from stack.config import StackConfig
    from stack.launcher import StackError, stop_registered

    cfg = StackConfig.load()
    by_url = getattr(args, "deployment", "") == "endpoints"  # a running deployment serves models of its own
    if not by_url and (not (cfg.tf_version_dir / "saved_model.pb").exists() or not cfg.mar_path.exists()):
        from export.__main__ import main as export_main

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

    if args.command == "overhead":
        return _overhead(args, stamp)

    from loadtest.bench import BenchOptions, StageFailed, bench

    if getattr(args, "replace", False):
        stop_registered()

    quick = args.quick
    opts = BenchOptions(
        users=args.users or ([1, 16] if quick else [1, 4, 16, 64]),
        rows=args.rows or ([1] if quick else [1, 64]),
        duration_s=args.duration or (1.5 if quick else 2.5),
        trials=args.trials or 3,
        max_trials=args.max_trials or (3 if quick else 5),
        verdict_trials=args.verdict_trials,
        verdict_max_trials=args.verdict_max_trials,
        load_warmup_s=args.load_warmup if args.load_warmup is not None else (1.0 if quick else 2.0),
        stable_within=args.stable_within,
        window_s=args.window if args.window is not None else (0.4 if quick else 0.5),
        warmup_s=0.3 if quick else 0.5,
        max_windows=args.max_windows or 5,
        targets=args.targets.split(","),
        batching=["off", "on"] if args.batching == "both" else [args.batching],
        driver=args.driver,
        startup=not args.no_startup,
        startup_repeats=args.startup_repeats or (3 if quick else 5),
        overhead=not args.no_overhead,
        slo_ms=args.slo_ms or None,
        slo_start_rps=args.slo_start or (200.0 if quick else 100.0),
        slo_refine_steps=2 if quick else 4,
        slo_arrivals=args.slo_arrivals or (300 if quick else 600),
        models=[m for m in args.models.split(",") if m],
        plan_rate_rps=args.plan_rate,
    )
    out = args.out or ROOT / "reports" / stamp
    print(f"== benchmark -> {out}")
    log = stage_lines if args.quiet else print
    try:
        summary = _bench_on(args, opts, out, partial(bench, log=log))
    except (StageFailed, StackError, ValueError, RuntimeError, ConnectionError) as exc:
        print(f"error: benchmark stage failed: {exc}", file=sys.stderr)
        return 1
    print(f"== report: {out / 'report.md'}, the same as one page: {out / 'report.html'} ({summary['wall_s']} s)")
    from loadtest.report import verdict

    for line in verdict(summary):
        print(f"   {line['dimension']}: {line['text']}")
    failed = sum(p["failures"] for p in summary["points"])
    if failed:
        print(f"!! {failed} failed requests: see the report", file=sys.stderr)
    return 0


def stage_lines(line: str) -> None:
    """--quiet: a stage's heading (`== ...`) only."""
    if line.startswith("=="):
        print(line)


def _bench_on(args: argparse.Namespace, opts: Any, out: Path, bench: Any) -> dict[str, Any]:
    """The bench on the deployment asked for: native starts its own stacks; compose and endpoints are brought up
    (or attached to) once, measured as they run (no start-up or hop measurement: those start servers here)."""
    if args.deployment == "native":
        return dict(bench(opts, out))
    from stack.config import StackConfig
    from stack.deployments import Endpoints, open_deployment

    if len(opts.models) > 1:
        raise ValueError(f"--deployment {args.deployment} serves the models it was started with: one --models only")
    opts.startup, opts.overhead = False, False
    if args.deployment == "compose":
        files = tuple(args.compose_file) if args.compose_file else ()
        deployment = open_deployment("compose", project=args.project, attach=args.attach,
                                     **({"files": files} if files else {}))  # fmt: skip
    else:
        if not (args.tf_url and args.torch_url and args.gateway_url):
            raise ValueError("--deployment endpoints needs --tf-url, --torch-url and --gateway-url")
        urls = Endpoints(StackConfig.load().model_name, args.tf_url.rstrip("/"), args.torch_url.rstrip("/"),
                         args.gateway_url.rstrip("/"), args.torch_metrics_url.rstrip("/"),
                         args.torch_management_url.rstrip("/"))  # fmt: skip
        deployment = open_deployment("endpoints", urls=urls, prometheus=args.prometheus, namespace=args.namespace,
                                     server_cores=args.server_cores)  # fmt: skip
    deployment.up(print)
    try:
        return dict(bench(opts, out, stack=deployment))
    finally:
        deployment.down(print)


def _overhead(args: argparse.Namespace, stamp: str) -> int:
    import json

    from loadtest.overhead import measure_overhead
    from loadtest.report.tables import hop_table
    from stack.config import StackConfig
    from stack.launcher import NativeStack
    from stack.registry import model as registry_model

    out = args.out or ROOT / "reports" / f"overhead-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    cfg = StackConfig.load({"TF_BATCHING": "false", "TS_BATCH_SIZE": "1"})
    stack = NativeStack(cfg, run_dir=out / "stack", models=[registry_model(cfg.model_name)])  # the measured model
    print("== starting the native stack (batching off)")
    stack.up(log=lambda line: print("   " + line))
    try:
        result = measure_overhead(stack, args.rows, args.trials, args.duration, print)
    finally:
        stack.down(log=lambda line: print("   " + line))
    (out / "overhead.json").write_text(json.dumps(result, indent=1))
    lines = hop_table(result)
    (out / "overhead.md").write_text("# Gateway overhead\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
