"""stack/compose/k8s_training.py: how the training Jobs' pods are started under Docker (the run itself is the
compose e2e's k8s training step), and the check of pod 0's report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stack.compose import k8s_pods, k8s_training
from tests.deploy.test_deploy import tool

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def run() -> k8s_pods.PodRun:
    return k8s_pods.PodRun(k8s_pods.render(tool("kubectl"), k8s_training.OVERLAY), {}, "base:1")


def started(run: k8s_pods.PodRun, monkeypatch: pytest.MonkeyPatch, job: str, index: int) -> list[list[str]]:
    """The docker commands run.start gives pod `index` of `job` (docker itself not called)."""
    calls: list[list[str]] = []

    def fake(*args: str, **_: Any) -> Any:
        calls.append(list(args))
        return None

    monkeypatch.setattr(k8s_pods, "_docker", fake)
    assert run.start(job, index, k8s_training.LIGHT, limits=True) == f"{job}-{index}"
    return calls


@pytest.mark.parametrize("job", k8s_training.JOBS)
def test_each_pod_is_named_and_reached_as_in_a_cluster(run: k8s_pods.PodRun, monkeypatch, job: str) -> None:  # type: ignore[no-untyped-def]
    calls = started(run, monkeypatch, job, 1)
    holder = next(c for c in calls if c[:2] == ["run", "-d"] and "sleep" in c)
    line = " ".join(holder)
    # the Indexed Job's hostname, its DNS name under the headless Service (the pods' subdomain), the Service
    assert f"--name k8s-{job}-1 " in line and f"--hostname {job}-1 " in line
    assert f"--network-alias {job}-1.training " in line and "--network-alias training " in line
    (worker,) = [c for c in calls if c[:4] == ["run", "--name", f"k8s-{job}-1-worker", "--label"]]
    env = {worker[i + 1].split("=", 1)[0]: worker[i + 1].split("=", 1)[1] for i, a in enumerate(worker) if a == "-e"}
    assert env["JOB_COMPLETION_INDEX"] == "1" and env["SCALING_JOB"] == job  # the controller's index, the label
    assert env["SCALING_MODEL"] == "digits" and env["SCALING_EPOCHS"] == "2"  # the check's short run
    assert env["SCALING_SERVICE"] == "training" and env["SCALING_WORKERS"] == "2"
    line = " ".join(worker)
    assert "--user 10001:10001" in line and "--read-only" in worker and "--cap-drop ALL" in line
    assert "--cpus 1.0" in line and f"--memory {2 * 2**30}" in line  # resources.limits
    assert f"--network container:k8s-{job}-1" in line
    assert "type=volume,source=k8s-training-" in line and "target=/tmp" in line and "target=/reports" in line
    assert worker[worker.index("--entrypoint") + 1 :][:4] == ["python", k8s_training.IMAGE, "-m", "export.scaling.pod"]


def test_a_field_the_pods_check_does_not_know_is_refused(run: k8s_pods.PodRun) -> None:
    spec = run.deployments()["training-pytorch"]["spec"]["template"]["spec"]
    ctr = {**spec["containers"][0], "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}
    with pytest.raises(k8s_pods.PodFailure, match="not simulated"):
        run._run_args("training-pytorch-0", spec, ctr, {"tmp": "t", "reports": "r"}, True, {})


@pytest.mark.parametrize(
    ("limits", "flags"),
    [({"cpu": "1", "memory": "2Gi"}, ["--cpus", "1.0", "--memory", str(2**31)]),
     ({"cpu": "500m", "memory": "256Mi"}, ["--cpus", "0.5", "--memory", str(2**28)]), ({}, [])],
)  # fmt: skip
def test_limits_become_docker_flags(limits: dict[str, str], flags: list[str]) -> None:
    assert k8s_pods._limit_args(limits) == flags


def test_pod_zeros_report_is_checked_and_its_figures_parse() -> None:
    """A real pod 0 log (training-pytorch-0 from a run of the check) passes; without the report, with a figure
    gone or a table that disagrees with the summary line, it fails."""
    log = (DATA / "training-pytorch-0.log").read_text()
    row = k8s_training.check_report("training-pytorch", "pytorch", 2, 2, log)
    assert row["workers"] == 2 and row["samples_per_s"] > 0
    with pytest.raises(k8s_pods.PodFailure, match="single pytorch row"):
        k8s_training.check_report("training-pytorch", "pytorch", 4, 2, log)
    with pytest.raises(k8s_pods.PodFailure, match="epochs"):
        k8s_training.check_report("training-pytorch", "pytorch", 2, 8, log)
    with pytest.raises(k8s_pods.PodFailure, match="no report"):
        k8s_training.check_report("training-pytorch", "pytorch", 2, 2, log.split(k8s_training.SUMMARY_MARK)[0])
    summary = next(x for x in log.splitlines() if x.startswith(k8s_training.SUMMARY_MARK))
    table = f"| pytorch | 2 | {row['strategy']} |"
    assert table in log
    with pytest.raises(k8s_pods.PodFailure, match="does not match"):
        k8s_training.check_report("training-pytorch", "pytorch", 2, 2, log.replace(table, "| pytorch | 3 |"))
    with pytest.raises(k8s_pods.PodFailure, match="not positive"):
        gone = summary.replace('"step_ms": ', '"step_ms": -', 1)
        k8s_training.check_report("training-pytorch", "pytorch", 2, 2, log.replace(summary, gone))


def test_the_e2e_runs_the_training_jobs_unless_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    from stack.compose import e2e

    runs: list[list[str]] = []
    monkeypatch.setattr(e2e, "engine_or_reason", lambda: (["docker-compose"], ""))
    monkeypatch.setattr(e2e, "run_steps", lambda what, compose, steps, keep: runs.append([n for n, _ in steps]) or 0)
    assert e2e.main([]) == 0 and e2e.main(["--skip-training"]) == 0
    assert runs[0][-2:] == ["k8s pods", "k8s training"] and runs[1][-1] == "k8s pods"
