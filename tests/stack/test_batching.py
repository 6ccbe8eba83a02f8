"""The compatible server's batcher merges concurrent requests and splits the answers back correctly."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from stack.tfserving_compat.batching import Batcher, BatchingParameters
from stack.tfserving_compat.errors import ServingError
from stack.tfserving_compat.server_config import BatchingSettings, batching_settings


def test_batching_parameters_file_is_read_with_the_schedulers_defaults(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 32 } batch_timeout_micros { value: 5000 } num_batch_threads { value: 4 }")
    # max_enqueued_batches left out: SharedBatchScheduler's QueueOptions default (10), not a value of our own
    assert batching_settings(str(path)) == BatchingSettings(32, 5000, 10, 4)


def test_concurrent_requests_are_merged_and_split_back() -> None:
    calls: list[int] = []
    lock = threading.Lock()

    def run(_version: object, _sig: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with lock:
            calls.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2}

    async def scenario() -> list[dict[str, np.ndarray]]:
        batcher = Batcher(BatchingParameters(max_batch_size=8, batch_timeout_micros=50_000), run)
        batcher.start()
        try:
            reqs = [np.full((2, 3), i, dtype=np.float32) for i in range(4)]
            return await asyncio.gather(*(batcher.submit("v", "", {"x": r}) for r in reqs))
        finally:
            await batcher.stop()

    results = asyncio.run(scenario())
    for i, out in enumerate(results):
        assert np.array_equal(out["y"], np.full((2, 3), 2 * i))
    assert sum(calls) == 8 and len(calls) < 4, f"expected merged calls, got {calls}"


def test_errors_reach_every_member_of_the_batch() -> None:
    def run(*_: object) -> dict[str, np.ndarray]:
        raise ValueError("boom")

    async def scenario() -> None:
        batcher = Batcher(BatchingParameters(max_batch_size=4, batch_timeout_micros=10_000), run)
        batcher.start()
        try:
            results = await asyncio.gather(
                *(batcher.submit("v", "", {"x": np.zeros((1, 2))}) for _ in range(3)), return_exceptions=True
            )
            assert all(isinstance(r, ValueError) for r in results)
        finally:
            await batcher.stop()

    asyncio.run(scenario())


def test_empty_requests_run_alone() -> None:
    seen = []

    def run(_v: object, _s: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.append(len(inputs["x"]))
        return {"y": inputs["x"]}

    async def scenario() -> None:
        batcher = Batcher(BatchingParameters(max_batch_size=8), run)
        batcher.start()
        await batcher.submit("v", "", {"x": np.zeros((0, 2))})
        await batcher.stop()

    asyncio.run(scenario())
    assert seen == [0]


def test_a_request_larger_than_the_batch_is_refused_as_tf_serving_does() -> None:
    async def scenario() -> None:
        batcher = Batcher(BatchingParameters(max_batch_size=16), lambda *_: {})
        batcher.start()
        try:
            await batcher.submit("v", "", {"x": np.zeros((20, 2))})
        finally:
            await batcher.stop()

    with pytest.raises(ServingError, match="Task size 20 is larger than maximum input batch size 16") as err:
        asyncio.run(scenario())
    assert err.value.code == "INVALID_ARGUMENT"


def test_a_full_queue_refuses_with_unavailable() -> None:
    async def scenario() -> list[object]:
        # Not started: nothing leaves the queue. 2 batches of 4 rows fit; the 9th row does not.
        batcher = Batcher(BatchingParameters(max_batch_size=4, max_enqueued_batches=2), lambda *_: {})
        waiting = [asyncio.create_task(batcher.submit("v", "", {"x": np.zeros((1, 2))})) for _ in range(8)]
        await asyncio.sleep(0.01)
        try:
            await batcher.submit("v", "", {"x": np.zeros((1, 2))})
        except ServingError as exc:
            return [exc, *waiting]
        finally:
            for t in waiting:
                t.cancel()
        return []

    exc, *_ = asyncio.run(scenario())
    assert isinstance(exc, ServingError) and exc.code == "UNAVAILABLE" and "queue" in exc.message


def test_the_timeout_runs_from_arrival_and_waiting_tasks_still_join() -> None:
    """Tasks that queued while the batcher was busy are past their timeout: they go out together, not one by one
    (it once sent a 2-row batch with 45 queued)."""
    calls: list[int] = []

    def run(_v: object, _s: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(inputs["x"]))
        return {"y": inputs["x"]}

    async def scenario() -> None:
        batcher = Batcher(BatchingParameters(max_batch_size=16, batch_timeout_micros=1000), run)
        tasks = [asyncio.create_task(batcher.submit("v", "", {"x": np.zeros((1, 2))})) for _ in range(10)]
        await asyncio.sleep(0.05)  # all ten are 50x past their timeout when the batcher gets to them
        batcher.start()
        await asyncio.gather(*tasks)
        await batcher.stop()

    asyncio.run(scenario())
    assert calls == [10]
