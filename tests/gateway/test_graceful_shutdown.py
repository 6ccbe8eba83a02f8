"""SIGTERM to a real gateway process: requests in flight finish with their answer; none is cut off.

Synchronised by events, not sleeps: the upstream holds every request until all 8 have reached it (so all 8 are in
flight at the gateway), SIGTERM goes out, the gateway is seen refusing new connections (it is shutting down), and
the upstream answers a second later."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stack.config import StackConfig
from tests.conftest import gateway_process, serve_in_thread

IN_FLIGHT = 8
HANG_BOUND_S = 60  # only against a hang: every wait below ends on an event long before
# How long the requests stay in flight once the gateway is shutting down: a length of the scenario, not a wait for
# something to happen. Longer than the 0.1 s uvicorn gives connections anyway, so only the graceful timeout
# (--graceful-timeout) can keep them; a gateway that stops at once cuts them off.
HOLD_IN_SHUTDOWN_S = 1.0


class HeldUpstream:
    """A TF Serving stand-in that counts arrivals and answers only once released."""

    def __init__(self) -> None:
        self.arrived = 0
        self.all_arrived = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    async def predict(self, request: Request) -> JSONResponse:
        rows = (await request.json())["instances"]
        with self._lock:
            self.arrived += 1
            if self.arrived == IN_FLIGHT:
                self.all_arrived.set()
        await asyncio.to_thread(self.release.wait, HANG_BOUND_S)
        return JSONResponse({"predictions": [[0.1] * 10 for _ in rows]})

    @staticmethod
    async def status(_: Request) -> JSONResponse:
        return JSONResponse({"model_version_status": [{"version": "1", "state": "AVAILABLE"}]})


@pytest.fixture
def held_upstream() -> Iterator[tuple[HeldUpstream, str]]:
    upstream = HeldUpstream()
    name = StackConfig.load(environ=False).model_name
    app = Starlette(
        routes=[
            Route(f"/v1/models/{name}:predict", upstream.predict, methods=["POST"]),
            Route(f"/v1/models/{name}", upstream.status),
        ]
    )
    with serve_in_thread(app) as url:
        try:
            yield upstream, url
        finally:
            upstream.release.set()


def _refuses_connections(base: str) -> bool:
    try:
        httpx.get(f"{base}/healthz", timeout=1)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        pass
    return False


def test_in_flight_requests_finish_on_sigterm(held_upstream, test_rows) -> None:  # type: ignore[no-untyped-def]
    upstream, url = held_upstream
    env = {"GATEWAY_TF_URL": url, "GATEWAY_REQUEST_TIMEOUT_S": str(HANG_BOUND_S)}
    with gateway_process(env, "--graceful-timeout", str(HANG_BOUND_S)) as (proc, base):

        async def scenario() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=base, timeout=HANG_BOUND_S + 10) as client:
                tasks = [
                    asyncio.create_task(client.post("/predict/tf", json={"instances": test_rows[:1]}))
                    for _ in range(IN_FLIGHT)
                ]
                assert await asyncio.to_thread(upstream.all_arrived.wait, HANG_BOUND_S), upstream.arrived
                proc.send_signal(signal.SIGTERM)
                while not await asyncio.to_thread(_refuses_connections, base):  # shutting down, requests held
                    assert proc.poll() is None, "the gateway exited with requests in flight"
                    await asyncio.sleep(0.05)
                await asyncio.sleep(HOLD_IN_SHUTDOWN_S)
                upstream.release.set()
                return await asyncio.gather(*tasks)

        responses = asyncio.run(scenario())
        assert [r.status_code for r in responses] == [200] * IN_FLIGHT
        # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status is 0 or -SIGTERM.
        assert proc.wait(timeout=HANG_BOUND_S) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/healthz", timeout=1)
