"""Server-side batching in the spirit of TF Serving's BatchingSession: concurrent requests to the same
signature are merged along the 0-th dimension (up to max_batch_size rows, waiting at most
batch_timeout_micros for more), run as one call, and split back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BatchingParameters:
    max_batch_size: int = 16
    batch_timeout_micros: int = 2000
    max_enqueued_batches: int = 1000
    num_batch_threads: int = 2

    @classmethod
    def parse(cls, text: str) -> BatchingParameters:
        """Read TF Serving's batching parameters text proto (`name { value: N }` lines)."""
        import re

        values = {m[0]: int(m[1]) for m in re.findall(r"(\w+)\s*\{\s*value:\s*(\d+)\s*\}", text)}
        return cls(
            max_batch_size=values.get("max_batch_size", cls.max_batch_size),
            batch_timeout_micros=values.get("batch_timeout_micros", cls.batch_timeout_micros),
            max_enqueued_batches=values.get("max_enqueued_batches", cls.max_enqueued_batches),
            num_batch_threads=values.get("num_batch_threads", cls.num_batch_threads),
        )


@dataclass
class _Task:
    key: tuple[Any, ...]
    version: Any
    signature: str
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future[dict[str, np.ndarray]]


@dataclass
class Batcher:
    params: BatchingParameters
    run: Callable[[Any, str, dict[str, np.ndarray]], dict[str, np.ndarray]]
    _queue: asyncio.Queue[_Task] = field(default_factory=asyncio.Queue)
    _worker: asyncio.Task[None] | None = None
    _slots: asyncio.Semaphore | None = None

    def start(self) -> None:
        self._slots = asyncio.Semaphore(self.params.num_batch_threads)
        self._worker = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    async def submit(self, version: Any, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = {len(v) if v.ndim else -1 for v in inputs.values()}
        n = rows.pop() if len(rows) == 1 else -1
        if n <= 0 or n > self.params.max_batch_size:
            return await asyncio.to_thread(self.run, version, signature, inputs)  # too big or odd: alone
        key = (id(version), signature, tuple(sorted((k, v.shape[1:], v.dtype.str) for k, v in inputs.items())))
        future: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Task(key, version, signature, inputs, n, future))
        return await future

    async def _loop(self) -> None:
        carry: _Task | None = None
        while True:
            first = carry or await self._queue.get()
            carry = None
            batch, rows = [first], first.rows
            deadline = asyncio.get_running_loop().time() + self.params.batch_timeout_micros / 1e6
            while rows < self.params.max_batch_size:
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    break
                try:
                    task = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    break
                if task.key != first.key or rows + task.rows > self.params.max_batch_size:
                    carry = task
                    break
                batch.append(task)
                rows += task.rows
            assert self._slots is not None
            await self._slots.acquire()
            asyncio.get_running_loop().create_task(self._execute(batch))

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
