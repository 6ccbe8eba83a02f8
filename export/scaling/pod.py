"""One worker of the scaling run as a pod of a Kubernetes Indexed Job (k8s/components/training):
`python -m export.scaling.pod`, configured by the environment the Job gives it.

- JOB_COMPLETION_INDEX (set by Kubernetes): this pod's index, 0..N-1. Pod i is reachable as
  `<job>-<i>.<service>` (an Indexed Job's pod hostname, under the headless Service named by the pods' subdomain).
- SCALING_FRAMEWORK (pytorch | tensorflow), SCALING_WORKERS (N, the Job's completions and parallelism),
  SCALING_JOB (the Job's name), SCALING_SERVICE (the headless Service), SCALING_PORT (torchrun's c10d rendezvous
  on pod 0, or every TensorFlow worker's gRPC port), SCALING_MODEL (default digits_wide), SCALING_EPOCHS,
  SCALING_GLOBAL_BATCH (defaults: the model's), SCALING_REPORTS (default /reports).

PyTorch runs under `torchrun --rdzv-backend=c10d` with pod 0 as the rendezvous endpoint (torchrun then gives the
ranks); TensorFlow gets TF_CONFIG with every pod's name and this pod's index. The pod of index 0 evaluates, writes
report.md and summary.json under SCALING_REPORTS and prints both to its log (`kubectl logs`), the JSON on one line
after `== summary.json `.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from export.scaling.plan import Plan, make_plan

SUMMARY_MARK = "== summary.json "


def setting(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise SystemExit(f"export.scaling.pod: ${name} is not set (the Job's pod template sets it)")
    return value


def worker_flags(plan: Plan, out: Path) -> list[str]:
    return [
        "--framework", plan.framework, "--workers", str(plan.workers), "--epochs", str(plan.epochs),
        "--global-batch", str(plan.global_batch), "--model", plan.model, "--seed", str(plan.seed),
        "--probe-rounds", str(plan.probe_rounds), "--out", str(out),
    ]  # fmt: skip


def peer(job: str, index: int, service: str) -> str:
    return f"{job}-{index}.{service}"


def tf_config(job: str, service: str, workers: int, port: int, index: int) -> dict[str, object]:
    cluster = {"worker": [f"{peer(job, i, service)}:{port}" for i in range(workers)]}
    return {"cluster": cluster, "task": {"type": "worker", "index": index}}


def command(plan: Plan, job: str, service: str, port: int, index: int, out: Path) -> tuple[list[str], dict[str, str]]:
    """The worker's command line and extra environment for this pod."""
    flags = worker_flags(plan, out)
    if plan.framework == "pytorch":
        return [
            "torchrun", f"--nnodes={plan.workers}", "--nproc-per-node=1", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={peer(job, 0, service)}:{port}", f"--rdzv-id={job}", "--max-restarts=0",
            "-m", "export.scaling.torch_ddp", *flags,
        ], {}  # fmt: skip
    if plan.framework == "tensorflow":
        env = {"TF_CONFIG": json.dumps(tf_config(job, service, plan.workers, port, index))}
        return [sys.executable, "-m", "export.scaling.tf_multiworker", "--rank", str(index), *flags], env
    raise SystemExit(f"export.scaling.pod: SCALING_FRAMEWORK must be pytorch or tensorflow, not {plan.framework!r}")


def main() -> int:
    index = int(setting("JOB_COMPLETION_INDEX"))
    epochs, batch = os.environ.get("SCALING_EPOCHS"), os.environ.get("SCALING_GLOBAL_BATCH")
    plan = make_plan(
        setting("SCALING_FRAMEWORK"), int(setting("SCALING_WORKERS")), setting("SCALING_MODEL", "digits_wide"),
        int(epochs) if epochs else None, int(batch) if batch else None,
    )  # fmt: skip
    reports = Path(setting("SCALING_REPORTS", "/reports"))
    out = reports / "workers" / f"{plan.framework}-n{plan.workers}.json"
    cmd, env = command(plan, setting("SCALING_JOB"), setting("SCALING_SERVICE"), int(setting("SCALING_PORT")),
                       index, out)  # fmt: skip
    print(f"== pod {index} of {plan.workers}: {' '.join(cmd)}", flush=True)
    code = subprocess.call(cmd, env={**os.environ, **env})
    if code != 0 or index != 0:
        return code
    from export.device import describe
    from export.scaling.report import write_report

    result = json.loads(out.read_text())
    result["plan"] = asdict(plan)
    placement = f"its own pod of the Indexed Job {setting('SCALING_JOB')} (one container)"
    report = write_report([result], reports, devices=describe(), tensorboard_dir=None, placement=placement)
    print(report.read_text(), flush=True)
    print(SUMMARY_MARK + json.dumps(json.loads((reports / "summary.json").read_text())["rows"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
