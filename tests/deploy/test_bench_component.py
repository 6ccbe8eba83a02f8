"""k8s/components/bench: the comparison benchmark as a Job in the cluster. It renders on the local overlay, passes
the API schemas and checkov, is hardened like k8s/base with no API access (no RBAC, no token), its NetworkPolicy
admits the Job's pods to the backends' serving and metrics ports (the base admits only the gateway), and the image
it names carries the bench (loadtest/Dockerfile)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stack.config import ROOT
from tests.deploy.test_deploy import checkov, kube_validate, render
from tests.deploy.test_training_component import hardening_faults, kustomization, objects

COMPONENT = ROOT / "k8s" / "components" / "bench"
IMAGE = "servecompare-loadtest:0.1.0"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    path = out / "local-bench.yaml"
    path.write_text(render(kustomization(out / "k", [ROOT / "k8s" / "overlays" / "local"], [COMPONENT])))
    return path


def the_job(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (job,) = [d for d in docs if d["kind"] == "Job"]
    return job


def admitted(docs: list[dict[str, Any]], source: dict[str, str], target: dict[str, str], port: int) -> bool:
    """Would a pod labelled `source` reach `port` of a pod labelled `target` in the same namespace? NetworkPolicy's
    rule: where any Ingress policy selects the target, some rule of one of them must admit the source and port."""
    policies = [d for d in docs if d["kind"] == "NetworkPolicy" and "Ingress" in d["spec"]["policyTypes"]]
    selecting = [p for p in policies if p["spec"]["podSelector"].get("matchLabels", {}).items() <= target.items()]
    selecting += [
        p for p in policies if any(
            target.get(e["key"]) in e["values"] for e in p["spec"]["podSelector"].get("matchExpressions", [])
        )
    ]  # fmt: skip
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from")
            ports = [p["port"] for p in rule.get("ports", [])]
            from_ok = peers is None or any(
                "podSelector" in peer and "namespaceSelector" not in peer
                and peer["podSelector"].get("matchLabels", {}).items() <= source.items()
                for peer in peers
            )  # fmt: skip
            if from_ok and (not ports or port in ports):
                return True
    return False


def test_it_renders_on_the_local_overlay_and_passes_the_deployment_checks(rendered: Path) -> None:
    result = kube_validate(rendered)
    assert result.returncode == 0, result.stdout + result.stderr
    scan = checkov("--framework", "kubernetes", "--skip-check", "CKV_K8S_43,CKV_K8S_15", "-f", str(rendered))
    assert scan.returncode == 0, scan.stdout[-3000:]
    docs = objects(rendered)
    assert the_job(docs)["metadata"]["namespace"] == "servecompare"
    assert len([d for d in docs if d["kind"] == "Deployment"]) >= 3  # the stack is still there


def test_it_is_hardened_and_reads_no_kubernetes_api(rendered: Path) -> None:
    docs = objects(rendered)
    assert hardening_faults(docs) == []
    job = the_job(docs)
    spec = job["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False and "serviceAccountName" not in spec
    # least privilege: it reads only the Services and (optionally) Prometheus, so no RBAC objects at all
    assert not [d for d in docs if d["kind"] in {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding",
                                                 "ServiceAccount"}]  # fmt: skip
    (ctr,) = spec["containers"]
    assert ctr["resources"]["requests"] == ctr["resources"]["limits"]
    mounts = {m["mountPath"] for m in ctr["volumeMounts"]}
    assert {"/tmp", "/reports"} <= mounts
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in ctr["env"]}
    assert env["BENCH_REPORTS"] == "/reports" and env["MPLCONFIGDIR"].startswith("/tmp")
    assert env["SERVECOMPARE_RUN_DIR"].startswith("/tmp")
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert job["spec"]["backoffLimit"] == 0 and spec["restartPolicy"] == "Never"
    assert job["spec"]["ttlSecondsAfterFinished"] >= 3600  # the log (the report) stays to be taken


def test_the_hardening_check_catches_a_job_with_a_token(rendered: Path) -> None:
    text = rendered.read_text()
    broken = [d for d in yaml.safe_load_all(text.replace("automountServiceAccountToken: false",
                                                          "automountServiceAccountToken: true")) if d]  # fmt: skip
    assert hardening_faults(broken)


def test_the_jobs_pods_may_reach_the_backends_through_the_services(rendered: Path) -> None:
    docs = objects(rendered)
    job = the_job(docs)
    bench = job["spec"]["template"]["metadata"]["labels"]
    backends = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
                for d in docs if d["kind"] == "Deployment"}  # fmt: skip
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    args = dict(a.removeprefix("--").split("=", 1) for a in job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert args == {
        "tf-url": "http://tf-serving:8501", "torch-url": "http://torchserve:8080",
        "gateway-url": "http://gateway:8000", "torch-metrics-url": "http://torchserve:8082",
    }  # fmt: skip
    for url in args.values():
        host, port = url.removeprefix("http://").split(":")
        service = services[host]
        (sport,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
        pod = backends[host]
        ctr = next(c for c in next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == host)
                   ["spec"]["template"]["spec"]["containers"] if any(p.get("name") == sport["targetPort"]
                                                                     for p in c.get("ports", [])))  # fmt: skip
        target = next(p["containerPort"] for p in ctr["ports"] if p["name"] == sport["targetPort"])
        assert admitted(docs, bench, pod, target), f"{url}: the bench's pods are not admitted to port {target}"
    # ... and no further: not TorchServe's management port, and without the component's policy not at all
    assert not admitted(docs, bench, backends["torchserve"], 8081)
    without = [d for d in docs if d["metadata"]["name"] != "backends-from-bench"]
    assert not admitted(without, bench, backends["tf-serving"], 8501)
    assert not admitted(without, bench, backends["torchserve"], 8080)
    # nothing may reach the bench's pod
    assert not admitted(docs, backends["gateway"], bench, 8089)


def test_the_job_runs_the_bench_on_the_image_that_carries_it(rendered: Path) -> None:
    (ctr,) = the_job(objects(rendered))["spec"]["template"]["spec"]["containers"]
    assert ctr["image"] == IMAGE and ctr["command"] == ["python", "-m", "loadtest.job", "run"]
    dockerfile = (ROOT / "loadtest" / "Dockerfile").read_text()
    assert f"-t {IMAGE} ." in dockerfile
    for needed in ("COPY loadtest/ loadtest/", "COPY stack/deployments/ stack/deployments/", "models.toml",
                   "k8s/base/tf-serving.yaml k8s/base/torchserve.yaml", "export/serving_config.py"):  # fmt: skip
        assert needed in dockerfile, needed
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!k8s/base/tf-serving.yaml" in ignore and "!k8s/base/torchserve.yaml" in ignore
    # aiohttp: loadtest/drive/passthrough.py, the native bench's hop measurement only (off on --deployment endpoints)
    assert image_imports_not_installed() == ["aiohttp"]


def image_imports_not_installed() -> list[str]:
    """Third-party modules that the image's Python files import (anywhere in them: the bench imports lazily)
    and that neither loadtest/requirements.txt nor its requirements' requirements install."""
    import ast
    import importlib.metadata as md
    import re
    import sys

    from packaging.requirements import Requirement

    text = (ROOT / "loadtest" / "Dockerfile").read_text().replace("\\\n", " ")
    sources: list[Path] = []
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line and "/wheels/" not in line:
            for src in line.split()[1:-1]:
                path = ROOT / src
                sources += sorted(path.rglob("*.py")) if path.is_dir() else [path] if src.endswith(".py") else []
    ours = {"loadtest", "stack", "export", "gateway", "models"}
    imported = set()
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    third = sorted(imported - ours - set(sys.stdlib_module_names))
    norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
    todo = [Requirement(x).name for x in (ROOT / "loadtest" / "requirements.txt").read_text().splitlines()
            if x.strip() and not x.startswith("#")]  # fmt: skip
    installed: set[str] = set()
    while todo:
        name = norm(todo.pop())
        if name in installed:
            continue
        installed.add(name)
        for req in md.requires(name) or []:
            r = Requirement(req)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(r.name)
    dists = md.packages_distributions()
    return [m for m in third if not {norm(d) for d in dists.get(m, [m])} & installed]


