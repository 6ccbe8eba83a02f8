"""Offline validation of the real deployment: compose against its schema, rendered kustomize overlays against
the Kubernetes API schemas, checkov/hadolint scans; each check is shown to catch a deliberately broken file."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from stack.config import ROOT, StackConfig
from tests.deploy.compose_policy import violations

CFG = StackConfig.load()
VALIDATORS = ROOT / ".venv-validators" / "bin"
OVERLAYS = ["local", "production", "gpu"]
K8S_VERSION = "1.32.0"
DOCKERFILES = [
    "export/scaling/Dockerfile",
    "gateway/Dockerfile",
    "loadtest/Dockerfile",
    "models/Dockerfile",
    "stack/images/tfserving-compat.Dockerfile",
    "stack/images/torchserve.Dockerfile",
]
PYTHON_DOCKERFILES = [p for p in DOCKERFILES if p != "models/Dockerfile"]


def tool(name: str) -> str:
    path = VALIDATORS / name if (VALIDATORS / name).exists() else shutil.which(name)
    if not path:
        pytest.fail(f"{name} is missing: run scripts/install-validators.sh (make test does)")
    return str(path)


def run(*cmd: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=180)


def compose_env() -> dict[str, str]:
    import os

    return {**os.environ}


# ---- compose -----------------------------------------------------------------------------------------------
def compose_config(*files: Path) -> subprocess.CompletedProcess[str]:
    args = [tool("docker-compose"), "--project-directory", str(ROOT)]
    for f in files:
        args += ["-f", str(f)]
    return run(*args, "config", "-q")


def test_compose_files_are_valid() -> None:
    assert compose_config(ROOT / "docker-compose.yml").returncode == 0
    for override in ("docker-compose.gpu.yml", "docker-compose.selfbuilt.yml"):
        merged = compose_config(ROOT / "docker-compose.yml", ROOT / override)
        assert merged.returncode == 0, merged.stderr


def merged_compose(*files: str) -> dict:  # type: ignore[type-arg]
    args = [tool("docker-compose"), "--project-directory", str(ROOT)]
    for f in files:
        args += ["-f", str(ROOT / f)]
    result = run(*args, "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)  # type: ignore[no-any-return]


def test_selfbuilt_override_builds_both_servers_and_keeps_the_policy() -> None:
    """The override swaps only what the registry can't give: the two servers' images (built here), the TF side's
    program (the compatible server, flags unchanged); hardening, ports, mounts and health checks stay."""
    base = merged_compose("docker-compose.yml")
    merged = merged_compose("docker-compose.yml", "docker-compose.selfbuilt.yml")
    assert violations(merged) == []
    tf, ts = merged["services"]["tf-serving"], merged["services"]["torchserve"]
    assert tf["build"]["dockerfile"] == "stack/images/tfserving-compat.Dockerfile"
    assert ts["build"]["dockerfile"] == "stack/images/torchserve.Dockerfile"
    assert tf["entrypoint"] == base["services"]["tf-serving"]["entrypoint"]  # its image: tensorflow_model_server
    assert tf["command"] == base["services"]["tf-serving"]["command"]
    for name in ("tf-serving", "torchserve"):
        for key in ("volumes", "ports", "healthcheck", "tmpfs", "init"):
            got, want = merged["services"][name].get(key), base["services"][name].get(key)
            if isinstance(want, list):  # compose merges lists in its own order
                got, want = sorted(map(str, got)), sorted(map(str, want))
            assert got == want, (name, key)
        assert merged["services"][name]["build"]["args"]["BASE_IMAGE"] == CFG.python_base_image
    # the vendor images stay the default
    assert base["services"]["tf-serving"]["image"] == CFG.tf_serving_image
    assert base["services"]["torchserve"]["image"] == CFG.torchserve_image


def test_compat_server_takes_tensorflow_model_servers_command_line() -> None:
    from stack.tfserving_compat.__main__ import parse_args

    command = merged_compose("docker-compose.yml")["services"]["tf-serving"]["command"]
    args = parse_args(["--rest_api_bind_address=0.0.0.0", "--grpc_bind_address=0.0.0.0", *command])
    assert args.model_config_file == "/models/models.config" and args.rest_api_port == 8501 and args.port == 8500
    assert args.rest_api_bind_address == "0.0.0.0"


@pytest.mark.parametrize("path", PYTHON_DOCKERFILES)
def test_dockerfiles_take_the_base_image_and_a_wheelhouse(path: str) -> None:
    """One base for every Python image (.env's PYTHON_BASE_IMAGE is the Dockerfiles' default), and a wheelhouse
    in the build context is used when there is one (legacy builder and BuildKit both accept an empty glob)."""
    text = (ROOT / path).read_text()
    assert f"ARG BASE_IMAGE={CFG.python_base_image}\n" in text
    assert text.count("FROM ${BASE_IMAGE}") == 2
    assert re.search(r"COPY (\S+ )*\S+requirements\.txt \.wheelhous\[e\]/\S+ /wheels/", text)
    assert "--no-index --find-links=/wheels" in text
    assert "\nUSER " in text and "RUN --mount" not in text  # non-root; nothing BuildKit-only


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("    read_only: true\n", "    read_only: true\n    no_such_key: 1\n"),  # unknown key
        ("      retries: 20\n", "      retries: lots\n"),
    ],  # wrong type
)
def test_compose_validation_catches_a_broken_file(tmp_path: Path, old: str, new: str) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert old in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(old, new, 1))
    result = compose_config(broken)
    assert result.returncode != 0
    assert "no_such_key" in result.stderr or "retries" in result.stderr


def test_compose_policy() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert violations(compose) == []
    ts = compose["services"]["torchserve"]
    ts["ports"].append("127.0.0.1:8081:8081")
    compose["services"]["gateway"]["privileged"] = True
    compose["services"]["tf-serving"]["volumes"] = ["./models/tf:/models"]
    found = violations(compose)
    assert any("management/metrics port" in v for v in found)
    assert any("gateway: privileged" in v for v in found)
    assert any("models mounted writable" in v for v in found)


def test_compose_waits_for_healthy_backends() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    deps = compose["services"]["gateway"]["depends_on"]
    assert deps == {"tf-serving": {"condition": "service_healthy"}, "torchserve": {"condition": "service_healthy"}}
    assert compose["services"]["locust-master"]["profiles"] == ["loadtest"]


# ---- kubernetes ----------------------------------------------------------------------------------------------
def render(overlay_dir: Path) -> str:
    result = run(tool("kubectl"), "kustomize", str(overlay_dir))
    assert result.returncode == 0, result.stderr
    return result.stdout


def kube_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return run(tool("kubernetes-validate"), "--strict", "--quiet", "-k", K8S_VERSION, str(path))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_matches_the_api_schemas(rendered, overlay: str) -> None:  # type: ignore[no-untyped-def]
    result = kube_validate(rendered[overlay])
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(rendered[overlay].read_text())]
    assert kinds.count("Deployment") >= 3 and kinds.count("Service") >= 3 and "NetworkPolicy" in kinds
    if overlay == "gpu":
        assert rendered[overlay].read_text().count('nvidia.com/gpu: "1"') == 2
    if overlay != "local":
        assert kinds.count("HorizontalPodAutoscaler") == 3 and kinds.count("PodDisruptionBudget") == 3


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("periodSeconds: 5", "periodSeconds: five", "periodSeconds"),
        (
            "automountServiceAccountToken: false",
            "automountServiceAccountToken: false\n      hostNetworking: true",
            "hostNetworking",
        ),
    ],
)
def test_schema_validation_catches_a_broken_manifest(rendered, tmp_path, old, new, fragment) -> None:  # type: ignore[no-untyped-def]
    text = rendered["local"].read_text()
    assert old in text
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace(old, new, 1))
    result = kube_validate(broken)
    assert result.returncode != 0
    assert fragment in result.stdout + result.stderr


def checkov(*args: str) -> subprocess.CompletedProcess[str]:
    return run(tool("checkov"), "--config-file", str(ROOT / "k8s" / ".checkov.yaml"), *args)


def test_checkov_finds_nothing_in_the_manifests(rendered) -> None:  # type: ignore[no-untyped-def]
    prod = checkov("--framework", "kubernetes", "-f", str(rendered["production"]), "-f", str(rendered["gpu"]))
    assert prod.returncode == 0, prod.stdout[-3000:]
    # The local overlay uses images loaded into the cluster by hand, so IfNotPresent is right there.
    local = checkov("--framework", "kubernetes", "--skip-check", "CKV_K8S_43,CKV_K8S_15", "-f", str(rendered["local"]))
    assert local.returncode == 0, local.stdout[-3000:]


def test_checkov_catches_a_privileged_container(rendered, tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = rendered["production"].read_text()
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        text.replace("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true\n          privileged: true", 1)
    )
    result = checkov("--framework", "kubernetes", "-f", str(broken))
    assert result.returncode != 0
    assert "CKV_K8S_16" in result.stdout or "CKV_K8S_20" in result.stdout


BROKEN_DOCKERFILE = (
    "FROM python:latest\nRUN apt-get update && apt-get install -y curl\nCOPY . /app\nCMD python /app/x.py\n"
)


def test_dockerfiles_pass_hadolint_and_checkov() -> None:
    for path in DOCKERFILES:
        lint = run(tool("hadolint"), path)
        assert lint.returncode == 0, f"{path}: {lint.stdout}"
    scan = run(
        tool("checkov"),
        "--framework",
        "dockerfile",
        "--compact",
        "--quiet",
        *[a for p in DOCKERFILES for a in ("-f", p)],
    )
    assert scan.returncode == 0, scan.stdout[-3000:]


def test_dockerfile_checks_catch_a_broken_dockerfile(tmp_path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "Dockerfile"
    broken.write_text(BROKEN_DOCKERFILE)
    lint = run(tool("hadolint"), str(broken))
    assert lint.returncode != 0 and "DL3007" in lint.stdout  # latest tag
    scan = run(tool("checkov"), "--framework", "dockerfile", "--compact", "--quiet", "-f", str(broken))
    assert scan.returncode != 0 and "CKV_DOCKER_3" in scan.stdout  # no USER


# ---- one source of truth -----------------------------------------------------------------------------------
def docs(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_k8s_agrees_with_env_and_models(rendered) -> None:  # type: ignore[no-untyped-def]
    objects = docs(rendered["local"])
    deployments = {d["metadata"]["name"]: d for d in objects if d["kind"] == "Deployment"}
    images = {c["name"]: c["image"] for d in deployments.values() for c in d["spec"]["template"]["spec"]["containers"]}
    assert images["tf-serving"] == CFG.tf_serving_image
    assert images["torchserve"] == CFG.torchserve_image
    tf_args = deployments["tf-serving"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--enable_batching={str(CFG.tf_batching).lower()}" in tf_args
    for pool in ("intra", "inter"):  # the runtimes' threads, explicit and equal on both sides
        assert f"--tensorflow_{pool}_op_parallelism={CFG.runtime_threads}" in tf_args
    ts_ctr = deployments["torchserve"]["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in ts_ctr["env"]}["DIGITS_TORCH_THREADS"] == str(CFG.runtime_threads)
    text = rendered["local"].read_text()
    assert f"/v1/models/{CFG.model_name}" in text  # TF Serving's readiness: the default model (it loads all first)
    ts = deployments["torchserve"]["spec"]["template"]["spec"]["containers"][0]
    probe = ts["readinessProbe"]["exec"]["command"]
    assert probe[1:] == ["/home/model-server/config/torchserve_entrypoint.py", "--ready"]
    gw_env = {e["name"]: e["value"] for e in deployments["gateway"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert gw_env["GATEWAY_MODEL_NAME"] == CFG.model_name
    locust = deployments["locust-master"]["spec"]["template"]["spec"]["containers"][0]
    locust_env = {e["name"]: e["value"] for e in locust["env"]}
    assert locust_env["LOADTEST_MODEL_NAME"] == CFG.model_name
    assert locust_env["LOADTEST_N_CLASSES"] == str(CFG.n_classes)
    maps = {d["metadata"]["name"]: d["data"] for d in objects if d["kind"] == "ConfigMap"}
    for key, path in [
        ("models.config", "models/tf/models.config"),
        ("batching.config", "models/tf/batching.config"),
        ("monitoring.config", "models/tf/monitoring.config"),
    ]:
        assert maps["tf-serving-config"][key] == (ROOT / path).read_text(), key
    for key, path in [
        ("config.properties", "models/torch/config.properties"),
        ("log4j2.xml", "models/torch/log4j2.xml"),
        ("torchserve_entrypoint.py", "stack/torchserve_entrypoint.py"),
    ]:
        assert maps["torchserve-config"][key] == (ROOT / path).read_text(), key


def test_nothing_reaches_torchserves_management_port(rendered) -> None:  # type: ignore[no-untyped-def]
    objects = docs(rendered["local"])
    for policy in (d for d in objects if d["kind"] == "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            assert 8081 not in [p.get("port") for p in rule.get("ports", [])]
    ts_service = next(d for d in objects if d["kind"] == "Service" and d["metadata"]["name"] == "torchserve")
    assert 8081 not in [p["port"] for p in ts_service["spec"]["ports"]]
    env = next(d for d in objects if d["kind"] == "Deployment" and d["metadata"]["name"] == "torchserve")
    ts_env = {e["name"]: e.get("value") for e in env["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert ts_env["TS_MANAGEMENT_ADDRESS"].startswith("http://127.0.0.1:")


def test_every_container_is_hardened(rendered) -> None:  # type: ignore[no-untyped-def]
    for d in docs(rendered["production"]):
        if d["kind"] != "Deployment":
            continue
        spec = d["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert "requests" in c["resources"] and "limits" in c["resources"], c["name"]
        for c in spec["containers"]:
            assert "readinessProbe" in c and "livenessProbe" in c, c["name"]


def test_compose_agrees_with_env() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for name in (
        "TF_SERVING_IMAGE",
        "TORCHSERVE_IMAGE",
        "TF_REST_PORT",
        "TF_GRPC_PORT",
        "TS_INFERENCE_PORT",
        "GATEWAY_PORT",
        "GATEWAY_WORKERS",
        "MODEL_NAME",
        "TF_BATCHING",
        "RUNTIME_THREADS",
    ):
        assert "${" + name + "}" in text, name
    assert not re.search(r"digits", text), "the model name comes from .env"


# ---- what a real cluster or engine would break ---------------------------------------------------------------
def pod_specs(path: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in docs(path) if d["kind"] == "Deployment"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_service_links_in_any_pod(rendered, overlay: str) -> None:  # type: ignore[no-untyped-def]
    """Kubernetes would inject GATEWAY_PORT=tcp://... for the Service named gateway (it crashed the gateway)."""
    specs = pod_specs(rendered[overlay])
    assert specs and all(spec.get("enableServiceLinks") is False for spec in specs.values()), [
        name for name, spec in specs.items() if spec.get("enableServiceLinks") is not False
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_replicas_where_an_hpa_owns_them(rendered, overlay: str) -> None:  # type: ignore[no-untyped-def]
    objects = docs(rendered[overlay])
    owned = {d["spec"]["scaleTargetRef"]["name"] for d in objects if d["kind"] == "HorizontalPodAutoscaler"}
    if overlay != "local":
        assert owned == {"tf-serving", "torchserve", "gateway"}
    for d in objects:
        if d["kind"] == "Deployment" and d["metadata"]["name"] in owned:
            assert "replicas" not in d["spec"], d["metadata"]["name"]


def test_gpu_backends_scale_on_the_gpu(rendered) -> None:  # type: ignore[no-untyped-def]
    hpas = {d["metadata"]["name"]: d for d in docs(rendered["gpu"]) if d["kind"] == "HorizontalPodAutoscaler"}
    for name in ("tf-serving", "torchserve"):
        assert [m["type"] for m in hpas[name]["spec"]["metrics"]] == ["Pods"], name
    specs = pod_specs(rendered["gpu"])
    for name in ("tf-serving", "torchserve"):
        assert specs[name]["containers"][0]["resources"]["limits"]["memory"] == "6Gi"


def test_servers_stop_on_sigterm_in_k8s(rendered) -> None:  # type: ignore[no-untyped-def]
    """Neither server may be a PID 1 without a SIGTERM handler (every rollout would wait the grace period)."""
    specs = pod_specs(rendered["production"])
    tf = specs["tf-serving"]
    assert tf.get("shareProcessNamespace") is True and tf["containers"][0]["command"] == ["tensorflow_model_server"]
    ts = specs["torchserve"]["containers"][0]
    assert ts["command"][:4] == ["python", "/home/model-server/config/torchserve_entrypoint.py", "--", "torchserve"]


def test_metrics_can_be_scraped_from_a_labelled_monitoring_namespace(rendered) -> None:  # type: ignore[no-untyped-def]
    objects = docs(rendered["production"])
    admitted: set[int] = set()
    for policy in (d for d in objects if d["kind"] == "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            if any(p.get("namespaceSelector") for p in rule.get("from", [])):
                admitted |= {p["port"] for p in rule.get("ports", [])}
    assert {8501, 8082, 8000} <= admitted and 8081 not in admitted


def rendered_compose() -> dict:  # type: ignore[type-arg]
    return merged_compose("docker-compose.yml")


def test_compose_torchserve_temp_dirs_allow_exec_and_servers_stop_with_sigterm() -> None:
    services = rendered_compose()["services"]
    ts = services["torchserve"]
    tmpfs = {entry.split(":")[0]: entry.partition(":")[2] for entry in ts["tmpfs"]}
    assert "exec" in tmpfs["/tmp"].split(",") and "noexec" not in tmpfs["/tmp"], ts["tmpfs"]  # Java's temp dir
    # A tmpfs over an image directory is root's 0755 (found running it): the server's user must own its own.
    for path in ("/home/model-server/logs", "/home/model-server/tmp"):
        assert {"uid=1000", "gid=1000"} <= set(tmpfs[path].split(",")), ts["tmpfs"]
    assert ts["init"] is True and ts["entrypoint"][1].endswith("torchserve_entrypoint.py")
    volumes = [v.split(":") if isinstance(v, str) else [v["source"], v["target"]] for v in ts["volumes"]]
    mounted = [Path(v[0]) for v in volumes if v[1] == ts["entrypoint"][1]]
    assert mounted == [ROOT / "stack" / "torchserve_entrypoint.py"]
    tf = services["tf-serving"]
    # bash chooses the flags, then execs the binary: the init's SIGTERM reaches the server itself.
    assert tf["init"] is True and tf["entrypoint"][:2] == ["/bin/bash", "-c"]
    assert tf["entrypoint"][2].rstrip().endswith('exec tensorflow_model_server "$$@"')
