"""Admission: the gateway sheds load with an explicit 503 + Retry-After naming its own limit, counted in /metrics,
and never blames a healthy backend for its own queue."""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.main import create_app
from gateway.settings import Settings
from tests.conftest import serve_in_thread
from tests.gateway.test_routes import PROBS, ROW


def _slow_tf(delay_s: float) -> Starlette:
    async def predict(request: Request) -> JSONResponse:
        await request.body()
        await asyncio.sleep(delay_s)
        return JSONResponse({"predictions": [PROBS]})

    async def status(_: Request) -> JSONResponse:
        return JSONResponse({"model_version_status": [{"version": "1", "state": "AVAILABLE"}]})

    return Starlette(
        routes=[Route("/v1/models/digits:predict", predict, methods=["POST"]), Route("/v1/models/digits", status)]
    )


async def _burst(url: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await asyncio.gather(*(client.post("/predict/tf", json={"instances": [ROW]}) for _ in range(n)))


def test_over_the_limit_the_gateway_sheds_with_503_and_retry_after() -> None:
    with serve_in_thread(_slow_tf(0.4)) as tf_url:
        settings = Settings(
            tf_url=tf_url,
            torch_url="http://127.0.0.1:9",
            torch_readiness="ping",
            max_concurrency_per_backend=2,
            admission_wait_s=0.1,
        )
        with serve_in_thread(create_app(settings)) as gateway:
            answers = asyncio.run(_burst(gateway, 6))
            metrics = httpx.get(f"{gateway}/metrics").text
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 200, 503, 503, 503, 503], codes
    shed = [r for r in answers if r.status_code == 503]
    for r in shed:
        assert r.headers["retry-after"] == "1"
        assert "limit of 2 concurrent requests to backend 'tf'" in r.json()["error"]
    assert 'gateway_shed_requests_total{backend="tf"} 4.0' in metrics


def test_requests_that_fit_in_the_wait_are_served() -> None:
    with serve_in_thread(_slow_tf(0.05)) as tf_url:
        settings = Settings(
            tf_url=tf_url, torch_url="http://127.0.0.1:9", torch_readiness="ping", max_concurrency_per_backend=2
        )
        with serve_in_thread(create_app(settings)) as gateway:
            answers = asyncio.run(_burst(gateway, 20))  # 10 rounds of 50 ms: well inside the 5 s wait
    assert [r.status_code for r in answers] == [200] * 20
