"""Shared fixtures: free loopback ports, and a real native stack (started once, stopped at the end)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from export.data import load_split
from stack.config import ROOT, StackConfig
from stack.launcher import NativeStack, free_port, free_port_overrides

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Stacks started by the tests register here, never in the checkout's .run/registry, so a `stack down` run by a
# test (or by a person while the tests run) can't stop the other's stacks. Tests that run `stack down` themselves
# give it a registry of their own.
os.environ.setdefault("SERVECOMPARE_REGISTRY", tempfile.mkdtemp(prefix="servecompare-registry-"))


def free_ports_config(**extra: str) -> StackConfig:
    """The project's config with every port replaced by a free one on 127.0.0.1."""
    return StackConfig.load({**free_port_overrides(), **extra})


@pytest.fixture(scope="session")
def digits():  # type: ignore[no-untyped-def]
    return load_split()


@pytest.fixture(scope="session")
def test_rows(digits) -> list[list[float]]:  # type: ignore[no-untyped-def]
    return np.asarray(digits.x_test[:16], dtype=np.float64).tolist()


@pytest.fixture(scope="session")
def native_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    stack = NativeStack(free_ports_config(), run_dir=tmp_path_factory.mktemp("stack"))
    with stack:
        yield stack


def start_compat_server(tmp: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int, int]:
    """The TF-Serving-compatible server on free ports, waited for until its model is AVAILABLE."""
    cfg = StackConfig.load()
    rest, grpc_port = free_port(), free_port()
    log = open(tmp / "tfserving-compat.log", "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stack.tfserving_compat",
            f"--rest_api_port={rest}",
            f"--port={grpc_port}",
            f"--model_name={cfg.model_name}",
            f"--model_base_path={cfg.tf_version_dir.parent}",
            "--monitoring_config_file=" + str(ROOT / "models/tf/monitoring.config"),
            *extra,
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp / "tfserving-compat.log").read_text()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{rest}/v1/models/{cfg.model_name}", timeout=1).status_code == 200:
                return proc, rest, grpc_port
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("compatible server did not come up")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextmanager
def serve_in_thread(app: object) -> Iterator[str]:
    """A small ASGI test double (an upstream that misbehaves on purpose) on a free loopback port."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def processes_mentioning(marker: str) -> list[psutil.Process]:
    """Live processes whose command line or environment mentions `marker` (a test's own tmp path)."""
    found = []
    for p in psutil.process_iter(["cmdline", "environ"]):
        try:
            text = " ".join(p.info["cmdline"] or []) + " ".join((p.info["environ"] or {}).values())
            if marker in text and p.status() != psutil.STATUS_ZOMBIE and p.pid != os.getpid():
                found.append(p)
        except psutil.Error:
            continue
    return found


@contextmanager
def gateway_process(env: dict[str, str], *args: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m gateway` on a free loopback port, `env` over this environment, once /healthz answers: (process,
    base URL). Killed with its process group (uvicorn workers included) at the end, whatever happened."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=ROOT,
        env={**os.environ, **env},
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"the gateway exited {proc.returncode}"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the gateway never answered /healthz"
            time.sleep(0.2)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextmanager
def tf_stand_in(delay_s: float = 0.0, winner: int = 0) -> Iterator[str]:
    """A stand-in TF Serving for the default model: its status API says version 1 is AVAILABLE, and predict answers
    each row with class `winner` after `delay_s`. Its base URL."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def predict(request: Request) -> JSONResponse:
        rows = (await request.json())["instances"]
        await asyncio.sleep(delay_s)
        return JSONResponse({"predictions": [[0.2 if i == winner else 0.1 for i in range(10)] for _ in rows]})

    async def status(_: Request) -> JSONResponse:
        return JSONResponse({"model_version_status": [{"version": "1", "state": "AVAILABLE"}]})

    name = StackConfig.load(environ=False).model_name
    app = Starlette(
        routes=[Route(f"/v1/models/{name}:predict", predict, methods=["POST"]), Route(f"/v1/models/{name}", status)]
    )
    with serve_in_thread(app) as url:
        yield url
