"""Admission: the gateway sheds load with an explicit 503 + Retry-After naming its own limit, counted in /metrics,
and never blames a healthy backend for its own queue."""

from __future__ import annotations

import asyncio
import threading

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.main import create_app
from gateway.settings import Settings
from tests.conftest import serve_in_thread
from tests.gateway.test_routes import PROBS, ROW

HANG_BOUND_S = 60  # only against a hang: the waits below end on events


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


def _held_tf(arrived: threading.Semaphore, release: threading.Event) -> Starlette:
    """Counts each predict that reaches it and answers only once released: in flight as long as the test says."""

    async def predict(request: Request) -> JSONResponse:
        await request.body()
        arrived.release()
        await asyncio.to_thread(release.wait, HANG_BOUND_S)
        return JSONResponse({"predictions": [PROBS]})

    async def status(_: Request) -> JSONResponse:
        return JSONResponse({"model_version_status": [{"version": "1", "state": "AVAILABLE"}]})

    return Starlette(
        routes=[Route("/v1/models/digits:predict", predict, methods=["POST"]), Route("/v1/models/digits", status)]
    )


def test_over_the_limit_the_gateway_sheds_with_503_and_retry_after() -> None:
    """Both slots are held upstream until the other four have been shed: the outcome cannot depend on how fast this
    machine runs (with a 0.4 s upstream, a busy machine let the first answers out before the last requests came)."""
    arrived, release = threading.Semaphore(0), threading.Event()
    with serve_in_thread(_held_tf(arrived, release)) as tf_url:
        settings = Settings(
            tf_url=tf_url,
            torch_url="http://127.0.0.1:9",
            torch_readiness="ping",
            max_concurrency_per_backend=2,
            admission_wait_s=0.1,
        )
        with serve_in_thread(create_app(settings)) as gateway:

            async def burst() -> tuple[list[httpx.Response], list[httpx.Response]]:
                async with httpx.AsyncClient(base_url=gateway, timeout=HANG_BOUND_S + 10) as client:
                    tasks = [
                        asyncio.create_task(client.post("/predict/tf", json={"instances": [ROW]})) for _ in range(6)
                    ]
                    early = []
                    for done in asyncio.as_completed(tasks):  # the four shed answer while both slots are held
                        early.append(await done)
                        if len(early) == 4:
                            break
                    held = [await asyncio.to_thread(arrived.acquire, True, HANG_BOUND_S) for _ in range(2)]
                    assert held == [True, True] and not arrived.acquire(False), "not exactly 2 reached the backend"
                    release.set()
                    return early, list(await asyncio.gather(*tasks))

            try:
                early, answers = asyncio.run(burst())
            finally:
                release.set()
            metrics = httpx.get(f"{gateway}/metrics").text
    assert [r.status_code for r in early] == [503] * 4
    assert sorted(r.status_code for r in answers) == [200, 200, 503, 503, 503, 503]
    for r in early:
        assert r.headers["retry-after"] == "1"
        assert "limit of 2 concurrent requests to backend 'tf'" in r.json()["error"]
    assert 'gateway_shed_requests_total{backend="tf"} 4.0' in metrics


def test_requests_that_fit_in_the_wait_are_served() -> None:
    with serve_in_thread(_slow_tf(0.05)) as tf_url:
        settings = Settings(
            tf_url=tf_url,
            torch_url="http://127.0.0.1:9",
            torch_readiness="ping",
            max_concurrency_per_backend=2,
            admission_wait_s=HANG_BOUND_S,  # never the limit here: every request fits, however busy the machine
        )
        with serve_in_thread(create_app(settings)) as gateway:
            answers = asyncio.run(_burst(gateway, 20))  # 10 rounds of 50 ms
    assert [r.status_code for r in answers] == [200] * 20
