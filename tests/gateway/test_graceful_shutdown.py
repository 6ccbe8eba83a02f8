"""SIGTERM to a real gateway process: requests in flight finish with their answer; none is cut off."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest

from tests.conftest import gateway_process, tf_stand_in

UPSTREAM_DELAY_S = 1.5


@pytest.fixture
def slow_upstream():  # type: ignore[no-untyped-def]
    with tf_stand_in(delay_s=UPSTREAM_DELAY_S) as url:
        yield url


def test_in_flight_requests_finish_on_sigterm(slow_upstream, test_rows) -> None:  # type: ignore[no-untyped-def]
    env = {"GATEWAY_TF_URL": slow_upstream, "GATEWAY_REQUEST_TIMEOUT_S": "10"}
    with gateway_process(env, "--graceful-timeout", "10") as (proc, base):

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
