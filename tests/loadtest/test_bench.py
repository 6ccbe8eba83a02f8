"""Real locust runs: a short benchmark gives a complete report; a wrong answer is counted as a failure."""

from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from loadtest.runner import BenchOptions, bench, run_locust
from stack.config import StackConfig
from stack.launcher import free_port
from tests.conftest import serve_in_thread

pytestmark = pytest.mark.integration


def test_short_benchmark_writes_a_complete_report(native_stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    opts = BenchOptions(
        users=[1, 2],
        duration_s=2,
        slo_ms=1000,
        slo_users=2,
        slo_duration_s=2,
        slo_max_steps=1,
        slo_refine_steps=0,
        slo_start_rps=10,
    )
    summary = bench(opts, tmp_path, stack=native_stack, log=lambda _: None)
    ms = summary["measurements"]
    targets = {"tf-direct", "torch-direct", "gateway-tf", "gateway-torch", "gateway-compare"}
    assert {(m["target"], m["users"]) for m in ms} == {(t, u) for t in targets for u in (1, 2)}
    for m in ms:
        assert m["requests"] > 0 and m["failures"] == 0, m
        assert 0 < m["p50"] <= m["p99"] <= m["max"] + 1
    report = (tmp_path / "report.md").read_text()
    for target in targets:
        assert f"### {target}" in report
    for section in (
        "## Environment",
        "## Gateway added latency",
        "## Highest rate within the latency SLO",
        "not TensorFlow Serving",
        "| tf | off | 1 |",
        "| torch | off | 2 |",
    ):
        assert section in report
    for png in ("latency_percentiles.png", "throughput.png", "latency_distribution.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in report
    assert json.loads((tmp_path / "summary.json").read_text())["environment"]["cpu_count"] >= 1
    assert (tmp_path / "csv" / "off-tf-direct-u1_stats.csv").exists()
    assert (tmp_path / "csv" / "off-gateway-compare-u2.html").exists()
    assert len(summary["slo"]) == 2


@pytest.fixture
def wrong_model_server():  # type: ignore[no-untyped-def]
    """A server with TF Serving's predict URL whose model always answers class (true + 1) % 10."""
    from loadtest.payloads import payloads

    expected = {p.body: p.expected for p in payloads(1)}

    async def predict(request: Request) -> JSONResponse:
        body = await request.body()
        labels = expected[body]
        return JSONResponse({"predictions": [[1.0 if i == (k + 1) % 10 else 0.0 for i in range(10)] for k in labels]})

    app = Starlette(routes=[Route("/v1/models/digits:predict", predict, methods=["POST"])])
    with serve_in_thread(app) as url:
        yield int(url.rsplit(":", 1)[1])


def test_wrong_answers_are_failures(wrong_model_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = StackConfig.load({"TF_REST_PORT": str(wrong_model_server)})
    m = run_locust(cfg, "tf-direct", users=2, duration_s=2, out_prefix=tmp_path / "wrong", batch_size=1, batching="off")
    assert m.requests > 0
    assert m.failures == m.requests
    assert any("expected" in s for s in m.failure_samples)


def test_the_same_locustfile_runs_distributed(native_stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Master + worker, as compose and k8s run it (here both on loopback)."""
    import subprocess
    import sys

    from loadtest.runner import LOCUSTFILE, locust_env, parse_stats
    from stack.config import ROOT

    env = locust_env(native_stack.cfg, 1)
    master_port = free_port()
    prefix = tmp_path / "dist"
    master = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--master", "--headless", "--expect-workers", "1",
         "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port), "-u", "2", "-r", "2", "-t", "3s",
         "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING", "GatewayTF", "TorchServeDirect"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--master-host", "127.0.0.1",
         "--master-port", str(master_port), "--loglevel", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        output, _ = master.communicate(timeout=90)
        assert master.returncode == 0, output[-2000:]
    finally:
        for p in (master, worker):
            if p.poll() is None:
                p.kill()
        worker.wait(timeout=30)
    m = parse_stats(prefix, "distributed", 2, "off")
    assert m.requests > 0 and m.failures == 0


@pytest.fixture
def malformed_model_server():  # type: ignore[no-untyped-def]
    """TF Serving's predict URL answering rows that break a naive check: null, a string, all zeros, all NaN."""
    import itertools

    rows = itertools.cycle(['[null,0,0,0,0,0,0,0,0,0]', '["1",0,0,0,0,0,0,0,0,0]', "[0,0,0,0,0,0,0,0,0,0]",
                            "[NaN,NaN,NaN,NaN,NaN,NaN,NaN,NaN,NaN,NaN]"])  # fmt: skip

    async def predict(request: Request) -> Response:
        await request.body()
        return Response('{"predictions": [' + next(rows) + "]}", media_type="application/json")

    app = Starlette(routes=[Route("/v1/models/digits:predict", predict, methods=["POST"])])
    with serve_in_thread(app) as url:
        yield int(url.rsplit(":", 1)[1])


def test_malformed_answers_are_failures(malformed_model_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = StackConfig.load({"TF_REST_PORT": str(malformed_model_server)})
    m = run_locust(cfg, "tf-direct", users=1, duration_s=2, out_prefix=tmp_path / "bad", batch_size=1, batching="off")
    assert m.requests > 0
    assert m.failures == m.requests  # none counted as success, none lost as an exception


def test_each_backend_is_checked_against_its_own_models_labels(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`--train native`: the torch model, trained apart, disagrees with the TF model on some rows; answers that are
    right for the torch model must not count as failures of torch-direct."""
    from loadtest.payloads import REFERENCE_FILE

    ref = json.loads(REFERENCE_FILE.read_text())
    ref["expected_torch"] = [(k + 1) % 10 if i % 3 == 0 else k for i, k in enumerate(ref["expected"])]
    reference = tmp_path / "native.json"
    reference.write_text(json.dumps(ref))
    by_body = {
        json.dumps({"instances": [row]}).encode(): k for row, k in zip(ref["rows"], ref["expected_torch"], strict=True)
    }

    async def predict(request: Request) -> JSONResponse:
        k = by_body[await request.body()]
        return JSONResponse({"predictions": [[0.91 if i == k else 0.01 for i in range(10)]]})

    app = Starlette(routes=[Route("/predictions/digits", predict, methods=["POST"])])
    monkeypatch.setenv("LOADTEST_REFERENCE", str(reference))
    with serve_in_thread(app) as url:
        cfg = StackConfig.load({"TS_INFERENCE_PORT": url.rsplit(":", 1)[1]})
        m = run_locust(
            cfg, "torch-direct", users=1, duration_s=2, out_prefix=tmp_path / "n", batch_size=1, batching="off"
        )
        assert m.requests > 0 and m.failures == 0, m.failure_samples
        del ref["expected_torch"]  # a reference with the TF model's labels only: a third of the answers "fail"
        reference.write_text(json.dumps(ref))
        m = run_locust(
            cfg, "torch-direct", users=1, duration_s=2, out_prefix=tmp_path / "o", batch_size=1, batching="off"
        )
        assert 0 < m.failures < m.requests
