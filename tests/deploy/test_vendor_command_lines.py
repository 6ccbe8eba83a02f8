"""The command lines the deployments hand TF Serving's image are ones `tensorflow_model_server` 2.19 accepts.

Compose: the tf-serving service's entrypoint is run for real by bash, with a stand-in `tensorflow_model_server` on
PATH that prints the arguments it got, for batching off and on (TF_BATCHING). k8s: every overlay's rendered args,
and the tf-batching component's. Each command line then goes through the compatible server's reading of TF
Serving's flags and start-up checks (stack/tfserving_compat: flags.py, server_config.py), with the container's
config paths mapped to the files mounted there (models/tf/, the ConfigMaps rendered from the same files)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from stack.config import ROOT
from stack.tfserving_compat.__main__ import parse_args
from stack.tfserving_compat.server_config import StartError, plan
from tests.deploy.test_deploy import OVERLAYS, docs, merged_compose, run, tool

ECHO_SERVER = "#!/bin/sh\nexec python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' \"$@\"\n"


def accepted(args: list[str], mounts: dict[str, Path]) -> object:
    """TF Serving's start plan for `args` (the compatible server's reading of them), container paths mapped."""
    local = []
    for arg in args:
        for inside, here in mounts.items():
            arg = arg.replace(f"={inside}/", f"={here}/")
        local.append(arg)
    return plan(parse_args(local))


def compose_tf_args(tmp_path: Path, batching: str) -> list[str]:
    env = {**os.environ, "TF_BATCHING": batching}
    cmd = [tool("docker-compose"), "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"), "config"]
    config = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=True)
    service = yaml.safe_load(config.stdout)["services"]["tf-serving"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "tensorflow_model_server").write_text(ECHO_SERVER)
    (bin_dir / "tensorflow_model_server").chmod(0o755)
    # compose's `config` output escapes `$` as `$$` again; the container gets `$`.
    entrypoint = [part.replace("$$", "$") for part in service["entrypoint"]]
    run_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", **{k: str(v) for k, v in service["environment"].items()}}
    done = subprocess.run([*entrypoint, *service["command"]], capture_output=True, text=True, env=run_env, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("batching", ["false", "true"])
def test_compose_gives_tf_serving_a_command_line_it_accepts(tmp_path: Path, batching: str) -> None:
    args = compose_tf_args(tmp_path, batching)
    assert f"--enable_batching={batching}" in args
    assert any(a.startswith("--batching_parameters_file=") for a in args) == (batching == "true")
    started = accepted(args, {"/models": ROOT / "models" / "tf"})
    assert (getattr(started, "batching", None) is not None) == (batching == "true")


def test_yesterdays_compose_command_line_is_refused() -> None:
    """The issue's case, as TF Serving 2.19 refuses it (server.cc): the file without batching."""
    command = merged_compose("docker-compose.yml")["services"]["tf-serving"]["command"]
    old = [*command, "--batching_parameters_file=/models/batching.config"]
    with pytest.raises(StartError, match="batching_parameters_file is set without setting"):
        accepted(old, {"/models": ROOT / "models" / "tf"})


def tf_container(path: Path) -> dict:  # type: ignore[type-arg]
    (deploy,) = [d for d in docs(path) if d["kind"] == "Deployment" and d["metadata"]["name"] == "tf-serving"]
    return next(c for c in deploy["spec"]["template"]["spec"]["containers"] if c["name"] == "tf-serving")  # type: ignore[no-any-return]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_gives_tf_serving_a_command_line_it_accepts(rendered, overlay: str) -> None:  # type: ignore[no-untyped-def]
    ctr = tf_container(rendered[overlay])
    assert ctr["command"] == ["tensorflow_model_server"]
    assert "--enable_batching=false" in ctr["args"]
    assert not any(a.startswith("--batching_parameters_file") for a in ctr["args"])
    started = accepted(ctr["args"], {"/config": ROOT / "models" / "tf"})
    assert getattr(started, "batching", None) is None
    assert "startupProbe" in ctr  # it opens its ports only once every model has loaded and warmed up


def test_the_batching_component_turns_both_flags_on(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(ROOT / "k8s" / "overlays" / "local", overlay)],
                "components": [os.path.relpath(ROOT / "k8s" / "components" / "tf-batching", overlay)],
            }
        )
    )
    out = tmp_path / "rendered.yaml"
    done = run(tool("kubectl"), "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(overlay))
    assert done.returncode == 0, done.stderr
    out.write_text(done.stdout)
    ctr = tf_container(out)
    assert "--enable_batching=true" in ctr["args"] and "--enable_batching=false" not in ctr["args"]
    started = accepted(ctr["args"], {"/config": ROOT / "models" / "tf"})
    assert getattr(started, "batching", None) is not None


def test_gpu_overlay_needs_one_gpu_per_backend(rendered) -> None:  # type: ignore[no-untyped-def]
    objects = docs(rendered["gpu"])
    hpas = {d["metadata"]["name"]: d["spec"] for d in objects if d["kind"] == "HorizontalPodAutoscaler"}
    for name in ("tf-serving", "torchserve"):
        assert hpas[name]["minReplicas"] == 1, name
    budgets = {d["metadata"]["name"]: d["spec"] for d in objects if d["kind"] == "PodDisruptionBudget"}
    for name in ("tf-serving", "torchserve"):  # a single pod a drain can move
        assert budgets[name].get("maxUnavailable") == 1 and "minAvailable" not in budgets[name], name


def test_selfbuilt_image_runs_the_same_command_as_tensorflow_model_server() -> None:
    """docker-compose.selfbuilt.yml keeps the base entrypoint; its image has `tensorflow_model_server` on PATH."""
    base = merged_compose("docker-compose.yml")["services"]["tf-serving"]
    merged = merged_compose("docker-compose.yml", "docker-compose.selfbuilt.yml")["services"]["tf-serving"]
    assert merged["entrypoint"] == base["entrypoint"] and merged["command"] == base["command"]
    dockerfile = (ROOT / "stack" / "images" / "tfserving-compat.Dockerfile").read_text()
    assert "COPY stack/images/tensorflow_model_server /usr/local/bin/tensorflow_model_server" in dockerfile
    shim = ROOT / "stack" / "images" / "tensorflow_model_server"
    assert os.access(shim, os.X_OK) and "exec python -m stack.tfserving_compat" in shim.read_text()
