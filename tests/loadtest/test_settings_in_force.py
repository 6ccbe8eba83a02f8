"""The benchmark asks the servers what they run with and refuses a mode they don't run."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from loadtest.bench import StageFailed, batching_overrides, verify_settings
from stack.config import StackConfig
from stack.launcher import NativeStack
from tests.conftest import serve_in_thread


def _servers_that_ignore_batching() -> Starlette:
    """A TorchServe management API that describes its defaults (what a wrong model key gets you), and a TF side
    whose metrics say batching is on with the asked-for budget."""

    async def describe(_: object) -> JSONResponse:
        return JSONResponse([{
            "modelName": "digits", "modelVersion": "1", "batchSize": 1, "maxBatchDelay": 100, "minWorkers": 1,
            "maxWorkers": 1, "responseTimeout": 120, "workers": [{"id": "9000", "status": "READY"}],
        }])  # fmt: skip

    async def metrics(_: object) -> PlainTextResponse:
        return PlainTextResponse(
            'tfserving_compat_effective_config{batching="true",max_batch_size="16",batch_timeout_micros="2000",'
            'max_enqueued_batches="1000",num_batch_threads="2",intra_op_threads="0",inter_op_threads="0"} 1.0\n'
        )

    return Starlette(
        routes=[
            Route("/models/digits", describe),
            Route("/monitoring/prometheus/metrics", metrics),
        ]
    )


def test_the_bench_refuses_a_mode_the_servers_do_not_run(tmp_path: Path) -> None:
    with serve_in_thread(_servers_that_ignore_batching()) as url:
        port = url.rsplit(":", 1)[1]
        base = StackConfig.load()
        cfg = StackConfig.load({**batching_overrides("on", base), "TS_MANAGEMENT_PORT": port, "TF_REST_PORT": port})
        with pytest.raises(StageFailed, match=r"torch batch_size: asked 16, runs 1.*max_batch_delay_ms: asked 2"):
            verify_settings("on", NativeStack(cfg, run_dir=tmp_path))
        # The same servers are what "off" asks for on the torch side, but not on the TF side.
        cfg_off = StackConfig.load(
            {**batching_overrides("off", base), "TS_MANAGEMENT_PORT": port, "TF_REST_PORT": port}
        )
        with pytest.raises(StageFailed, match="tf batching: asked False, runs True"):
            verify_settings("off", NativeStack(cfg_off, run_dir=tmp_path))


def test_batching_on_is_one_budget_in_rows() -> None:
    base = StackConfig.load({"TF_MAX_BATCH_SIZE": "16", "TF_BATCH_TIMEOUT_MICROS": "2000"})
    one_row = batching_overrides("on", base, rows_per_request=1)
    assert (one_row["TF_MAX_BATCH_SIZE"], one_row["TS_BATCH_SIZE"], one_row["TS_MAX_BATCH_DELAY_MS"]) == (
        "16",
        "16",
        "2",
    )
    eight_rows = batching_overrides("on", base, rows_per_request=8)
    assert (eight_rows["TF_MAX_BATCH_SIZE"], eight_rows["TS_BATCH_SIZE"]) == ("16", "2")  # 2 requests = 16 rows
    big = batching_overrides("on", base, rows_per_request=64)
    assert (big["TF_MAX_BATCH_SIZE"], big["TS_BATCH_SIZE"]) == ("64", "1")  # TF refuses requests over its batch
