"""Admission: at most N requests in flight to each backend, and a bounded wait for a slot.

Without it, a burst queues inside the HTTP client's connection pool, where the wait counts against the connect
timeout: a healthy backend got blamed with 504 "timed out (connect)" for the gateway's own queue. With it, the
pool never makes a request wait (it is larger than the limit), the connect timeout measures connecting, and a
request that finds no slot within `admission_wait_s` is shed with an explicit 503 + Retry-After naming the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from gateway.errors import GatewayOverloaded
from gateway.metrics import GatewayMetrics


class Admission:
    def __init__(self, backends: list[str], limit: int, wait_s: float, metrics: GatewayMetrics) -> None:
        self.limit = limit
        self.wait_s = wait_s
        self._slots = {name: asyncio.Semaphore(limit) for name in backends}
        self._metrics = metrics

    @contextlib.asynccontextmanager
    async def slot(self, backend: str) -> AsyncIterator[None]:
        slots = self._slots[backend]
        try:
            if slots.locked():  # only a request that must wait pays for the timer
                await asyncio.wait_for(slots.acquire(), self.wait_s)
            else:
                await slots.acquire()
        except TimeoutError:
            self._metrics.shed.labels(backend).inc()
            raise GatewayOverloaded(
                f"gateway overloaded: its limit of {self.limit} concurrent requests to backend '{backend}' was "
                f"reached and no slot freed up within {self.wait_s:g} s; retry later",
                backend=backend,
            ) from None
        in_flight = self._metrics.in_flight.labels(backend)
        in_flight.inc()
        try:
            yield
        finally:
            in_flight.dec()
            slots.release()
