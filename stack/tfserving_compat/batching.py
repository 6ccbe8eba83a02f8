"""Server-side batching in the spirit of TF Serving's BatchingSession: concurrent requests to the same
signature are merged along the 0-th dimension (up to max_batch_size rows, waiting at most
batch_timeout_micros for more), run as one call, and split back.

As TF Serving does, each servable (model version) and signature has its own queue, so interleaved requests for two
versions or signatures still batch with their own and a batch never mixes them; the queues share the batch threads
(num_batch_threads). As its BasicBatchScheduler does: a request larger than max_batch_size is refused
(INVALID_ARGUMENT), a full queue (max_enqueued_batches batches waiting in it) refuses with UNAVAILABLE, the timeout
runs from the moment the batch's first task was enqueued, and tasks already waiting when the timeout expires still
join the batch. A queue's worker ends when its queue is empty (the next request starts another), so names sent by
clients can't pile up idle queues."""

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
class _Queue:
    """One servable's and signature's queue: its tasks, the rows waiting in it, and the worker that batches them."""

    tasks: asyncio.Queue[_Task] = field(default_factory=asyncio.Queue)
    rows: int = 0
    worker: asyncio.Task[None] | None = None


@dataclass
class Batcher:
    params: BatchingParameters
    run: Callable[[Any, str, dict[str, np.ndarray]], dict[str, np.ndarray]]
    _queues: dict[tuple[int, str], _Queue] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = None
    _loop_ref: asyncio.AbstractEventLoop | None = None
    _running: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self) -> None:
        self._slots = asyncio.Semaphore(self.params.num_batch_threads)
        self._loop_ref = asyncio.get_running_loop()
        for key in list(self._queues):  # requests that queued before the start
            self._start_worker(key)

    def _start_worker(self, key: tuple[int, str]) -> None:
        queue = self._queues[key]
        if self._loop_ref is not None and queue.worker is None:
            queue.worker = self._loop_ref.create_task(self._loop(key, queue))

    def submit_from_thread(
        self, version: Any, signature: str, inputs: dict[str, np.ndarray], timeout: float | None = None
    ) -> dict[str, np.ndarray]:
        """For the gRPC server's threads: the same batcher (and queues) as REST requests."""
        if self._loop_ref is None:
            raise ServingError("UNAVAILABLE", "the batcher is not running")
        future = asyncio.run_coroutine_threadsafe(self.submit(version, signature, inputs), self._loop_ref)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise ServingError("DEADLINE_EXCEEDED", "Deadline Exceeded") from exc

    async def stop(self) -> None:
        for queue in self._queues.values():
            if queue.worker is not None:
                queue.worker.cancel()

    async def submit(self, version: Any, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = {len(v) if v.ndim else -1 for v in inputs.values()}
        n = rows.pop() if len(rows) == 1 else -1
        if n <= 0:
            return await asyncio.to_thread(self.run, version, signature, inputs)  # odd shapes: alone, as TF would
        if n > self.params.max_batch_size:
            raise invalid(f"Task size {n} is larger than maximum input batch size {self.params.max_batch_size}")
        # The task holds its version, so the version's id is not reused while the task waits.
        queue_key = (id(version), signature)
        queue = self._queues.get(queue_key) or _Queue()
        if math.ceil((queue.rows + n) / self.params.max_batch_size) > self.params.max_enqueued_batches:
            raise ServingError("UNAVAILABLE", "The batch scheduling queue to which this task was submitted is full")
        key = (id(version), signature, tuple(sorted((k, v.shape[1:], v.dtype.str) for k, v in inputs.items())))
        future: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
        self._queues[queue_key] = queue  # kept only with a task in it: a worker starts on a queue that has one
        queue.rows += n
        queue.tasks.put_nowait(_Task(key, version, signature, inputs, n, future))
        self._start_worker(queue_key)
        return await future

    def _take(self, queue: _Queue, task: _Task) -> _Task:
        queue.rows -= task.rows
        return task

    async def _loop(self, key: tuple[int, str], queue: _Queue) -> None:
        carry: _Task | None = None
        loop = asyncio.get_running_loop()
        while carry is not None or not queue.tasks.empty():
            first = carry or self._take(queue, queue.tasks.get_nowait())
            carry = None
            batch, rows = [first], first.rows
            # The timeout runs from the first task's arrival, not from when this loop got to it.
            deadline = loop.time() + self.params.batch_timeout_micros / 1e6 - (time.monotonic() - first.enqueued_at)
            while rows < self.params.max_batch_size:
                timeout = deadline - loop.time()
                try:
                    if timeout > 0:
                        task = self._take(queue, await asyncio.wait_for(queue.tasks.get(), timeout))
                    else:  # past the deadline: whatever is already waiting still joins, nothing more is awaited
                        task = self._take(queue, queue.tasks.get_nowait())
                except (TimeoutError, asyncio.QueueEmpty):
                    break
                if task.key != first.key or rows + task.rows > self.params.max_batch_size:
                    carry = task  # another row shape, or no room left: it starts the next batch
                    break
                batch.append(task)
                rows += task.rows
            assert self._slots is not None
            await self._slots.acquire()
            running = loop.create_task(self._execute(batch, rows))
            self._running.add(running)  # a reference until done: the loop keeps only weak ones
            running.add_done_callback(self._running.discard)
        del self._queues[key]  # empty, and no await since it was found so: a new request starts a new queue

    async def _execute(self, batch: list[_Task], rows: int) -> None:
        try:
            merged = {k: np.concatenate([t.inputs[k] for t in batch]) for k in batch[0].inputs}
            outputs = await asyncio.to_thread(self.run, batch[0].version, batch[0].signature, merged)
            if any(np.ndim(v) == 0 or len(v) != rows for v in outputs.values()):
                raise ServingError(  # TF Serving's check before it splits a batch's outputs
                    "FAILED_PRECONDITION",
                    "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension sizes of the "
                    "input tensors",
                )
        except Exception as exc:  # merging, the merged call or its outputs failed: every member gets the error
            for t in batch:
                if not t.future.done():
                    t.future.set_exception(exc)
            return
        finally:
            assert self._slots is not None
            self._slots.release()
        offset = 0
        for t in batch:
            part = {k: v[offset : offset + t.rows] for k, v in outputs.items()}
            offset += t.rows
            if not t.future.done():
                t.future.set_result(part)
