"""Server-side batching in the spirit of TF Serving's BatchingSession: concurrent requests to the same
signature are merged along the 0-th dimension (up to max_batch_size rows, waiting at most
batch_timeout_micros for more), run as one call, and split back.

As TF Serving's BasicBatchScheduler does: a request larger than max_batch_size is refused (INVALID_ARGUMENT),
a full queue (max_enqueued_batches batches waiting) refuses with UNAVAILABLE, the timeout runs from the moment
the batch's first task was enqueued, and tasks already waiting when the timeout expires still join the batch."""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stack.tfserving_compat.errors import ServingError, invalid


@dataclass(frozen=True)
class BatchingParameters:
    """What the batcher runs with; read from TF Serving's BatchingParameters file by server_config.py."""

    max_batch_size: int = 16
    batch_timeout_micros: int = 2000
    max_enqueued_batches: int = 1000
    num_batch_threads: int = 2


@dataclass
class _Task:
    key: tuple[Any, ...]
    version: Any
    signature: str
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future[dict[str, np.ndarray]]
    enqueued_at: float = field(default_factory=time.monotonic)


@dataclass
class Batcher:
    params: BatchingParameters
    run: Callable[[Any, str, dict[str, np.ndarray]], dict[str, np.ndarray]]
    _queue: asyncio.Queue[_Task] = field(default_factory=asyncio.Queue)
    _worker: asyncio.Task[None] | None = None
    _slots: asyncio.Semaphore | None = None
    _loop_ref: asyncio.AbstractEventLoop | None = None
    _queued_rows: int = 0
    _running: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self) -> None:
        self._slots = asyncio.Semaphore(self.params.num_batch_threads)
        self._loop_ref = asyncio.get_running_loop()
        self._worker = self._loop_ref.create_task(self._loop())

    def submit_from_thread(
        self, version: Any, signature: str, inputs: dict[str, np.ndarray], timeout: float | None = None
    ) -> dict[str, np.ndarray]:
        """For the gRPC server's threads: the same batcher (and queue) as REST requests."""
        if self._loop_ref is None:
            raise ServingError("UNAVAILABLE", "the batcher is not running")
        future = asyncio.run_coroutine_threadsafe(self.submit(version, signature, inputs), self._loop_ref)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise ServingError("DEADLINE_EXCEEDED", "Deadline Exceeded") from exc

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    async def submit(self, version: Any, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = {len(v) if v.ndim else -1 for v in inputs.values()}
        n = rows.pop() if len(rows) == 1 else -1
        if n <= 0:
            return await asyncio.to_thread(self.run, version, signature, inputs)  # odd shapes: alone, as TF would
        if n > self.params.max_batch_size:
            raise invalid(f"Task size {n} is larger than maximum input batch size {self.params.max_batch_size}")
        if math.ceil((self._queued_rows + n) / self.params.max_batch_size) > self.params.max_enqueued_batches:
            raise ServingError("UNAVAILABLE", "The batch scheduling queue to which this task was submitted is full")
        key = (id(version), signature, tuple(sorted((k, v.shape[1:], v.dtype.str) for k, v in inputs.items())))
        future: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
        self._queued_rows += n
        await self._queue.put(_Task(key, version, signature, inputs, n, future))
        return await future

    def _take(self, task: _Task) -> _Task:
        self._queued_rows -= task.rows
        return task

    async def _loop(self) -> None:
        carry: _Task | None = None
        loop = asyncio.get_running_loop()
        while True:
            first = carry or self._take(await self._queue.get())
            carry = None
            batch, rows = [first], first.rows
            # The timeout runs from the first task's arrival, not from when this loop got to it.
            deadline = loop.time() + self.params.batch_timeout_micros / 1e6 - (time.monotonic() - first.enqueued_at)
            while rows < self.params.max_batch_size:
                timeout = deadline - loop.time()
                try:
                    if timeout > 0:
                        task = self._take(await asyncio.wait_for(self._queue.get(), timeout))
                    else:  # past the deadline: whatever is already waiting still joins, nothing more is awaited
                        task = self._take(self._queue.get_nowait())
                except (TimeoutError, asyncio.QueueEmpty):
                    break
                if task.key != first.key or rows + task.rows > self.params.max_batch_size:
                    carry = task
                    break
                batch.append(task)
                rows += task.rows
            assert self._slots is not None
            await self._slots.acquire()
            running = loop.create_task(self._execute(batch))
            self._running.add(running)  # a reference until done: the loop keeps only weak ones
            running.add_done_callback(self._running.discard)

    async def _execute(self, batch: list[_Task]) -> None:
        try:
            merged = {k: np.concatenate([t.inputs[k] for t in batch]) for k in batch[0].inputs}
            try:
                outputs = await asyncio.to_thread(self.run, batch[0].version, batch[0].signature, merged)
            except Exception as exc:  # the merged call failed: every member gets the error
                for t in batch:
                    if not t.future.done():
                        t.future.set_exception(exc)
                return
            offset = 0
            for t in batch:
                part = {k: v[offset : offset + t.rows] for k, v in outputs.items()}
                offset += t.rows
                if not t.future.done():
                    t.future.set_result(part)
        finally:
            assert self._slots is not None
            self._slots.release()
