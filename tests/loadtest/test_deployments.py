"""Deployments under test: the same short bench gives a complete summary.json on the native kind and on the
endpoints kind (pointed at a native stack's URLs, no cost source: "not measured", never a number); the endpoints
kind's Prometheus query maths against a fake Prometheus (known answers); compose metering reads the CPU a container
burns on purpose (a real container, where a Docker engine is running)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from loadtest.bench import BenchOptions, bench
from stack.deployments import Endpoints
from stack.deployments.endpoints import EndpointsDeployment, PrometheusError, PrometheusMeter
from stack.deployments.meters import ContainerCgroup, EngineStats, cgroup_dirs, cpu_stat_seconds
from stack.deployments.native import NativeDeployment
from tests.conftest import serve_in_thread

# ---- the Prometheus query maths (a fake Prometheus: known answers) ----------------------------------------------
SERIES = {
    "container_cpu_usage_seconds_total": [12.5, 7.25],  # two tf-serving pods
    "container_memory_working_set_bytes": [300e6, 200e6],
}


@pytest.fixture
def prometheus() -> Iterator[tuple[str, list[str]]]:
    asked: list[str] = []

    async def query(request: Request) -> JSONResponse:
        promql = request.query_params["query"]
        asked.append(promql)
        if "broken" in promql:
            return JSONResponse({"status": "error", "error": "parse error"}, status_code=400)
        name = next((n for n in SERIES if n in promql), None)
        values = SERIES[name] if name and 'namespace="servecompare"' in promql else []
        result = [{"metric": {"pod": f"tf-serving-{i}"}, "value": [1.0, str(v)]} for i, v in enumerate(values)]
        return JSONResponse({"status": "success", "data": {"resultType": "vector", "result": result}})

    with serve_in_thread(Starlette(routes=[Route("/api/v1/query", query)])) as url:
        yield url, asked


def test_prometheus_meter_sums_the_pods_series(prometheus: tuple[str, list[str]]) -> None:
    url, asked = prometheus
    meter = PrometheusMeter(url + "/", "tf", "servecompare")
    assert meter.cpu_seconds() == pytest.approx(19.75)
    assert meter.memory_bytes() == 500_000_000
    assert asked == [
        'sum(container_cpu_usage_seconds_total{namespace="servecompare", pod=~"tf-serving-.*", '
        'container="tf-serving"})',
        'sum(container_memory_working_set_bytes{namespace="servecompare", pod=~"tf-serving-.*", '
        'container="tf-serving"})',
    ]


def test_prometheus_without_series_or_with_an_error_says_so(prometheus: tuple[str, list[str]]) -> None:
    url, _ = prometheus
    with pytest.raises(PrometheusError, match="no series"):
        PrometheusMeter(url, "torch", "elsewhere").cpu_seconds()
    with pytest.raises(PrometheusError, match=r"parse error|400"):
        PrometheusMeter(url, "tf", "x").query("broken(")


def urls_of(stack: Any) -> Endpoints:
    c = stack.cfg
    return Endpoints(c.model_name, c.tf_rest_url, c.ts_inference_url, c.gateway_url, c.ts_metrics_url,
                     c.ts_management_url)  # fmt: skip


def test_endpoints_cost_comes_from_prometheus_or_is_not_measured(prometheus: tuple[str, list[str]]) -> None:
    urls = Endpoints("digits", "http://tf", "http://ts", "http://gw")
    bare = EndpointsDeployment(urls)
    assert bare.meters() == {}
    assert set(bare.describe()["cost"].values()) == {"not measured: no Prometheus URL given (--prometheus)"}
    metered = EndpointsDeployment(urls, prometheus=prometheus[0])
    assert set(metered.meters()) == {"tf", "torch", "gateway"}
    assert metered.meters()["tf"].cpu_seconds() == pytest.approx(19.75)


# ---- the bench contract: a short run gives a complete summary.json ------------------------------------------------
def short() -> BenchOptions:
    return BenchOptions(users=[1, 2], rows=[1], duration_s=0.5, trials=2, max_trials=2, verdict_trials=2,
                        verdict_max_trials=2, load_warmup_s=0.3, slo_ms=1000, slo_arrivals=30, slo_max_steps=2,
                        slo_refine_steps=0, slo_start_rps=20,
                        startup=False, overhead=False)  # fmt: skip


def contract(out: Path, summary: dict[str, Any], kind: str) -> None:
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["deployment"]["kind"] == kind
    targets = {"tf-direct", "torch-direct", "gateway-tf", "gateway-torch", "gateway-compare"}
    assert {(p["target"], p["users"]) for p in on_disk["points"]} == {(t, u) for t in targets for u in (1, 2)}
    for p in on_disk["points"]:
        assert p["requests"] > 0 and p["failures"] == 0 and p["latency"]["p50"] > 0, p
    assert {s["target"] for s in on_disk["slo"]} == {"tf-direct", "torch-direct"}
    assert all(s["steps"] and s["bracket"][0] for s in on_disk["slo"])
    report = (out / "report.md").read_text()
    for section in ("## Verdict", "## Capacity plan", f"## Deployment under test: {kind}", "## Environment"):
        assert section in report, section
    assert summary["deployment"] == on_disk["deployment"]


@pytest.mark.integration
def test_native_kind_contract(native_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    deployment = NativeDeployment(native_stack, started_here=False)
    summary = bench(short(), tmp_path, stack=deployment, log=lambda _: None)
    contract(tmp_path, summary, "native")
    direct = [p for p in summary["points"] if p["target"] == "torch-direct"]
    assert all(p["cpu_us_per_request"]["torch"]["median"] > 0 for p in direct)
    assert all(st["server_cpu_cores"] > 0 for s in summary["slo"] for st in s["steps"])  # the plan's input
    # The meter the sweep read: the server's cgroup where the launcher made one (as root), else its process tree.
    assert summary["deployment"]["cost"]["tf"].startswith(("cgroup v2 cpu.stat", "psutil over the process tree"))


@pytest.mark.integration
def test_endpoints_kind_contract_without_a_cost_source(native_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    deployment = EndpointsDeployment(urls_of(native_stack))
    deployment.up(lambda _: None)
    summary = bench(short(), tmp_path, stack=deployment, log=lambda _: None)
    contract(tmp_path, summary, "endpoints")
    assert all(set(p["cpu_us_per_request"]) <= {"generator"} for p in summary["points"])  # no server figure
    assert all("server_cpu_cores" not in st for s in summary["slo"] for st in s["steps"])
    assert summary["settings_in_force"]["off"]["torch"]["batch_size"] == 1  # read back through management
    report = (tmp_path / "report.md").read_text()
    assert "| not measured |" in report and "not planned: server CPU per request not measured" in report


# ---- compose metering: a container burns a known amount of CPU ---------------------------------------------------
BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\nprint('burnt', flush=True)\n"


@pytest.fixture
def engine_image(tmp_path: Path) -> Iterator[str]:
    """The running Docker engine, or dockerd started for this test (stack/compose/engine.py), and the compose e2e's
    base image; skipped where neither can be had."""
    from stack.compose.engine import Unavailable, docker_engine

    image = "servecompare-base:bookworm-py311"
    try:
        with docker_engine(tmp_path / "dockerd.log"):
            found = subprocess.run(["docker", "images", "-q", image], capture_output=True, text=True).stdout
            if not found.strip():
                pytest.skip(f"no {image} image (make compose-e2e builds it)")
            yield image
    except Unavailable as exc:
        pytest.skip(f"no Docker engine: {exc}")


def test_cpu_stat_known_answer() -> None:
    assert cpu_stat_seconds("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n") == 2.5


def test_a_container_cgroup_reads_the_cpu_it_burns_on_purpose(engine_image: str) -> None:
    image = engine_image
    script = BURN.format(s=1.0) + "time.sleep(600)\n"
    cid = subprocess.run(["docker", "run", "-d", "--rm", image, "python3", "-c", script],
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    try:
        while "burnt" not in subprocess.run(["docker", "logs", cid], capture_output=True, text=True).stdout:
            assert subprocess.run(["docker", "inspect", cid], capture_output=True).returncode == 0, "container died"
            time.sleep(0.1)
        pid = int(subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", cid], capture_output=True,
                                 text=True).stdout)  # fmt: skip
        for meter in (ContainerCgroup("burner", cgroup_dirs(pid)), EngineStats(cid)):
            assert 1.0 <= meter.cpu_seconds() < 2.5, meter.how  # 1 s burnt plus the interpreter's start
            before = meter.cpu_seconds()
            subprocess.run(["docker", "exec", cid, "python3", "-c", BURN.format(s=0.5)], check=True,
                           capture_output=True)  # fmt: skip
            assert 0.5 <= meter.cpu_seconds() - before < 1.5, meter.how
            assert meter.memory_bytes() > 1_000_000
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
