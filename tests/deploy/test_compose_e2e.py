"""The compose e2e's own parts (the run itself is `make compose-e2e`, which `make test` runs after pytest)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stack.compose import e2e, engine
from tests.deploy.test_deploy import run, tool


def test_without_an_engine_it_says_why_and_skips_only_when_asked(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CI", raising=False)
    assert engine.why_no_engine() == "the docker CLI is not installed"
    assert e2e.main(["--if-available"]) == 0
    assert "compose e2e: SKIPPED: the docker CLI is not installed" in capsys.readouterr().out
    assert e2e.main([]) == 2


def test_in_ci_a_skip_is_a_failure_with_the_reason(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CI", "true")
    assert e2e.main(["--if-available"]) == 1
    out = capsys.readouterr().out
    assert "compose e2e: FAILED: required in CI (CI=true)" in out and "the docker CLI is not installed" in out


def test_loadtest_override_is_headless_bounded_and_never_restarts(tmp_path: Path) -> None:
    override = e2e.loadtest_override(tmp_path / "lt.json")
    args = [tool("docker-compose"), "--project-directory", str(e2e.ROOT)]
    for f in (*e2e.FILES, override):
        args += ["-f", str(f)]
    result = run(*args, "--profile", "loadtest", "config")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    master = services["locust-master"]
    cmd = master["command"]
    assert "--headless" in cmd and cmd[cmd.index("--run-time") + 1] == f"{e2e.LOCUST_SECONDS}s"
    assert cmd[cmd.index("--expect-workers") + 1] == "2" and "--exit-code-on-error" in cmd
    assert master["restart"] == "no" and services["locust-worker"]["restart"] == "no"
    assert master["read_only"] is True and master["cap_drop"] == ["ALL"]  # the hardening stays


@pytest.mark.parametrize(
    ("log", "totals"),
    [
        ("master_1 |   Aggregated    12940     0(0.00%) |  11  0  484  7 |  644.09  0.00\n", ("12940", "0")),
        ("Aggregated  10  3(30.00%) | 1 1 1 1 | 1 1\nAggregated  20  4(20.00%) | 1 1 1 1 | 1 1\n", ("20", "4")),
    ],
)
def test_the_locust_summary_is_read_from_the_last_table(log: str, totals: tuple[str, str]) -> None:
    assert e2e.last_totals(log) == totals


def test_k8s_pods_run_with_their_pods_constraints() -> None:
    """How each k8s container is started under Docker (the run itself is in the e2e): the pod's user, read-only
    root, no capabilities, its mounts, its command, the TF container's image substitution said out loud."""
    from stack.compose import k8s_pods
    from stack.config import ROOT, StackConfig

    cfg = StackConfig.load()
    docs = k8s_pods.render(tool("kubectl"), ROOT / "k8s" / "overlays" / "local")
    pods = k8s_pods.PodRun(docs, {cfg.tf_serving_image: "compat:1"}, "base:1")
    spec = pods.deployments()["torchserve"]["spec"]["template"]["spec"]
    volumes = {v["name"]: f"type=volume,source=v-{v['name']}" for v in spec["volumes"]}
    args = pods._run_args("torchserve", spec, spec["containers"][0], volumes, detach=True)
    line = " ".join(args)
    assert "--user 10001:10001" in line and "--group-add 10001" in line and "--read-only" in args
    assert "--cap-drop ALL" in line and "no-new-privileges" in line
    assert "type=volume,source=v-config,target=/home/model-server/config,readonly" in line
    assert "--network container:k8s-torchserve" in line
    assert args[args.index("--entrypoint") + 1] == "python" and "torchserve_entrypoint.py" in line
    spec = pods.deployments()["tf-serving"]["spec"]["template"]["spec"]
    volumes = {v["name"]: "type=volume,source=x" for v in spec["volumes"]}
    tf_args = pods._run_args("tf-serving", spec, spec["containers"][0], volumes, detach=True)
    # The manifest's own command, in the compatible server's image (its tensorflow_model_server runs the server).
    assert tf_args[tf_args.index("--entrypoint") + 1 : tf_args.index("--entrypoint") + 3] == [
        "tensorflow_model_server", "compat:1",
    ]  # fmt: skip
    assert "--model_config_file=/config/models.config" in tf_args and pods.notes
    assert pods.aliases(pods.deployments()["gateway"]["spec"]["template"]["metadata"]["labels"]) == ["gateway"]
