"""Settings reach the servers: ask the running servers what they use, not the config files."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from export import serving_config
from stack import effective
from stack.config import ConfigError, StackConfig
from stack.launcher import NativeStack
from tests.conftest import free_ports_config


@pytest.mark.integration
def test_non_default_torchserve_batching_and_workers_reach_torchserve(tmp_path: Path) -> None:
    cfg = free_ports_config(TS_BATCH_SIZE="8", TS_MAX_BATCH_DELAY_MS="7", TS_WORKERS="2", RUNTIME_THREADS="2")
    stack = NativeStack(cfg, run_dir=tmp_path)
    (tmp_path / "conf").mkdir(parents=True)
    try:
        stack.start_service("torchserve", timeout=120)
        deadline = time.monotonic() + 90
        actual = effective.torchserve_effective(cfg)
        while actual["workers_ready"] < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
            actual = effective.torchserve_effective(cfg)
    finally:
        stack.down(log=lambda _: None)
    assert (actual["batch_size"], actual["max_batch_delay_ms"]) == (8, 7)
    assert (actual["min_workers"], actual["max_workers"], actual["workers_ready"]) == (2, 2, 2)
    assert actual["response_timeout_s"] == 30  # our config's value, not TorchServe's default of 120
    assert actual["torch_threads_per_worker"] == 2  # RUNTIME_THREADS, read from a worker process
    assert effective.mismatches({"torch": effective.expected(cfg)["torch"]}, {"torch": actual}) == []


def test_torchserve_settings_are_keyed_by_the_mar_version() -> None:
    """TorchServe matches the per-model key against the .mar's version string exactly (it ignored "1.0" for "1")."""
    import json
    import zipfile

    cfg = StackConfig.load()
    with zipfile.ZipFile(cfg.mar_path) as mar:
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
    from stack.registry import load_registry

    props = serving_config.ts_config_properties(cfg, load_registry())
    models = json.loads(next(line for line in props.splitlines() if line.startswith("models="))[len("models=") :])
    assert list(models[cfg.model_name]) == [manifest["model"]["modelVersion"]]


def test_mismatches_name_every_setting_not_in_force() -> None:
    wanted = {"tf": {"batching": True, "max_batch_size": 16}, "torch": {"batch_size": 16, "workers_ready": 1}}
    actual = {"tf": {"batching": True, "max_batch_size": 16}, "torch": {"batch_size": 1, "workers_ready": 1}}
    assert effective.mismatches(wanted, actual) == ["torch batch_size: asked 16, runs 1"]
    assert effective.mismatches(wanted, {"tf": wanted["tf"], "torch": wanted["torch"]}) == []


def test_a_service_link_variable_is_refused_with_a_message_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "tcp://10.96.12.34:8000")
    with pytest.raises(ConfigError, match=r"GATEWAY_PORT='tcp://10\.96\.12\.34:8000'.*enableServiceLinks"):
        StackConfig.load()
    assert StackConfig.load(environ=False).gateway_port == 8000  # the .env file alone is fine
    with pytest.raises(ConfigError, match="TF_REST_PORT='eighty' is not a whole number"):
        StackConfig.load({"TF_REST_PORT": "eighty"})
