"""The compatible server's batcher merges concurrent requests and splits the answers back correctly."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from stack.tfserving_compat import batching
from stack.tfserving_compat.batching import Batcher, BatchingParameters
from stack.tfserving_compat.errors import ServingError
from stack.tfserving_compat.server_config import BatchingSettings, batching_settings


def _waiting(batcher: Batcher) -> int:
    """Requests waiting in the batcher's queues (one per model version and signature)."""
    return sum(queue.tasks.qsize() for queue in batcher._queues.values())


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
        while _waiting(batcher) < 8:  # all eight enqueued: an event, not a sleep
            await asyncio.sleep(0)
        try:
            await batcher.submit("v", "", {"x": np.zeros((1, 2))})
        except ServingError as exc:
            return [exc, *waiting]
        finally:
            for t in waiting:
                t.cancel()
        return []

    exc, *_ = asyncio.run(scenario())
    assert isinstance(exc, ServingError) and exc.code == "UNAVAILABLE"
    assert exc.message == "The batch scheduling queue to which this task was submitted is full"  # TF Serving's words


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
        while _waiting(batcher) < 10:
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)  # a length, not a wait: all ten are >= 50x past their timeout, later is as good
        batcher.start()
        await asyncio.gather(*tasks)
        await batcher.stop()

    asyncio.run(scenario())
    assert calls == [10]


class _Model:
    """A stand-in servable whose answer says which model ran and on which rows: rows * factor + offset."""

    def __init__(self, factor: float) -> None:
        self.factor = factor


async def _queued_then_started(
    batcher: Batcher, requests: list[tuple[_Model, str, np.ndarray]]
) -> list[dict[str, np.ndarray]]:
    """Every request waits in the queue before the batcher starts, so what forms a batch is the queue's order and
    the batcher's rules, not the scheduler's timing."""
    tasks = [asyncio.create_task(batcher.submit(m, sig, {"x": x})) for m, sig, x in requests]
    while _waiting(batcher) < len(requests):  # each submit has enqueued: an event, not a sleep
        await asyncio.sleep(0)
    batcher.start()
    try:
        # A bound only for a hang (a lost task would never answer), not a timing assertion.
        return await asyncio.wait_for(asyncio.gather(*tasks), 10)
    finally:
        await batcher.stop()


def _rows(request_id: int, n: int, width: int = 3) -> np.ndarray:
    """n distinct rows, each naming its request and its place: 100 * request + row."""
    return np.repeat((100.0 * request_id + np.arange(n, dtype=np.float64))[:, None], width, axis=1)


