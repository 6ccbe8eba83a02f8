"""The training Jobs (k8s/components/training) as pods under Docker, as k8s_pods.py runs the stack's pods.

The training overlay is rendered as a user applies it (`kubectl apply -k k8s/overlays/training`), the training
image is built from export/scaling/Dockerfile on the same base and a host wheelhouse (`.wheelhouse/training/`,
~580 MiB: torch + tensorflow-cpu), then each Indexed Job runs with its 2 pods at once: pod i named
`<job>-<i>` (its hostname) and reachable as `<job>-<i>.training` (the headless Service is the pods' subdomain) and
`training` on one Docker network, JOB_COMPLETION_INDEX = i and SCALING_JOB from the job-name label as the Job
controller sets them, as uid 10001 with a read-only root, no capabilities, fresh emptyDirs for /tmp and /reports,
and the container's resources.limits (1 CPU, 2 GiB). The Jobs run one after the other: their 4 pods ask for 4 CPUs.

The check's own run is short (the seed model, 2 epochs: SCALING_MODEL and SCALING_EPOCHS over the Job's env; the
manifests' defaults, digits_wide for 8 epochs, are for a real cluster). Both pods of each Job must exit 0, and pod 0's
log (`kubectl logs <job>-0-...`, how a user takes the report) must carry the report and its summary line, whose
figures must parse and agree with the report's table.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from typing import Any

from stack.compose.k8s_pods import LABEL, NETWORK, PodFailure, PodRun, _docker, cleanup, render
from stack.config import ROOT

OVERLAY = ROOT / "k8s" / "overlays" / "training"
JOBS = ("training-pytorch", "training-tensorflow")
IMAGE = "servecompare-training:0.1.0"  # the Jobs' image, as the Dockerfile's header builds it
LIGHT = {"SCALING_MODEL": "digits", "SCALING_EPOCHS": "2"}
JOB_TIMEOUT_S = 300
BUILD_TIMEOUT_S = 1200
SUMMARY_MARK = "== summary.json "  # export.scaling.pod's


def build_image(base: str) -> float:
    """The training image on `base` from the wheelhouse; seconds it took (a few when Docker's cache has it)."""
    start = time.monotonic()
    try:
        _docker("build", "-q", "-f", "export/scaling/Dockerfile", "--build-arg", f"BASE_IMAGE={base}", "-t", IMAGE,
                str(ROOT), timeout=BUILD_TIMEOUT_S)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise PodFailure(f"the training image took over {BUILD_TIMEOUT_S} s to build") from exc
    return time.monotonic() - start


def check_report(job: str, framework: str, workers: int, epochs: int, log: str) -> dict[str, Any]:
    """Pod 0's log carries the report: its summary line parses, has this Job's row (framework, N, epochs) with
    finite, positive figures, and the report's table shows the same samples/s and accuracy."""
    line = next((x for x in log.splitlines() if x.startswith(SUMMARY_MARK)), None)
    if line is None or "# Training scaling" not in log:
        raise PodFailure(f"{job}: no report in pod 0's log: {log[-1500:]}")
    rows = json.loads(line.removeprefix(SUMMARY_MARK))
    mine = [r for r in rows if r["framework"] == framework and r["workers"] == workers]
    if len(mine) != 1:
        raise PodFailure(f"{job}: the summary has no single {framework} row at N = {workers}: {rows}")
    row = mine[0]
    figures = ("samples_per_s", "epoch_s_median", "step_ms", "compute_ms", "allreduce_ms")
    bad = [k for k in figures if not (isinstance(row[k], int | float) and math.isfinite(row[k]) and row[k] > 0)]
    if bad or row["epochs"] != epochs or not 0 <= row["final_accuracy"] <= 1:
        raise PodFailure(f"{job}: figures {bad} not positive, or epochs {row['epochs']} != {epochs}: {row}")
    table = re.search(rf"^\| {framework} \| {workers} \| [^|]+\| [^|]+\| (\d+) \| [^|]+\| ([\d.]+) \|", log, re.M)
    if (
        table is None
        or int(table[1]) != round(row["samples_per_s"])
        or float(table[2]) != round(row["final_accuracy"], 4)
    ):
        raise PodFailure(f"{job}: the report's table row does not match the summary: {table and table[0]} vs {row}")
    return row


def run_training(kubectl: str, base: str, timeout: float = JOB_TIMEOUT_S) -> str:
    """Build the training image, run both Jobs' pods, check them; always clean up."""
    built = build_image(base)
    run = PodRun(render(kubectl, OVERLAY), {}, base)
    cleanup()
    _docker("network", "create", "--label", LABEL, NETWORK)
    done = []
    try:
        for job in JOBS:
            spec = run.deployments()[job]["spec"]
            env = {e["name"]: e.get("value") for e in spec["template"]["spec"]["containers"][0]["env"]}
            start = time.monotonic()
            pods = run.run_indexed_job(job, LIGHT, timeout)
            took = time.monotonic() - start
            for index, (code, log) in sorted(pods.items()):
                (run.work / f"{job}-{index}.log").write_text(log)
                if code != 0:
                    raise PodFailure(f"{job}-{index} exited {code}: {log[-2000:]}")
            row = check_report(job, env["SCALING_FRAMEWORK"], int(env["SCALING_WORKERS"]), int(LIGHT["SCALING_EPOCHS"]),
                               pods[0][1])  # fmt: skip
            done.append(
                f"{job}: {len(pods)} pods exit 0 in {took:.0f} s, pod 0's report {row['samples_per_s']:.0f} samples/s, "
                f"accuracy {row['final_accuracy']:.3f}, all-reduce {row['allreduce_share']:.0%} of a step"
            )
    finally:
        cleanup()
    light = ", ".join(f"{k}={v}" for k, v in LIGHT.items())
    return f"image built in {built:.0f} s; {'; '.join(done)} ({light}; logs in {run.work})"
