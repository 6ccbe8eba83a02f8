"""Real locust runs: a short benchmark gives a complete report; a wrong answer is counted as a failure."""

from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from loadtest.bench import BenchOptions, bench, run_lean
from loadtest.drive.locust_run import run_locust
from stack.config import StackConfig
from stack.launcher import free_port
from tests.conftest import serve_in_thread

pytestmark = pytest.mark.integration


def test_short_benchmark_writes_a_complete_report(native_stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    opts = BenchOptions(
        users=[1, 2],
        rows=[1, 8],
        duration_s=0.5,
        trials=3,
        max_trials=3,
        verdict_trials=3,
        verdict_max_trials=3,
        load_warmup_s=0.3,
        startup_repeats=2,
        slo_ms=1000,
        slo_arrivals=20,
        slo_max_steps=1,
        slo_refine_steps=0,
        slo_start_rps=20,
    )
    summary = bench(opts, tmp_path, stack=native_stack, log=lambda _: None)
    points = summary["points"]
    targets = {"tf-direct", "torch-direct", "gateway-tf", "gateway-torch", "gateway-compare"}
    assert {(p["target"], p["users"], p["rows"]) for p in points} == {
        (t, u, r) for t in targets for u in (1, 2) for r in (1, 8)
    }
    for p in points:
        assert p["trials"] == 3 and p["requests"] > 0 and p["failures"] == 0, p
        assert 0 < p["p50"]["min"] <= p["p50"]["median"] <= p["p50"]["max"]
        assert p["latency"]["p50"] <= p["latency"]["p99"] <= p["latency"]["max"]
        assert p["cpu_us_per_request"]["generator"]["median"] > 0
    # Sub-millisecond figures: one median may land on a whole ms; with whole-ms buckets all of them would
    assert sum(p["p50"]["median"] != round(p["p50"]["median"]) for p in points) > len(points) // 2
    direct = {p["target"]: p for p in points if p["users"] == 1 and p["rows"] == 1}
    assert direct["tf-direct"]["cpu_us_per_request"]["tf"]["median"] > 0
    assert direct["torch-direct"]["cpu_us_per_request"]["torch"]["median"] > 0
    assert direct["gateway-tf"]["cpu_us_per_request"]["gateway"]["median"] > 0
    assert direct["torch-direct"]["server_mean_ms"]["torch"] > 0 and direct["tf-direct"]["server_mean_ms"]["tf"] > 0
    assert set(summary["startup"]) == {"tf", "torch"}
    assert summary["startup"]["torch"]["start_to_first_prediction_s"] > 0
    report = (tmp_path / "report.md").read_text()
    for section in (
        "## Verdict",
        "## Environment",
        "### Settings in force",
        "## Start-up and footprint",
        "## Cost per request",
        "## Client-observed vs server-reported time",
        "## Gateway added latency",
        "## Highest rate within the latency SLO",
        "not TensorFlow Serving",
        "#### gateway-compare",
        "### 8 row(s) per request",
        "open loop",
    ):
        assert section in report, section
    for png in ("latency_percentiles.png", "throughput.png", "cpu_per_request.png", "latency_distribution.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in report
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["environment"]["cpu_count"] >= 1 and len(saved["runs"]) == 5 * 2 * 2 * 3
    assert len(summary["slo"]) == 2 and all(s["steps"][0]["requests"] == 20 for s in summary["slo"])
    assert all(s["bracket"] == [20.0, None] for s in summary["slo"])  # one step, held: nothing broke
    verdict_lines = [line for line in report.splitlines() if line.startswith("- **")][:6]
    assert len(verdict_lines) == 6 and all("no verdict" in v or "×" in v or "no clear" in v for v in verdict_lines)


def test_a_bench_over_two_models_reports_each_and_side_by_side(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`--models digits,digits_wide`: each model measured on a stack serving it alone, with its own payloads."""
    opts = BenchOptions(
        users=[1], rows=[1], duration_s=0.5, trials=1, max_trials=1,
        targets=["tf-direct", "torch-direct", "gateway-tf"], startup=False, overhead=False, slo_ms=None,
        models=["digits", "digits_wide"],
    )  # fmt: skip
    summary = bench(opts, tmp_path, log=lambda _: None)
    got = {(p["model"], p["target"]) for p in summary["points"]}
    assert got == {(m, t) for m in ("digits", "digits_wide") for t in opts.targets}
    assert all(p["failures"] == 0 and p["requests"] > 0 for p in summary["points"])  # answers checked per model
    assert [m["name"] for m in summary["models"]] == ["digits", "digits_wide"]
    assert summary["models"][1]["parameters"] == 64 * 2048 + 2048 + 2048 * 2048 + 2048 + 2048 * 10 + 10
    report = (tmp_path / "report.md").read_text()
    for section in ("## Models side by side", "## Model `digits`", "## Model `digits_wide`", "### Verdict"):
        assert section in report, section
    assert "| digits_wide | 4,349,962 | torch | 1 |" in report and "ms (" in report  # added by the model
    for png in ("digits-throughput.png", "digits_wide-latency_percentiles.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png})" in report
    assert set(summary["settings_in_force"]) == {"digits: off", "digits_wide: off"}


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
    m = run_locust(cfg, "tf-direct", users=2, duration_s=4, out_prefix=tmp_path / "wrong", rows=1)
    assert m["requests"] > 0
    assert m["failures"] == m["requests"]
    assert any("expected" in s for s in m["failure_samples"])
    lean = run_lean(cfg, "tf-direct", users=2, duration_s=1, rows=1)  # the bench's own generator checks alike
    assert lean["requests"] > 0 and lean["failures"] == lean["requests"]


def test_the_same_locustfile_runs_distributed_with_exact_latencies_merged(native_stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Master + 2 workers, as compose and k8s run it (here on loopback): the workers' HDR histograms reach the
    master and merge, so the exact latencies count every request locust counted."""
    import subprocess
    import sys

    from loadtest.drive.locust_run import LOCUSTFILE, locust_env, parse_stats
    from stack.config import ROOT

    hdr_out = tmp_path / "dist_hdr.json"
    env = locust_env(native_stack.cfg, 1, hdr_out=hdr_out)
    master_port = free_port()
    prefix = tmp_path / "dist"
    master = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--master", "--headless", "--expect-workers", "2",
         "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port), "-u", "4", "-r", "4", "-t", "3s",
         "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING", "GatewayTF", "TorchServeDirect"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(LOCUSTFILE),
                "--worker",
                "--master-host",
                "127.0.0.1",
                "--master-port",
                str(master_port),
                "--loglevel",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        output, _ = master.communicate(timeout=90)
        assert master.returncode == 0, output[-2000:]
    finally:
        for p in (master, *workers):
            if p.poll() is None:
                p.kill()
        for w in workers:
            w.wait(timeout=30)
    m = parse_stats(prefix)
    assert m["requests"] > 0 and m["failures"] == 0
    exact = json.loads(hdr_out.read_text())
    assert set(exact) == {"gateway-tf", "torch-direct"}
    assert sum(v["count"] for v in exact.values()) == m["requests"]
    assert "exact latency (ms) gateway-tf" in output


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
    m = run_locust(cfg, "tf-direct", users=1, duration_s=4, out_prefix=tmp_path / "bad", rows=1)
    assert m["requests"] > 0
    assert m["failures"] == m["requests"]  # none counted as success, none lost as an exception
    lean = run_lean(cfg, "tf-direct", users=1, duration_s=1, rows=1)
    assert lean["requests"] > 0 and lean["failures"] == lean["requests"]


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
        m = run_locust(cfg, "torch-direct", users=1, duration_s=4, out_prefix=tmp_path / "n", rows=1)
        assert m["requests"] > 0 and m["failures"] == 0, m["failure_samples"]
        lean = run_lean(cfg, "torch-direct", users=1, duration_s=1, rows=1)
        assert lean["requests"] > 0 and lean["failures"] == 0, lean["failure_samples"]
        del ref["expected_torch"]  # a reference with the TF model's labels only: a third of the answers "fail"
        reference.write_text(json.dumps(ref))
        m = run_locust(cfg, "torch-direct", users=1, duration_s=4, out_prefix=tmp_path / "o", rows=1)
        assert 0 < m["failures"] < m["requests"]
