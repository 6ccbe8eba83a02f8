"""Faults under load on the real native stack: a backend stopped, then slow; the other keeps serving, the
gateway fails fast with the right status, readiness follows, and it recovers without a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest

from stack.launcher import NativeStack
from tests.conftest import free_ports_config

pytestmark = pytest.mark.e2e

REQUEST_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory):  # type: ignore[no-untyped-def]
    s = NativeStack(
        free_ports_config(),
        run_dir=tmp_path_factory.mktemp("faults"),
        gateway_env={"GATEWAY_REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S), "GATEWAY_CONNECT_TIMEOUT_S": "0.5"},
    )
    with s:
        yield s


async def load(base: str, body: dict, seconds: float, concurrency: int = 4) -> dict[str, list[tuple[int, float]]]:  # type: ignore[type-arg]
    """Bounded closed-loop load on both gateway routes; returns (status, seconds) per request per backend."""
    results: dict[str, list[tuple[int, float]]] = {"tf": [], "torch": []}
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:

        async def worker(backend: str) -> None:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                r = await client.post(f"/predict/{backend}", json=body)
                results[backend].append((r.status_code, time.perf_counter() - started))
                if r.status_code != 200:
                    assert list(r.json()) == ["error", "backend"], r.text

        await asyncio.gather(*(worker(b) for b in ("tf", "torch") for _ in range(concurrency // 2)))
    return results


def rate(rows: list[tuple[int, float]], seconds: float) -> float:
    return sum(1 for status, _ in rows if status == 200) / seconds


def test_backend_stopped_then_back(stack, test_rows) -> None:  # type: ignore[no-untyped-def]
    url, body = stack.cfg.gateway_url, {"instances": test_rows[:1]}
    baseline = asyncio.run(load(url, body, 2.0))
    assert all(s == 200 for rows in baseline.values() for s, _ in rows)

    stack.stop_service("tfserving-compat")
    during = asyncio.run(load(url, body, 2.0))
    tf_statuses = {s for s, _ in during["tf"]}
    assert tf_statuses == {503}, tf_statuses
    assert max(t for _, t in during["tf"]) < REQUEST_TIMEOUT_S, "a stopped backend must fail fast, not time out"
    assert all(s == 200 for s, _ in during["torch"]), "the other backend keeps serving"
    assert rate(during["torch"], 2.0) > 0.5 * rate(baseline["torch"], 2.0)
    ready = httpx.get(f"{url}/readyz", timeout=5)
    assert ready.status_code == 503 and "tf" in ready.json()["error"]

    stack.start_service("tfserving-compat")
    after = asyncio.run(load(url, body, 1.0))
    assert {s for s, _ in after["tf"]} == {200}, "the gateway recovers without a restart"
    assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200


@pytest.mark.parametrize("service", ["torchserve", "tfserving-compat"])
def test_slow_backend_gives_504_within_the_bound(stack, test_rows, service) -> None:  # type: ignore[no-untyped-def]
    url, body = stack.cfg.gateway_url, {"instances": test_rows[:1]}
    backend = "torch" if service == "torchserve" else "tf"
    other = "tf" if backend == "torch" else "torch"
    pgid = stack.pid_of(service)
    os.killpg(pgid, signal.SIGSTOP)  # frozen: accepts connections (kernel backlog) but never answers
    try:
        during = asyncio.run(load(url, body, 2.5))
    finally:
        os.killpg(pgid, signal.SIGCONT)
    assert {s for s, _ in during[backend]} == {504}
    assert max(t for _, t in during[backend]) < REQUEST_TIMEOUT_S + 0.5
    assert during[other] and all(s == 200 for s, _ in during[other])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if httpx.post(f"{url}/predict/{backend}", json=body, timeout=5).status_code == 200:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"{backend} did not recover after SIGCONT")
