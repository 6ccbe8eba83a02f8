"""SIGTERM to a real gateway process: requests in flight finish with their answer; none is cut off."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stack.config import ROOT
from stack.launcher import free_port
from tests.conftest import serve_in_thread

UPSTREAM_DELAY_S = 1.5


@pytest.fixture
def slow_upstream():  # type: ignore[no-untyped-def]
    """A stand-in TF Serving predict endpoint that takes UPSTREAM_DELAY_S to answer."""

    async def predict(request: Request) -> JSONResponse:
        rows = (await request.json())["instances"]
        await asyncio.sleep(UPSTREAM_DELAY_S)
        return JSONResponse({"predictions": [[0.1] * 10 for _ in rows]})

    async def status(_: Request) -> JSONResponse:
        return JSONResponse({"model_version_status": [{"version": "1", "state": "AVAILABLE"}]})

    app = Starlette(
        routes=[Route("/v1/models/digits:predict", predict, methods=["POST"]), Route("/v1/models/digits", status)]
    )
    with serve_in_thread(app) as url:
        yield url


def test_in_flight_requests_finish_on_sigterm(slow_upstream, test_rows) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    env = {**os.environ, "GATEWAY_TF_URL": slow_upstream, "GATEWAY_REQUEST_TIMEOUT_S": "10"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port), "--graceful-timeout", "10"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)

        async def scenario() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=base, timeout=15) as client:
                tasks = [
                    asyncio.create_task(client.post("/predict/tf", json={"instances": test_rows[:1]})) for _ in range(8)
                ]
                await asyncio.sleep(0.5)  # all 8 are now waiting on the slow upstream
                proc.send_signal(signal.SIGTERM)
                return await asyncio.gather(*tasks)

        responses = asyncio.run(scenario())
        assert [r.status_code for r in responses] == [200] * 8
        # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status is 0 or -SIGTERM.
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/healthz", timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()
