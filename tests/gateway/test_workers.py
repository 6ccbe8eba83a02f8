"""GATEWAY_WORKERS: several gateway processes on one port, their metrics summed whichever answers the scrape."""

from __future__ import annotations

import glob
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import httpx
import psutil
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stack.config import ROOT
from stack.launcher import free_port
from tests.conftest import serve_in_thread

REQUESTS = 40


@pytest.fixture
def upstream():  # type: ignore[no-untyped-def]
    async def predict(request: Request) -> JSONResponse:
        rows = (await request.json())["instances"]
        return JSONResponse({"predictions": [[0.1] * 9 + [0.2] for _ in rows]})

    async def status(_: Request) -> JSONResponse:
        return JSONResponse({"model_version_status": [{"version": "1", "state": "AVAILABLE"}]})

    app = Starlette(
        routes=[Route("/v1/models/digits:predict", predict, methods=["POST"]), Route("/v1/models/digits", status)]
    )
    with serve_in_thread(app) as url:
        yield url


def _served(text: str) -> float:
    pattern = r'gateway_requests_total\{backend="tf",route="/predict/tf",status="200"\} ([0-9.e+]+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_two_workers_serve_one_port_and_metrics_count_every_request(upstream, test_rows) -> None:  # type: ignore[no-untyped-def]
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "gateway-metrics-*")))
    port = free_port()
    env = {**os.environ, "GATEWAY_TF_URL": upstream, "GATEWAY_MODELS": "", "GATEWAY_WORKERS": "2"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        workers = [c for c in psutil.Process(proc.pid).children() if "multiprocessing" in " ".join(c.cmdline())]
        assert len([w for w in workers if "resource_tracker" not in " ".join(w.cmdline())]) == 2
        for _ in range(REQUESTS):  # a new connection each: the kernel hands them to either worker
            r = httpx.post(f"{base}/predict/tf", json={"instances": test_rows[:1]}, timeout=10)
            assert r.status_code == 200 and r.json()["labels"] == [9], r.text
        # Every scrape, on a new connection and so from either worker, counts all of them: not one worker's share.
        scrapes = [_served(httpx.get(f"{base}/metrics", timeout=5).text) for _ in range(10)]
        assert scrapes == [REQUESTS] * 10, scrapes
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    left = set(glob.glob(os.path.join(tempfile.gettempdir(), "gateway-metrics-*"))) - before
    assert not left, f"the workers' metrics dir was left behind: {left}"
