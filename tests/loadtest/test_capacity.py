"""The capacity plan's maths on constructed summaries: known answers for cores, utilisation, HPA target and pods;
the manifests as the source of the pod's request; refusals instead of numbers where the data don't allow one."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from loadtest.bench import step_cost
from loadtest.report import capacity, write_report

ROOT = Path(__file__).resolve().parents[2]


def step(rate: float, held: bool, server: float | None = None, generator: float = 0.0, **kw: Any) -> dict[str, Any]:
    st: dict[str, Any] = {
        "offered_rps": rate, "achieved_rps": kw.pop("achieved", rate), "p50_ms": 1.0, "p99_ms": 10.0 if held else 90.0,
        "p99_interval_ms": [9.0, 11.0], "requests": 600, "failures": 0, "held": held,
        "reason": "holds" if held else kw.pop("reason", "p99 over 50 ms"), "generator_cpu_cores": generator,
    }  # fmt: skip
    if server is not None:
        st["server_cpu_cores"] = server
    return st | kw


def summary(tf_steps: list[dict[str, Any]], torch_steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    def search(target: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
        held = max((s["offered_rps"] for s in steps if s["held"]), default=None)
        broken = min((s["offered_rps"] for s in steps if not s["held"]), default=None)
        return {"target": target, "batching": "off", "slo_p99_ms": 50.0, "bracket": [held, broken], "steps": steps,
                "model": "digits"}  # fmt: skip

    return {
        "options": {"rows": [1], "slo_ms": 50.0, "plan_rate_rps": 10_000.0, "slo_arrivals": 600},
        "environment": {"cpu_count": 2, "machine": "x86_64"},
        "models": [{"name": "digits"}],
        "points": [],
        "slo": [search("tf-direct", tf_steps), search("torch-direct", torch_steps)],
    } | extra


# TF side: held 400 req/s using 0.4 cores while the generator used 0.4 of the 2: c = 1000 µs, N = 1.6, f = 25 %
TF = [step(100, True, 0.1, 0.1), step(200, True, 0.2, 0.2), step(400, True, 0.4, 0.4), step(800, False, 0.9, 0.8)]


def test_known_answers_from_metered_steps() -> None:
    tf, torch = capacity.plans(summary(TF, [step(100, True, 0.05), step(200, False, 0.1)]))
    assert tf.cpu_us == pytest.approx(1000.0)
    assert tf.cores_available == pytest.approx(1.6) and tf.utilisation == pytest.approx(0.25)
    assert tf.busy_cores_per_1000 == pytest.approx(1.0) and tf.cores_per_1000 == pytest.approx(4.0)
    assert tf.pod == {"request": 0.5, "limit": 1.0, "source": "k8s/base/tf-serving.yaml, container tf-serving"}
    assert tf.hpa_target_pct == 25
    assert tf.pods(10_000) == 80  # 10 busy cores at 25 % of 0.5 cores a pod
    assert tf.pods(100) == 1 and not tf.refused and not tf.lower_bound
    # TorchServe: 0.05 cores at 100 req/s (500 µs) on all 2 cores (the generator used none): f = 2.5 % -> 2 %
    assert torch.cpu_us == pytest.approx(500.0) and torch.hpa_target_pct == 2
    assert torch.pods(10_000) == 500  # 5 busy cores at 2 % of 0.5 cores a pod


def test_cpu_per_request_divides_by_the_achieved_rate_not_the_offered() -> None:
    (tf, _) = capacity.plans(summary([step(400, True, 0.4, 0.0, achieved=320), step(800, False, 1.0)], TF))
    assert tf.cpu_us == pytest.approx(1250.0) and tf.utilisation == pytest.approx(0.2)


def test_the_plan_rate_comes_from_the_summary() -> None:
    s = summary(TF, TF)
    s["options"]["plan_rate_rps"] = 2_000.0
    lines = "\n".join(capacity.table(s))
    assert "pods for 2,000 req/s" in lines and "| 16 |" in lines  # 2 busy cores at 25 % of 0.5


def test_the_pod_request_is_read_from_the_manifests(tmp_path: Path) -> None:
    for name in ("tf-serving.yaml", "torchserve.yaml"):
        text = (ROOT / "k8s" / "base" / name).read_text()
        (tmp_path / name).write_text(text.replace("requests: {cpu: 500m, memory", "requests: {cpu: 250m, memory"))
    (tf, _) = capacity.plans(summary(TF, TF), manifests=tmp_path)
    assert tf.pod["request"] == 0.25 and tf.pods(10_000) == 160


def test_cpu_quantities() -> None:
    assert [capacity.cpu_quantity(q) for q in ("500m", "1", 2, "1.5", "100m")] == [0.5, 1.0, 2.0, 1.5, 0.1]


def test_a_generator_broken_bracket_is_refused_with_its_reason() -> None:
    torch = [step(100, True, 0.1), step(200, False, 0.2, reason="the generator fell behind its schedule")]
    _, plan = capacity.plans(summary(TF, torch))
    assert plan.refused and "generator fell behind" in plan.refused[0] and plan.pods(10_000) is None
    text = "\n".join(capacity.table(summary(TF, torch)))
    assert "not planned: the first broken step (200 req/s) is not the server's" in text


def test_none_held_is_refused() -> None:
    _, plan = capacity.plans(summary(TF, [step(100, False, 0.5)]))
    assert plan.refused == ["no rate held within the SLO (the first step, 100 req/s, broke)"]
    assert plan.hpa_target_pct is None and plan.pods(10_000) is None


def test_never_broke_is_a_floor() -> None:
    (tf, _) = capacity.plans(summary(TF[:3], TF))
    assert tf.lower_bound and tf.hpa_target_pct == 25
    assert "| ≥ 25 % |" in "\n".join(capacity.table(summary(TF[:3], TF)))


def sweep_point(cpu_us: float, stable: bool = True, failures: int = 0) -> dict[str, Any]:
    return {"model": "digits", "target": "torch-direct", "rows": 1, "batching": "off", "users": 16, "trials": 5,
            "stable": stable, "failures": failures, "requests": 1000, "warnings": [],
            "cpu_us_per_request": {"torch": {"median": cpu_us, "min": cpu_us, "max": cpu_us}}}  # fmt: skip


def test_without_metered_steps_the_sweeps_cpu_point_is_used() -> None:
    torch = [step(150, True), step(300, True), step(600, False)]  # an older summary: no CPU per step
    _, plan = capacity.plans(summary(TF, torch, points=[sweep_point(2000.0)]))
    # c = 2000 µs, 0.6 cores at 300 req/s of the 2 (no generator figure): f = 30 %, 20 busy cores / 0.15 = 134
    assert plan.utilisation == pytest.approx(0.3) and plan.hpa_target_pct == 30 and plan.pods(10_000) == 134
    assert "sweep point" in plan.cpu_source


def test_an_unsettled_or_failing_cpu_point_is_refused() -> None:
    torch = [step(150, True), step(300, False)]
    _, plan = capacity.plans(summary(TF, torch, points=[sweep_point(2000.0, stable=False, failures=3)]))
    assert any("failed requests" in r for r in plan.refused) and any("did not settle" in r for r in plan.refused)
    assert plan.pods(10_000) is None
    _, missing = capacity.plans(summary(TF, torch))
    assert missing.refused == ["server CPU per request not measured (no metered SLO step, no sweep point)"]


def test_a_container_limit_is_the_cores_the_server_could_use() -> None:
    s = summary(TF, TF, deployment={"kind": "compose", "server_cores": {"tf": 1.0}, "generator_shares_machine": False})
    (tf, _) = capacity.plans(s)
    assert tf.cores_available == 1.0 and tf.utilisation == pytest.approx(0.4) and tf.hpa_target_pct == 40


def test_a_deployment_given_by_urls_plans_only_with_the_cores_its_user_gives() -> None:
    """The endpoints kind cannot see its pods' cores: without `--server-cores` the plan says so; with them it plans
    as for a container limit (the describe() of the deployment is what summary.json carries)."""
    from stack.deployments import Endpoints
    from stack.deployments.endpoints import EndpointsDeployment

    urls = Endpoints("digits", "http://tf", "http://ts", "http://gw")
    unknown = summary(TF, TF, deployment=EndpointsDeployment(urls).describe())
    (tf, _) = capacity.plans(unknown)
    assert "the cores the server could use are not known (a deployment given by URLs)" in tf.refused
    given = summary(TF, TF, deployment=EndpointsDeployment(urls, server_cores={"tf": 1.0, "torch": 2.0}).describe())
    (tf, torch) = capacity.plans(given)
    assert not tf.refused and tf.cores_available == 1.0 and tf.utilisation == pytest.approx(0.4)
    assert torch.cores_available == 2.0


def test_server_cores_on_the_command_line() -> None:
    import argparse

    from loadtest.__main__ import _cores

    assert _cores("2") == {"tf": 2.0, "torch": 2.0}
    assert _cores("tf=4, torch=1.5") == {"tf": 4.0, "torch": 1.5}
    for bad in ("0", "tf=2,gpu=1", "x", "tf=-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            _cores(bad)


def test_step_cost_divides_by_the_drivers_wall_time() -> None:
    cost = step_cost({"wall_s": 4.0, "generator_cpu_s": 1.0}, {"cpu_s": 2.0, "cpu_share": 0.3, "peak_rss_mb": 1})
    assert cost == {"generator_cpu_cores": 0.25, "server_cpu_cores": 0.5}
    assert step_cost({"wall_s": 4.0}, None) == {"generator_cpu_cores": 0.0}


def full_summary() -> dict[str, Any]:
    s = summary(TF, [step(100, True, 0.1), step(200, False, 0.2, reason="3 failures", failures=3)])
    s["options"] |= {"rows": [1]}
    s["environment"] |= {"tf_server_is_real_tf_serving": False, "tf_server": "stand-in", "versions": {},
                         "batching_on_settings": {}}  # fmt: skip
    return s | {"settings_in_force": {}, "startup": {}, "overhead": {}, "wall_s": 1.0}


def test_every_report_has_the_plan_and_its_plot(tmp_path: Path) -> None:
    text = write_report(copy.deepcopy(full_summary()), tmp_path).read_text()
    assert "## Capacity plan" in text and "linear scaling per pod" in text and "the measured machine" in text
    assert "| TF side | digits | off | 400 | 1,000 | 0.40 of 1.60 | 25% | 4.00 | 500m (1) | 25 % | 80 |" in text
    assert "not planned: the first broken step (200 req/s) is not the server's: 3 failures" in text
    assert "![capacity.png](capacity.png)" in text and (tmp_path / "capacity.png").stat().st_size > 10_000