def test_mixed_models_and_carry_over_each_request_gets_its_own_models_answer_for_its_own_rows() -> None:
    """Known answers with distinct values: a request that does not fit in what is left of a batch starts the next
    one (carry-over), a request for another model (or another row shape) never joins a batch, and every request
    gets its own model's answer for its own rows."""
    a, b = _Model(2.0), _Model(-1.0)
    calls: list[tuple[float, str, int]] = []

    def run(model: _Model, sig: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append((model.factor, sig, len(inputs["x"])))
        return {"y": inputs["x"] * model.factor}

    requests = [
        (a, "", _rows(0, 2)),
        (a, "", _rows(1, 1)),
        (a, "", _rows(2, 2)),  # 2 rows, 1 left in the batch: carried over, starts the next one
        (a, "", _rows(3, 2)),  # fills the carried batch to 4
        (b, "", _rows(4, 1)),  # another model: a batch of its own
        (a, "", _rows(5, 2)),  # back to model a: not merged into b's batch
        (a, "", _rows(6, 1, width=4)),  # same model, other row shape: cannot be concatenated, a batch of its own
        (a, "other", _rows(7, 1)),  # another signature: a batch of its own
    ]
    params = BatchingParameters(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1)
    results = asyncio.run(_queued_then_started(Batcher(params, run), requests))
    for (model, _sig, x), out in zip(requests, results, strict=True):
        assert np.array_equal(out["y"], x * model.factor)
    # Each model and signature has its own queue, batched in its order; the queues take turns on the batch thread.
    assert [c for c in calls if c[:2] == (2.0, "")] == [(2.0, "", 3), (2.0, "", 4), (2.0, "", 2), (2.0, "", 1)]
    assert sorted(c for c in calls if c[:2] != (2.0, "")) == [(-1.0, "", 1), (2.0, "other", 1)]


def test_a_carried_request_is_not_lost_when_it_is_the_last_one() -> None:
    calls: list[int] = []

    def run(_m: object, _s: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(inputs["x"]))
        return {"y": inputs["x"] + 1}

    model = _Model(1.0)
    requests = [(model, "", _rows(0, 3)), (model, "", _rows(1, 3))]
    params = BatchingParameters(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1)
    results = asyncio.run(_queued_then_started(Batcher(params, run), requests))
    assert [r["y"].tolist() for r in results] == [(x + 1).tolist() for _, _, x in requests]
    assert calls == [3, 3]


def _tell_when_taken(batcher: Batcher) -> asyncio.Event:
    """An event set each time the batcher takes a request from its queue."""
    taken = asyncio.Event()
    take = batcher._take

    def take_and_tell(queue, task):  # type: ignore[no-untyped-def]
        taken.set()
        return take(queue, task)

    batcher._take = take_and_tell  # type: ignore[method-assign]
    return taken


# 1 s: the shortest that leaves a stall of this process no room to matter; 60 s: far longer than any.
@pytest.mark.parametrize("timeout_micros", [1_000_000, 60_000_000])
def test_the_batch_timeout_waits_for_a_late_request_of_the_same_model(timeout_micros: int) -> None:
    """With time left before the timeout, a request arriving after the batch began joins it; the batch goes out
    when it is full, not when the time is up."""
    calls: list[int] = []

    def run(_m: object, _s: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(inputs["x"]))
        return {"y": inputs["x"]}

    async def scenario() -> list[dict[str, np.ndarray]]:
        batcher = Batcher(BatchingParameters(max_batch_size=3, batch_timeout_micros=timeout_micros), run)
        batcher.start()
        taken = _tell_when_taken(batcher)
        model = _Model(1.0)
        try:
            first = asyncio.create_task(batcher.submit(model, "", {"x": _rows(0, 1)}))
            await taken.wait()  # the batcher holds the first request and waits for more
            assert calls == []
            late = [asyncio.create_task(batcher.submit(model, "", {"x": _rows(i, 1)})) for i in (1, 2)]
            return await asyncio.wait_for(asyncio.gather(first, *late), 10)
        finally:
            await batcher.stop()

    results = asyncio.run(scenario())
    assert [r["y"][0, 0] for r in results] == [0.0, 100.0, 200.0]
    assert calls == [3]


def test_a_request_already_past_its_timeout_goes_out_without_waiting() -> None:
    """The timeout runs from arrival: a request that waited longer than it goes out with what is queued, and a request
    arriving after that is not waited for (counting the wait the wrong way round made the batch wait longer)."""
    calls: list[int] = []

    def run(_m: object, _s: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(inputs["x"]))
        return {"y": inputs["x"]}

    async def scenario() -> None:
        batcher = Batcher(BatchingParameters(max_batch_size=4, batch_timeout_micros=100_000), run)
        model = _Model(1.0)
        first = asyncio.create_task(batcher.submit(model, "", {"x": _rows(0, 1)}))
        while _waiting(batcher) < 1:
            await asyncio.sleep(0)
        await asyncio.sleep(0.2)  # a length, not a wait: the request is past its 0.1 s timeout, later is as good
        taken = _tell_when_taken(batcher)
        batcher.start()
        try:
            await taken.wait()  # the batcher formed the batch without yielding: [first] is on its way
            second = asyncio.create_task(batcher.submit(model, "", {"x": _rows(1, 1)}))
            await asyncio.wait_for(asyncio.gather(first, second), 10)
        finally:
            await batcher.stop()

    asyncio.run(scenario())
    assert calls == [1, 1]


def test_odd_shapes_and_empty_requests_run_alone_with_their_model_and_signature() -> None:
    """A scalar input, inputs of different row counts, or no rows: run at once on their own (as TF would), never
    queued into a batch, and with their own model and signature."""
    seen: list[tuple[object, str, dict[str, tuple[int, ...]]]] = []

    def run(model: object, sig: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.append((model, sig, {k: v.shape for k, v in inputs.items()}))
        return {k: v + 1 for k, v in inputs.items()}

    async def scenario() -> list[dict[str, np.ndarray]]:
        batcher = Batcher(BatchingParameters(max_batch_size=2, batch_timeout_micros=60_000_000), run)
        batcher.start()
        taken = _tell_when_taken(batcher)
        model = _Model(1.0)
        try:
            held = asyncio.create_task(batcher.submit(model, "s", {"x": _rows(0, 1)}))
            await taken.wait()  # a batch with room for one more row is open for 60 s
            alone = await asyncio.wait_for(
                asyncio.gather(
                    batcher.submit(model, "s", {"x": np.float64(7.0)}),
                    batcher.submit(model, "s", {"x": _rows(1, 2), "y": _rows(2, 3)}),
                    batcher.submit(model, "s", {"x": np.zeros((0, 3))}),
                ),
                10,  # bound for a hang: queued, these would wait 60 s in the open batch
            )
            fill = batcher.submit(model, "s", {"x": _rows(3, 1)})
            await asyncio.wait_for(asyncio.gather(held, fill), 10)
            return list(alone)
        finally:
            await batcher.stop()

    scalar, uneven, empty = asyncio.run(scenario())
    assert scalar["x"] == 8.0
    assert np.array_equal(uneven["x"], _rows(1, 2) + 1) and np.array_equal(uneven["y"], _rows(2, 3) + 1)
    assert empty["x"].shape == (0, 3)
    model = seen[0][0]
    assert isinstance(model, _Model)
    assert seen == [
        (model, "s", {"x": ()}),
        (model, "s", {"x": (2, 3), "y": (3, 3)}),
        (model, "s", {"x": (0, 3)}),
        (model, "s", {"x": (2, 3)}),
    ]


def test_a_request_of_exactly_the_batch_size_is_served_and_the_queue_empties() -> None:
    """max_batch_size rows are a batch, not a refusal; once answered, the rows no longer count against
    max_enqueued_batches (with 1 batch allowed, a second full request is accepted), and no finished batch is kept."""

    def run(_m: object, _s: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"]}

    async def scenario() -> Batcher:
        batcher = Batcher(BatchingParameters(max_batch_size=4, batch_timeout_micros=0, max_enqueued_batches=1), run)
        batcher.start()
        model = _Model(1.0)
        try:
            for i, n in enumerate([1, 4, 4, 2, 4]):
                out = await asyncio.wait_for(batcher.submit(model, "", {"x": _rows(i, n)}), 10)
                assert np.array_equal(out["y"], _rows(i, n))
            for _ in range(3):  # the last batch's done callbacks
                await asyncio.sleep(0)
            return batcher
        finally:
            await batcher.stop()

    batcher = asyncio.run(scenario())
    assert batcher._queues == {}  # an empty queue is let go, its rows with it
    assert batcher._running == set()  # finished batches are let go


def test_stop_cancels_the_batchers_loops() -> None:
    async def scenario() -> list[bool]:
        batcher = Batcher(BatchingParameters(max_batch_size=2, batch_timeout_micros=60_000_000), lambda *_: {})
        batcher.start()
        taken = _tell_when_taken(batcher)
        waiting = [asyncio.create_task(batcher.submit(_Model(f), "", {"x": _rows(0, 1)})) for f in (1.0, 2.0)]
        while taken.is_set() is False or len(batcher._queues) < 2:  # both models' batches are open for 60 s
            await asyncio.sleep(0)
        workers = [q.worker for q in batcher._queues.values() if q.worker is not None]
        await batcher.stop()
        await asyncio.wait_for(asyncio.gather(*workers, return_exceptions=True), 10)  # a bound for a hang
        for request in waiting:
            request.cancel()
        return [w.cancelled() for w in workers]

    assert asyncio.run(scenario()) == [True, True]


def test_grpc_threads_submit_to_the_same_batcher() -> None:
    """submit_from_thread: a gRPC handler thread's request goes into the running batcher's queue (merged with a REST
    request); before start it is UNAVAILABLE; past its deadline it is DEADLINE_EXCEEDED."""
    calls: list[tuple[str, int]] = []

    def run(_m: object, sig: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append((sig, len(inputs["x"])))
        return {"y": inputs["x"] * 2}

    idle = Batcher(BatchingParameters(), run)
    with pytest.raises(ServingError, match="the batcher is not running") as err:
        idle.submit_from_thread(_Model(1.0), "", {"x": _rows(0, 1)})
    assert err.value.code == "UNAVAILABLE" and err.value.message == "the batcher is not running"

    async def scenario() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], BaseException | None]:
        batcher = Batcher(BatchingParameters(max_batch_size=3, batch_timeout_micros=60_000_000), run)
        batcher.start()
        taken = _tell_when_taken(batcher)
        model = _Model(1.0)
        try:
            rest = asyncio.create_task(batcher.submit(model, "s", {"x": _rows(0, 1)}))
            await taken.wait()
            from_thread = asyncio.to_thread(batcher.submit_from_thread, model, "s", {"x": _rows(1, 2)}, 30.0)
            got = await asyncio.wait_for(asyncio.gather(rest, from_thread), 10)
            # A thread whose deadline passes while its request waits in an open batch (another model's, 60 s).
            taken.clear()
            blocker = asyncio.create_task(batcher.submit(_Model(3.0), "s", {"x": _rows(2, 1)}))
            await taken.wait()
            late: BaseException | None = None
            try:
                await asyncio.to_thread(batcher.submit_from_thread, model, "s", {"x": _rows(3, 1)}, 0.05)
            except ServingError as exc:
                late = exc
            blocker.cancel()
            return got[0], got[1], late
        finally:
            await batcher.stop()

    rest, threaded, late = asyncio.run(scenario())
    assert np.array_equal(rest["y"], _rows(0, 1) * 2) and np.array_equal(threaded["y"], _rows(1, 2) * 2)
    assert calls[0] == ("s", 3)  # one batch: the REST row and the thread's two
    assert isinstance(late, ServingError) and late.code == "DEADLINE_EXCEEDED" and late.message == "Deadline Exceeded"


def test_interleaved_models_batch_per_model_as_tf_serving_does() -> None:
    a, b = _Model(1.0), _Model(3.0)
    calls: list[tuple[float, int]] = []

    def run(model: _Model, _sig: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append((model.factor, len(inputs["x"])))
        return {"y": inputs["x"] * model.factor}

    requests = [(m, "", _rows(i, 1)) for i, m in enumerate([a, b, a, b])]
    params = BatchingParameters(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1)
    asyncio.run(_queued_then_started(Batcher(params, run), requests))
    assert sorted(calls) == [(1.0, 2), (3.0, 2)]


def test_interleaved_signatures_batch_per_signature() -> None:
    calls: list[tuple[str, int]] = []

    def run(_m: object, sig: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append((sig, len(inputs["x"])))
        return {"y": inputs["x"] + (1 if sig == "a" else 2)}

    model = _Model(1.0)
    requests = [(model, sig, _rows(i, 1)) for i, sig in enumerate(["a", "b", "a", "b", "a"])]
    params = BatchingParameters(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1)
    results = asyncio.run(_queued_then_started(Batcher(params, run), requests))
    for (_, sig, x), out in zip(requests, results, strict=True):
        assert np.array_equal(out["y"], x + (1 if sig == "a" else 2))
    assert sorted(calls) == [("a", 3), ("b", 2)]


def test_each_queue_is_full_on_its_own_and_let_go_when_empty() -> None:
    """max_enqueued_batches counts per queue, as in TF Serving: model a's full queue refuses a's next request, not
    model b's; once served, the queues are let go, and a later request gets a new one."""

    def run(_m: object, _s: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"]}

    async def scenario() -> tuple[ServingError | None, int, Batcher]:
        a, b = _Model(1.0), _Model(2.0)
        batcher = Batcher(BatchingParameters(max_batch_size=2, max_enqueued_batches=1, batch_timeout_micros=0), run)
        waiting = [asyncio.create_task(batcher.submit(a, "", {"x": _rows(i, 1)})) for i in range(2)]
        waiting.append(asyncio.create_task(batcher.submit(b, "", {"x": _rows(2, 2)})))
        while _waiting(batcher) < 3:
            await asyncio.sleep(0)
        refused = None
        try:
            await batcher.submit(a, "", {"x": _rows(3, 1)})
        except ServingError as exc:
            refused = exc
        batcher.start()
        try:
            await asyncio.wait_for(asyncio.gather(*waiting), 10)
            for _ in range(3):  # the workers end once their queue is empty
                await asyncio.sleep(0)
            left = len(batcher._queues)
            out = await asyncio.wait_for(batcher.submit(a, "", {"x": _rows(4, 2)}), 10)
            assert np.array_equal(out["y"], _rows(4, 2))
            return refused, left, batcher
        finally:
            await batcher.stop()

    refused, left, _ = asyncio.run(scenario())
    assert refused is not None and refused.code == "UNAVAILABLE"
    assert left == 0


@pytest.mark.parametrize("stage", ["merge", "outputs"])
def test_a_batch_that_fails_outside_the_model_call_still_answers_every_caller(
    stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error merging the inputs (np.concatenate), or outputs that can't be split back (a scalar, or not one row per
    input row), reaches each member of the batch: none is left waiting forever, and the batcher goes on."""
    outputs: dict[str, Any] = {"y": np.float64(1.0)}

    def run(_m: object, _s: str, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        return outputs if stage == "outputs" else {"y": inputs["x"]}

    if stage == "merge":

        def concatenate(*_: object, **__: object) -> np.ndarray:
            raise MemoryError("no room to merge")

        monkeypatch.setattr(batching.np, "concatenate", concatenate)

    async def scenario() -> list[object]:
        batcher = Batcher(BatchingParameters(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1), run)
        model = _Model(1.0)
        tasks = [asyncio.create_task(batcher.submit(model, "", {"x": _rows(i, 1)})) for i in range(3)]
        while _waiting(batcher) < 3:
            await asyncio.sleep(0)
        batcher.start()
        try:
            # A bound only for a hang (a caller no one answers), not a timing assertion.
            return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        finally:
            await batcher.stop()

    # TF Serving's words (batching_session.cc, SplitOutputTensors)
    unsplittable = (
        "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension sizes of the input tensors"
    )
    if stage == "merge":
        results = asyncio.run(scenario())
        assert all(isinstance(r, MemoryError) for r in results), results
        return
    for y in (np.float64(1.0), np.zeros(2), np.zeros(4)):  # a scalar, 2 rows or 4 for a batch of 3
        outputs["y"] = y
        results = asyncio.run(scenario())
        assert all(isinstance(r, ServingError) and r.code == "FAILED_PRECONDITION" for r in results), results
        assert all(isinstance(r, ServingError) and r.message == unsplittable for r in results), results
    outputs["y"] = np.zeros(3)  # one row each: answered
    assert [r["y"].tolist() for r in asyncio.run(scenario())] == [[0.0]] * 3  # type: ignore[index]


def test_rows_taken_into_a_batch_no_longer_count_against_the_queue() -> None:
    """One batch thread, busy with batch A; batch B is formed and waits for the thread; C waits in the queue. With one
    batch allowed in the queue (2 rows), B and C are accepted (A's and B's rows left the queue when they were taken),
    D is refused while C waits, and all three accepted requests are answered once the model returns."""
    release = threading.Event()

    def run(_m: object, _s: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        release.wait(10)
        return {"y": inputs["x"]}

    async def scenario() -> tuple[list[dict[str, np.ndarray]], ServingError | None]:
        params = BatchingParameters(
            max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=1, num_batch_threads=1
        )
        batcher = Batcher(params, run)
        batcher.start()
        taken = _tell_when_taken(batcher)
        model = _Model(1.0)
        try:
            accepted = []
            for i in range(3):  # A, B, C: each taken into a batch (A, B) or waiting alone in the queue (C)
                taken.clear()
                accepted.append(asyncio.create_task(batcher.submit(model, "", {"x": _rows(i, 2)})))
                if i < 2:
                    await taken.wait()
            while _waiting(batcher) < 1:
                await asyncio.sleep(0)
            refused = None
            try:
                await batcher.submit(model, "", {"x": _rows(3, 1)})
            except ServingError as exc:
                refused = exc
            release.set()
            return await asyncio.wait_for(asyncio.gather(*accepted), 10), refused
        finally:
            release.set()
            await batcher.stop()

    answers, refused = asyncio.run(scenario())
    assert [a["y"].tolist() for a in answers] == [_rows(i, 2).tolist() for i in range(3)]
    assert refused is not None and refused.code == "UNAVAILABLE"
