"""The launcher brings the whole stack up from the checkout, it serves, and `down` leaves nothing behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import httpx
import psutil
import pytest

from loadtest.overhead import measure_overhead
from stack.config import ROOT
from stack.launcher import PORT_KEYS, NativeStack, StackError, port_free
from tests.conftest import free_ports_config

pytestmark = pytest.mark.e2e


def _ports(cfg) -> list[int]:  # type: ignore[no-untyped-def]
    return [getattr(cfg, k.lower()) for k in PORT_KEYS]


def test_cli_up_predict_down_leaves_nothing(tmp_path, test_rows) -> None:  # type: ignore[no-untyped-def]
    cfg = free_ports_config()
    env = {**os.environ, **{k: str(getattr(cfg, k.lower())) for k in PORT_KEYS}, "SERVECOMPARE_RUN_DIR": str(tmp_path)}
    env["SERVECOMPARE_REGISTRY"] = str(tmp_path / "registry")
    up = subprocess.run(
        [sys.executable, "-m", "stack", "up", "--detach", "--timeout", "120"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    stack = NativeStack(cfg, run_dir=tmp_path)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "ready" in up.stdout and cfg.gateway_url in up.stdout
        assert "not TensorFlow Serving" in up.stdout  # named for what it is
        pids = [p.pid for p, alive in stack.status() if alive]
        assert len(pids) == 3
        for backend in ("tf", "torch"):
            r = httpx.post(f"{cfg.gateway_url}/predict/{backend}", json={"instances": test_rows[:4]}, timeout=10)
            assert r.status_code == 200 and len(r.json()["labels"]) == 4
        status = subprocess.run(
            [sys.executable, "-m", "stack", "status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 0 and status.stdout.count("running") == 3
        descendants = {c.pid for pid in pids for c in psutil.Process(pid).children(recursive=True)}
        assert descendants, "TorchServe's java frontend and worker run under the launcher's processes"
        # The hop instrument on the real stack, briefly: every route answered right, both hops measured.
        hops = measure_overhead(stack, [1], trials=1, duration_s=1.0, log=lambda _: None)
        assert hops["failures"] == 0 and {r["backend"] for r in hops["table"]} == {"tf", "torch"}
        for row in hops["table"]:
            assert row["gateway_added_p50_ms"] > 0 and row["passthrough_added_p50_ms"] > 0, row
            assert row["gateway_cpu_us"] > 0 and row["passthrough_cpu_us"] > 0 and row["client_cpu_us"] > 0, row
        assert len({r["requests"] for r in hops["runs"] if r["route"].startswith("tf-")}) == 1  # in turn
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "stack", "down"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stderr
    for pid in set(pids) | descendants:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
    for port in _ports(cfg):
        assert port_free("127.0.0.1", port), f"port {port} still in use"
    assert not (tmp_path / "stack.json").exists()
    assert not (ROOT / "logs").exists(), "TorchServe must not write logs into the source tree"


def test_port_in_use_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = free_ports_config()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", cfg.ts_inference_port))
        blocker.listen()
        with pytest.raises(StackError, match=rf"port {cfg.ts_inference_port} \(TS_INFERENCE_PORT"):
            NativeStack(cfg, run_dir=tmp_path).up(timeout=30, log=lambda _: None)
    assert not (tmp_path / "stack.json").exists() or not NativeStack(cfg, run_dir=tmp_path).status()


def test_failure_of_a_part_stops_everything(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = free_ports_config(MODEL_NAME="no-such-model")  # TF side has no such model dir: it cannot start
    stack = NativeStack(cfg, run_dir=tmp_path)
    with pytest.raises(StackError):
        stack.up(timeout=60, log=lambda _: None)
    assert not stack.status()
    for port in _ports(cfg):
        assert port_free("127.0.0.1", port)
