"""`python -m export.scaling [--model digits_wide] [--workers 1,2]`: see export/scaling/__init__.py.

Runs, for each N interleaved across frameworks (N=1 pytorch, N=1 tensorflow, N=2 pytorch, ...), N worker processes
on loopback, bounded in time (`--timeout` per run), stopped with their process group on Ctrl-C/SIGTERM or when this
command dies; then writes reports/scaling-<time>/ (report.md, scaling.png, summary.json) and TensorBoard runs
under runs/<time>/scaling-n<N>-<framework>/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from export import tensorboard
from export.scaling.plan import PROBE_ROUNDS, Plan, make_plan, median_ms
from stack.config import ROOT
from stack.launcher import free_port, log_tail
from stack.lifecycle import die_with_parent, stop_on_signals

MODULES = {"pytorch": "export.scaling.torch_ddp", "tensorflow": "export.scaling.tf_multiworker"}
TF_CHATTER = ("oneDNN custom operations", "absl::InitializeLog")  # start-up lines of every worker's log


def free_ports(count: int) -> int:
    """A base port with `count` consecutive free ports (the TF cluster spec names one per worker)."""
    for _ in range(50):
        base = free_port()
        if base + count < 65536 and all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no run of free loopback ports")


def _free(port: int) -> bool:
    from stack.launcher import port_free

    return port_free("127.0.0.1", port)


def run_workers(plan: Plan, work: Path, log_dir: Path | None, timeout_s: float) -> dict:  # type: ignore[type-arg]
    """Start the plan's N workers, wait for all (at most `timeout_s`), return rank 0's result."""
    port = free_ports(plan.workers)
    out = work / f"{plan.framework}-n{plan.workers}.json"
    out.unlink(missing_ok=True)
    procs = []
    logs = []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    for rank in range(plan.workers):
        cmd = [
            sys.executable, "-m", MODULES[plan.framework], "--framework", plan.framework,
            "--rank", str(rank), "--workers", str(plan.workers), "--port", str(port), "--epochs", str(plan.epochs),
            "--seed", str(plan.seed), "--global-batch", str(plan.global_batch), "--out", str(out),
            "--model", plan.model, "--probe-rounds", str(plan.probe_rounds),
        ]  # fmt: skip
        if plan.train_rows:
            cmd += ["--train-rows", str(plan.train_rows)]
        if log_dir is not None:
            cmd += ["--log-dir", str(log_dir)]
        log = open(work / f"{plan.framework}-n{plan.workers}-rank{rank}.log", "w")  # noqa: SIM115
        logs.append(log)
        popen = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        procs.append(popen)
    try:
        deadline = time.monotonic() + timeout_s
        for rank, proc in enumerate(procs):
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            if code != 0:
                raise RuntimeError(
                    f"{plan.framework} N={plan.workers}: worker {rank} exited {code}; the end of "
                    f"{logs[rank].name}:\n{log_tail(Path(logs[rank].name), without=TF_CHATTER)}"
                )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{plan.framework} N={plan.workers}: not done within {timeout_s:.0f} s") from exc
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for log in logs:
            log.close()
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.scaling", description=__doc__.split("\n")[0])
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    p.add_argument("--frameworks", default="pytorch,tensorflow")
    p.add_argument("--model", default="digits", help="a builtin model of models.toml (digits, digits_wide)")
    p.add_argument("--epochs", type=int, default=None, help="default: the model's (plan.RUN_DEFAULTS)")
    p.add_argument("--global-batch", type=int, default=None, help="split evenly across workers; default: the model's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-rows", type=int, default=None, help="a prefix of the training split (quick runs)")
    p.add_argument("--probe-rounds", type=int, default=PROBE_ROUNDS, help="rounds of the step split's timings")
    p.add_argument("--timeout", type=float, default=600, help="seconds per (framework, N) run")
    p.add_argument("--out", type=Path, default=None, help="report folder (default reports/scaling-<time>)")
    p.add_argument("--runs-dir", type=Path, default=ROOT / "runs", help="TensorBoard logs")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from export.device import describe
    from export.scaling.report import write_report

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or ROOT / "reports" / f"scaling-{stamp}"
    work = out / "workers"
    work.mkdir(parents=True, exist_ok=True)
    try:
        counts = [int(n) for n in args.workers.split(",")]
        frameworks = [f for f in args.frameworks.split(",") if f]
        plans = [
            make_plan(fw, n, args.model, args.epochs, args.global_batch, args.seed, args.train_rows, args.probe_rounds)
            for n in counts
            for fw in frameworks
        ]
    except ValueError as exc:
        p.error(str(exc))
    results = []
    try:
        with stop_on_signals():
            for plan in plans:
                fw, n = plan.framework, plan.workers
                log_dir = tensorboard.run_dir(args.runs_dir, stamp, f"scaling-n{n}", fw)
                print(f"== {fw}: {plan.model}, {n} worker(s), global batch {plan.global_batch}, {plan.epochs} epochs",
                      flush=True)  # fmt: skip
                result = run_workers(plan, work, log_dir, args.timeout)
                result["plan"] = asdict(plan)
                results.append(result)
                eps = sorted(result["epoch_seconds"][1:] or result["epoch_seconds"])
                split = {k: median_ms(v) for k, v in result["probe"].items()}
                print(
                    f"   median epoch {eps[len(eps) // 2]:.3f} s, test accuracy {result['accuracies'][-1]:.4f}; "
                    f"step {split['step']:.1f} ms = compute {split['compute']:.1f} + all-reduce "
                    f"{split['allreduce']:.1f} ms",
                    flush=True,
                )
    except KeyboardInterrupt:
        print("== interrupted: workers stopped", file=sys.stderr)
        return 130
    report = write_report(results, out, devices=describe(), tensorboard_dir=args.runs_dir / stamp)
    print(f"== report: {report}")
    print(f"== TensorBoard: tensorboard --logdir {args.runs_dir / stamp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
