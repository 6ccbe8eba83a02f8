"""The container entrypoint for TorchServe (stack/torchserve_entrypoint.py), run here with the real TorchServe:
SIGTERM stops the CLI, the JVM and the workers within seconds; a dead JVM ends the entrypoint."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from stack.config import ROOT
from stack.launcher import NativeStack, short_temp_dir
from tests.conftest import free_ports_config, processes_mentioning

pytestmark = pytest.mark.integration
ENTRYPOINT = ROOT / "stack" / "torchserve_entrypoint.py"


_ours = processes_mentioning


def _start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    cfg = free_ports_config()
    stack = NativeStack(cfg, run_dir=tmp_path)
    (tmp_path / "conf").mkdir(parents=True, exist_ok=True)
    svc = stack._torchserve_service()
    # The launcher runs TorchServe under the entrypoint already (--same-group); run it as a container does.
    torchserve_cmd = svc.cmd[svc.cmd.index("--") + 1 :]
    proc = subprocess.Popen(
        [sys.executable, str(ENTRYPOINT), "--grace", "10", "--", *torchserve_cmd],
        env={**os.environ, **svc.env},
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "entrypoint.log", "wb"),  # noqa: SIM115
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "entrypoint.log").read_text()[-2000:]
        ok, _ = svc.ready() if _up(cfg.ts_management_url) else (False, "")
        if ok:
            return proc, str(tmp_path)
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("TorchServe did not become ready")


def _up(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True


def _cleanup(marker: str) -> None:
    for p in _ours(marker):
        p.kill()
    shutil.rmtree(short_temp_dir(Path(marker)), ignore_errors=True)  # what NativeStack.down would remove


def test_sigterm_stops_every_torchserve_process_within_seconds(tmp_path: Path) -> None:
    proc, marker = _start(tmp_path)
    try:
        assert len(_ours(marker)) >= 3  # the CLI, the JVM, a worker (+ this entrypoint)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        deadline = time.monotonic() + 5
        while _ours(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _ours(marker) == [], [p.cmdline()[:3] for p in _ours(marker)]
        assert time.monotonic() - started < 15
    finally:
        _cleanup(marker)


def test_a_dead_jvm_ends_the_entrypoint(tmp_path: Path) -> None:
    proc, marker = _start(tmp_path)
    try:
        (jvm,) = [p for p in _ours(marker) if "java" in p.name()]
        jvm.kill()
        assert proc.wait(timeout=20) != 0  # the container exits, so its restart policy can act
        deadline = time.monotonic() + 10
        while _ours(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _ours(marker) == []
    finally:
        _cleanup(marker)
