"""Overload and interruption: a cold burst is served or explicitly shed; SIGTERM, SIGHUP or SIGKILL to the commands
that start servers leave no process and no port behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stack.config import ROOT, StackConfig
from stack.launcher import PORT_KEYS, NativeStack, port_free
from tests.conftest import free_ports_config, processes_mentioning

pytestmark = pytest.mark.e2e


def _env(cfg: StackConfig, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        **{k: str(getattr(cfg, k.lower())) for k in PORT_KEYS},
        "SERVECOMPARE_RUN_DIR": str(tmp_path / "run"),
        "SERVECOMPARE_REGISTRY": str(tmp_path / "registry"),
        "PYTHONUNBUFFERED": "1",
    }


def _start_until(cmd: list[str], env: dict[str, str], marker: str, timeout: float = 180) -> subprocess.Popen[str]:
    """Start a command (in its own session, as a terminal would) and read its output until `marker` shows; on any
    failure the command and everything it started is killed, so a failing test leaves nothing running."""
    import queue
    import threading

    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"exited {proc.wait()} before {marker!r}:\n{''.join(seen[-30:])}")
            seen.append(line)
            if marker in line:
                return proc
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def _nothing_left(cfg: StackConfig, marker: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not processes_mentioning(marker) and all(port_free("127.0.0.1", getattr(cfg, k.lower())) for k in PORT_KEYS):
            return
        time.sleep(0.2)
    left = [(p.pid, " ".join(p.cmdline()[:4])) for p in processes_mentioning(marker)]
    for p in processes_mentioning(marker):
        p.kill()
    raise AssertionError(f"left behind after {within:.0f}s: {left}")


BENCH = [sys.executable, "-m", "loadtest", "bench", "--users", "1", "--rows", "1", "--duration", "60", "--trials", "1",
         "--targets", "tf-direct", "--slo-ms", "0", "--no-startup"]  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_the_bench_stops_its_stack(tmp_path: Path, sig: signal.Signals) -> None:
    cfg = free_ports_config()
    bench = _start_until([*BENCH, "--out", str(tmp_path / "out")], _env(cfg, tmp_path), "== sweep:")
    bench.send_signal(sig)
    assert bench.wait(timeout=30) == 130
    _nothing_left(cfg, str(tmp_path))


def test_sighup_to_a_foreground_stack_up_stops_it(tmp_path: Path) -> None:
    cfg = free_ports_config()
    up = _start_until([sys.executable, "-m", "stack", "up"], _env(cfg, tmp_path), "Ctrl-C stops everything")
    up.send_signal(signal.SIGHUP)
    assert up.wait(timeout=30) == 0
    _nothing_left(cfg, str(tmp_path))


def test_stack_down_finds_a_killed_benchs_stack(tmp_path: Path) -> None:
    cfg = free_ports_config()
    env = _env(cfg, tmp_path)
    bench = _start_until([*BENCH, "--out", str(tmp_path / "out")], env, "== sweep:")
    bench.kill()  # SIGKILL: no handler runs
    bench.wait(timeout=10)
    down = subprocess.run([sys.executable, "-m", "stack", "down"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    _nothing_left(cfg, str(tmp_path))
    assert not list((tmp_path / "registry").glob("*.json"))


def test_a_stale_stack_is_named_and_replaced(tmp_path: Path) -> None:
    cfg = free_ports_config()
    env = _env(cfg, tmp_path)
    up = subprocess.run(
        [sys.executable, "-m", "stack", "up", "--detach"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        elsewhere = {**env, "SERVECOMPARE_RUN_DIR": str(tmp_path / "elsewhere")}  # as a bench's stack would be
        again = subprocess.run(
            [sys.executable, "-m", "stack", "up"], cwd=ROOT, env=elsewhere, capture_output=True, text=True
        )
        assert again.returncode == 1
        assert "held by a stack this checkout started earlier" in again.stderr and "--replace" in again.stderr
        replaced = subprocess.run(
            [sys.executable, "-m", "stack", "up", "--detach", "--replace"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        assert replaced.returncode == 0, replaced.stdout + replaced.stderr
        assert "stopping the stack recorded in" in replaced.stdout
    finally:
        subprocess.run([sys.executable, "-m", "stack", "down"], cwd=ROOT, env=env, capture_output=True, timeout=120)
    _nothing_left(cfg, str(tmp_path))


async def _burst(url: str, n: int) -> list[tuple[int, str]]:
    import aiohttp

    from loadtest.payloads import payloads

    body = payloads(1)[0].body
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> tuple[int, str]:
            async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
                return r.status, (await r.text())[:200]

        return await asyncio.gather(*(one() for _ in range(n)))


def test_a_cold_burst_is_served_or_explicitly_shed(tmp_path: Path) -> None:
    """2,000 concurrent requests right after start-up: once, 5 % got 504 'timed out (connect)' from healthy backends."""
    cfg = free_ports_config()
    with NativeStack(cfg, run_dir=tmp_path / "run"):
        for route in ("tf", "torch"):
            answers = asyncio.run(_burst(f"{cfg.gateway_url}/predict/{route}", 2000))
            codes = [status for status, _ in answers]
            assert codes.count(200) >= 0.99 * len(codes), {c: codes.count(c) for c in set(codes)}
            others = [(s, t) for s, t in answers if s != 200]
            assert all(s == 503 and "gateway overloaded" in t for s, t in others), others[:3]
