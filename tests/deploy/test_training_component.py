"""k8s/components/training: the scaling run across pods as Indexed Jobs, rendered (alone and on the local
overlay), checked against the API schemas and checkov, hardened like k8s/base, and wired the way
export/scaling/pod.py expects (pod i reachable as <job>-<i>.<service>, N in one place per Job)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from export.scaling.plan import make_plan
from export.scaling.pod import command, tf_config
from stack.config import ROOT
from tests.deploy.test_deploy import checkov, kube_validate, render

COMPONENT = ROOT / "k8s" / "components" / "training"
IMAGE = "servecompare-training:0.1.0"


def kustomization(tmp: Path, resources: list[Path], components: list[Path]) -> Path:
    rel = lambda p: os.path.relpath(p, tmp)  # noqa: E731 - kustomize takes relative paths only
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": "servecompare",
        "resources": [rel(p) for p in resources], "components": [rel(p) for p in components],
    }))  # fmt: skip
    return tmp


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("training")
    path = out / "training.yaml"
    path.write_text(render(kustomization(out / "k", [], [COMPONENT])))
    return path


def objects(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def jobs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Job"}


def hardening_faults(docs: list[dict[str, Any]]) -> list[str]:
    """What k8s/base holds every pod to, for the Jobs' pods: (job, what is missing)."""
    faults = []
    for name, job in jobs(docs).items():
        spec = job["spec"]["template"]["spec"]
        if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
            faults.append(f"{name}: runAsNonRoot")
        if spec.get("automountServiceAccountToken") is not False or spec.get("enableServiceLinks") is not False:
            faults.append(f"{name}: service account token or service links")
        empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True or sc.get("capabilities", {}).get("drop") != ["ALL"]:
                faults.append(f"{name}/{c['name']}: read-only root, capabilities")
            if sc.get("allowPrivilegeEscalation") is not False:
                faults.append(f"{name}/{c['name']}: privilege escalation")
            if not {"requests", "limits"} <= set(c.get("resources", {})):
                faults.append(f"{name}/{c['name']}: requests and limits")
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            if mounts.get("/tmp") not in empty_dirs:
                faults.append(f"{name}/{c['name']}: /tmp on an emptyDir")
    return faults


def test_the_component_renders_and_passes_the_deployment_checks(training: Path) -> None:
    result = kube_validate(training)
    assert result.returncode == 0, result.stdout + result.stderr
    scan = checkov("--framework", "kubernetes", "--skip-check", "CKV_K8S_43,CKV_K8S_15", "-f", str(training))
    assert scan.returncode == 0, scan.stdout[-3000:]
    kinds = sorted(d["kind"] for d in objects(training))
    assert kinds == ["Job", "Job", "NetworkPolicy", "Service"]
    assert hardening_faults(objects(training)) == []


def test_the_component_adds_to_the_local_overlay(tmp_path: Path) -> None:
    path = tmp_path / "local-training.yaml"
    path.write_text(render(kustomization(tmp_path / "k", [ROOT / "k8s" / "overlays" / "local"], [COMPONENT])))
    result = kube_validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    docs = objects(path)
    assert set(jobs(docs)) == {"training-pytorch", "training-tensorflow"}
    assert len([d for d in docs if d["kind"] == "Deployment"]) >= 3  # the stack is still there


def test_the_hardening_check_catches_a_weakened_pod(training: Path) -> None:
    for old, new in [("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"),
                     ("runAsNonRoot: true", "runAsNonRoot: false"), ("- ALL", "- NET_RAW")]:  # fmt: skip
        text = training.read_text()
        assert old in text
        broken = [d for d in yaml.safe_load_all(text.replace(old, new, 1)) if d]
        assert hardening_faults(broken), old


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_each_job_is_indexed_and_its_pods_find_each_other_through_the_headless_service(training: Path) -> None:
    docs = objects(training)
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    for name, job in jobs(docs).items():
        spec, pod = job["spec"], job["spec"]["template"]["spec"]
        env = env_of(job)
        framework = name.removeprefix("training-")
        assert env["SCALING_FRAMEWORK"] == framework
        assert spec["completionMode"] == "Indexed" and spec["backoffLimit"] == 0
        assert spec["completions"] == spec["parallelism"] == int(env["SCALING_WORKERS"]) == 2
        assert pod["restartPolicy"] == "Never"
        # pod i's name is <job>-<i>.<subdomain>: the subdomain is a headless Service that selects these pods
        service = services[pod["subdomain"]]
        assert env["SCALING_SERVICE"] == pod["subdomain"] and env["SCALING_JOB"]["fieldRef"]["fieldPath"] == (
            "metadata.labels['job-name']"
        )
        assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
        assert service["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
        port = int(env["SCALING_PORT"])
        container = pod["containers"][0]
        assert port in [p["containerPort"] for p in container["ports"]]
        assert port in [p["port"] for p in service["spec"]["ports"]]
        assert container["image"] == IMAGE and container["command"] == ["python", "-m", "export.scaling.pod"]
        assert make_plan(framework, 2, env["SCALING_MODEL"]).per_worker_batch > 0
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"servecompare/role": "training"}
    dockerfile = (ROOT / "export" / "scaling" / "Dockerfile").read_text()
    assert f"-t {IMAGE} ." in dockerfile and re.search(r"^USER 10001:10001$", dockerfile, re.M)


def test_the_pods_commands_rendezvous_through_pod_zero() -> None:
    plan = make_plan("pytorch", 2, "digits_wide")
    cmd, env = command(plan, "training-pytorch", "training", 29400, 1, Path("/reports/w.json"))
    assert cmd[:4] == ["torchrun", "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d"] and env == {}
    assert "--rdzv-endpoint=training-pytorch-0.training:29400" in cmd and "export.scaling.torch_ddp" in cmd
    assert cmd[cmd.index("--model") + 1] == "digits_wide" and "--rank" not in cmd  # torchrun gives the rank
    tf_plan = make_plan("tensorflow", 2, "digits_wide")
    cmd, env = command(tf_plan, "training-tensorflow", "training", 2222, 1, Path("/reports/w.json"))
    assert cmd[cmd.index("--rank") + 1] == "1" and "export.scaling.tf_multiworker" in cmd
    assert yaml.safe_load(env["TF_CONFIG"]) == tf_config("training-tensorflow", "training", 2, 2222, 1) == {
        "cluster": {"worker": ["training-tensorflow-0.training:2222", "training-tensorflow-1.training:2222"]},
        "task": {"type": "worker", "index": 1},
    }


def test_the_training_overlay_applies_the_jobs_alone(tmp_path: Path) -> None:
    """k8s/overlays/training, as `kubectl apply -k` takes it (and the e2e's k8s training step renders it): the
    component's objects only, in the stack's namespace, valid against the API schemas."""
    path = tmp_path / "overlay-training.yaml"
    path.write_text(render(ROOT / "k8s" / "overlays" / "training"))
    result = kube_validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    docs = objects(path)
    assert sorted(d["kind"] for d in docs) == ["Job", "Job", "NetworkPolicy", "Service"]
    assert {d["metadata"].get("namespace") for d in docs} == {"servecompare"}
    assert hardening_faults(docs) == []
