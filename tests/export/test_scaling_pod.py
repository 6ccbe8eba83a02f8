"""export/scaling/pod.py, the Indexed Job's worker, run as two local processes the way two pods run it: the real
torchrun with its c10d rendezvous, and TF_CONFIG built from the index. Only the pods' DNS names are mapped to
loopback (TF's workers then need a port each); k8s/components/training's wiring is tests/deploy's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from export.scaling.pod import SUMMARY_MARK
from stack.config import ROOT
from stack.launcher import free_port

pytestmark = pytest.mark.integration

LOOPBACK_PODS = """
import sys, export.scaling.pod as pod
pod.peer = lambda job, index, service: "127.0.0.1"
named = pod.tf_config
pod.tf_config = lambda job, service, n, port, index: {
    **named(job, service, n, port, index), "cluster": {"worker": [f"127.0.0.1:{port + i}" for i in range(n)]}}
sys.exit(pod.main())
"""


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_two_pods_train_and_pod_zero_reports(framework: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
        "SCALING_FRAMEWORK": framework, "SCALING_WORKERS": "2", "SCALING_MODEL": "digits", "SCALING_EPOCHS": "2",
        "SCALING_JOB": f"training-{framework}", "SCALING_SERVICE": "training", "SCALING_PORT": str(port),
    }  # fmt: skip
    pods = [
        subprocess.Popen(
            [sys.executable, "-c", LOOPBACK_PODS],
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**env, "JOB_COMPLETION_INDEX": str(i), "SCALING_REPORTS": str(tmp_path / f"pod{i}")},
        )
        for i in range(2)
    ]
    logs = [p.communicate(timeout=300)[0] for p in pods]
    assert [p.returncode for p in pods] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    summary = [line for line in logs[0].splitlines() if line.startswith(SUMMARY_MARK)]
    assert len(summary) == 1 and SUMMARY_MARK not in logs[1]
    (row,) = json.loads(summary[0][len(SUMMARY_MARK) :])
    assert (row["framework"], row["workers"], row["epochs"], row["model"]) == (framework, 2, 2, "digits")
    assert row["final_accuracy"] >= 0.85 and row["probe_rounds"] > 0 and row["allreduce_ms"] > 0
    assert "## Where a step's time goes" in logs[0] and (tmp_path / "pod0" / "report.md").exists()
    assert f"Each worker is its own pod of the Indexed Job training-{framework} " in logs[0]  # not "on loopback"
    assert not (tmp_path / "pod1" / "report.md").exists()
    if framework == "pytorch":
        assert "--rdzv-backend=c10d --rdzv-endpoint=127.0.0.1:" in logs[1]