def test_the_e2e_runs_the_jobs_container_under_its_pod_spec_and_checks_the_report(tmp_path: Path) -> None:
    """stack/compose/k8s_pods.py: the Job renders into the pods run, its container gets the pod's constraints and
    the light options after its own args; the report check takes the report out as the docs do and wants it whole."""
    import json

    from loadtest import job
    from stack.compose import k8s_pods
    from tests.deploy.test_deploy import tool

    docs = k8s_pods.render(tool("kubectl"), ROOT / "k8s" / "overlays" / "local", (COMPONENT,))
    run = k8s_pods.PodRun(docs, {}, "base:1")
    spec = run.deployments()[k8s_pods.BENCH_JOB]["spec"]["template"]["spec"]
    (ctr,) = spec["containers"]
    args = run._run_args(k8s_pods.BENCH_JOB, spec, {**ctr, "args": [*ctr["args"], *k8s_pods.BENCH_LIGHT]},
                         {"tmp": "type=volume,source=t", "reports": "type=volume,source=r"}, detach=True)  # fmt: skip
    assert {"--read-only", "--user", "10001:10001"} <= set(args) and args[args.index("--cap-drop") + 1] == "ALL"
    assert "type=volume,source=r,target=/reports" in args
    tail = args[args.index("--entrypoint") :]
    assert tail[:4] == ["--entrypoint", "python", IMAGE, "-m"] and tail[-len(k8s_pods.BENCH_LIGHT) :] == (
        k8s_pods.BENCH_LIGHT
    )
    assert k8s_pods.EXTRACT in (ROOT / "k8s" / "components" / "bench" / "kustomization.yaml").read_text()

    def log_of(sections: list[str], failures: int) -> str:
        folder = tmp_path / f"made-{len(sections)}-{failures}" / "servecompare-bench-1"
        folder.mkdir(parents=True)
        (folder / "report.md").write_text("\n".join(sections) + "\n")
        summary = {"deployment": {"urls": {"gateway": "http://gateway:8000"}}, "points": [{"failures": failures}]}
        (folder / "summary.json").write_text(json.dumps(summary))
        return "== bench\n" + job.pack(folder)

    whole = ["## Verdict", "## Capacity plan", "## Deployment under test: endpoints"]
    assert "1 points" in k8s_pods.check_bench_report(log_of(whole, 0), tmp_path / "a")
    for sections, failures in ((whole[:2], 0), (whole, 3)):
        with pytest.raises(k8s_pods.PodFailure, match="incomplete"):
            k8s_pods.check_bench_report(log_of(sections, failures), tmp_path / f"b{len(sections)}{failures}")
    with pytest.raises(k8s_pods.PodFailure, match="no report"):
        k8s_pods.check_bench_report("== bench\nerror: stage failed\n", tmp_path / "c")
