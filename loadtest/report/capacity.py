"""The capacity plan: cores, pods and an HPA target per backend and model, from summary.json alone.

Inputs, all measured by the benchmark: the open-loop SLO search's bracket [last rate held, first rate broken]
(loadtest/slo.py) and the server's CPU during each step (cores used = CPU seconds ÷ the step's wall time); for an
older summary without per-step CPU, the sweep's CPU per request at the verdict's CPU point. The pod's CPU request and
limit are read from the Kubernetes manifests (k8s/base/<backend>.yaml), the one place they are written.

The model, stated next to the figures in the report:
- c, CPU per request at the last rate that held (cores used there ÷ the achieved rate);
- N, the cores the server could use on the measured machine: its cores (or the container's CPU limit) less the
  load generator's cores during that step where the generator shared the machine;
- f = (cores used at the last rate held) ÷ N, the utilisation at which p99 still met the SLO;
- cores per 1,000 req/s at the SLO = 1000 · c ÷ f: busy cores, plus the headroom the SLO needed;
- a pod is the measured machine scaled to its CPU request r (linear scaling per pod; bursting to the limit is
  ignored, so it is headroom), so the HPA target is f of the request, rounded down to a whole per cent, and the
  pods for a target rate T are ceil(T · c ÷ (target · r)).
A figure whose input is missing, or that the verdict's rules refuse (the bracket's first broken step broken by the
generator or by failures, none held, the CPU point unsettled or failing), is given as the reason, never a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loadtest.report.verdict import SIDES, bracket, point_refusals
from stack.deployments.quantities import cpu_quantity

MANIFESTS = Path(__file__).resolve().parents[2] / "k8s" / "base"
MANIFEST_OF = {"tf": ("tf-serving.yaml", "tf-serving"), "torch": ("torchserve.yaml", "torchserve")}
DEFAULT_PLAN_RPS = 10_000.0


def pod_cpu(backend: str, manifests: Path = MANIFESTS) -> dict[str, Any]:
    """The serving container's CPU request and limit (cores) from its Deployment in k8s/base."""
    file, name = MANIFEST_OF[backend]
    for doc in yaml.safe_load_all((manifests / file).read_text()):
        if not doc or doc.get("kind") != "Deployment":
            continue
        for ctr in doc["spec"]["template"]["spec"]["containers"]:
            if ctr["name"] == name:
                res = ctr.get("resources", {})
                limit = res.get("limits", {}).get("cpu")
                return {
                    "request": cpu_quantity(res["requests"]["cpu"]),
                    "limit": cpu_quantity(limit) if limit is not None else None,
                    "source": f"k8s/base/{file}, container {name}",
                }
    raise ValueError(f"no container {name!r} in a Deployment of {manifests / file}")


@dataclass
class Plan:
    """One backend's plan for one model and batching mode; `refused` lists why figures are missing."""

    backend: str
    model: str
    batching: str
    held: float | None
    broken: float | None
    plan_rps: float
    pod: dict[str, Any]
    cpu_us: float | None = None  # c, µs of server CPU per request
    cpu_source: str = ""
    cores_available: float | None = None  # N
    cores_used: float | None = None  # server cores busy at the last rate held
    utilisation: float | None = None  # f
    refused: list[str] = field(default_factory=list)

    @property
    def busy_cores_per_1000(self) -> float | None:
        return self.cpu_us * 1000 / 1e6 if self.cpu_us is not None else None

    @property
    def cores_per_1000(self) -> float | None:
        busy = self.busy_cores_per_1000
        return busy / self.utilisation if busy is not None and self.utilisation else None

    @property
    def hpa_target_pct(self) -> int | None:
        return math.floor(self.utilisation * 100) if self.utilisation else None

    def pods(self, rate: float) -> int | None:
        """Pods of the manifest's request that keep each pod at the HPA target while serving `rate` req/s."""
        target = self.hpa_target_pct
        if self.cpu_us is None or not target or self.refused:
            return None
        return max(1, math.ceil(rate * self.cpu_us / 1e6 / (target / 100 * self.pod["request"])))

    @property
    def lower_bound(self) -> bool:
        """The search never broke: the held rate (and so f) is a floor; the plan errs on the safe side."""
        return self.held is not None and self.broken is None


def _step_at(search: dict[str, Any], rate: float | None) -> dict[str, Any] | None:
    return next((st for st in search.get("steps", []) if rate is not None and st["offered_rps"] == rate), None)


def _sweep_cpu_point(summary: dict[str, Any], model: str, backend: str, batching: str) -> dict[str, Any] | None:
    """The verdict's CPU point: direct, fewest rows, the highest concurrency up to 16."""
    first = summary["models"][0]["name"] if summary.get("models") else ""
    rows = min(summary["options"]["rows"])
    candidates = [
        p for p in summary.get("points", [])
        if (p.get("model") or first) == model and p["target"] == f"{backend}-direct" and p["rows"] == rows
        and p["batching"] == batching and p["users"] <= 16
    ]  # fmt: skip
    return max(candidates, key=lambda p: p["users"]) if candidates else None


def machine_cores(summary: dict[str, Any], backend: str) -> float | None:
    """Cores the server could use: the deployment's figure for it (a container's CPU limit), else the machine's."""
    deployment = summary.get("deployment") or {}
    given = deployment.get("server_cores", {}).get(backend)
    if given:
        return float(given)
    return summary["environment"].get("cpu_count") if deployment.get("local", True) else None


def plan_for(summary: dict[str, Any], search: dict[str, Any], plan_rps: float, manifests: Path = MANIFESTS) -> Plan:
    backend = search["target"].split("-")[0]
    first = summary["models"][0]["name"] if summary.get("models") else ""
    model = search.get("model") or first
    held, broken = bracket(search)
    plan = Plan(backend, model, search["batching"], held, broken, plan_rps, pod_cpu(backend, manifests))
    if held is None:
        plan.refused.append(f"no rate held within the SLO (the first step, {search['steps'][0]['offered_rps']:g} "
                            "req/s, broke)" if search.get("steps") else "the SLO search has no steps")  # fmt: skip
        return plan
    first_broken = _step_at(search, broken)
    if first_broken and not first_broken["reason"].startswith("p99 over"):
        plan.refused.append(f"the first broken step ({broken:g} req/s) is not the server's: {first_broken['reason']}")
    at_held = _step_at(search, held)
    total = machine_cores(summary, backend)
    if at_held and at_held.get("server_cpu_cores") is not None and at_held.get("achieved_rps"):
        used = float(at_held["server_cpu_cores"])
        plan.cpu_us = used / at_held["achieved_rps"] * 1e6
        plan.cores_used = used
        plan.cpu_source = f"measured during the step at {held:g} req/s"
        generator = float(at_held.get("generator_cpu_cores") or 0.0)
        shared = (summary.get("deployment") or {}).get("generator_shares_machine", True)
        plan.cores_available = (total - generator if shared else total) if total else None
    else:
        point = _sweep_cpu_point(summary, model, backend, search["batching"])
        cpu = (point or {}).get("cpu_us_per_request", {}).get(backend)
        if point is None or cpu is None:
            plan.refused.append("server CPU per request not measured (no metered SLO step, no sweep point)")
        else:
            plan.refused += [f"CPU point: {r}" for r in point_refusals(point, backend)]
            plan.cpu_us = float(cpu["median"])
            plan.cores_used = held * plan.cpu_us / 1e6 if held is not None else None
            plan.cpu_source = f"sweep point ({point['users']} users; the SLO steps were not metered)"
        plan.cores_available = total
    if plan.cores_used is not None and held is not None and plan.cores_available:
        plan.utilisation = min(1.0, plan.cores_used / plan.cores_available)
        if plan.hpa_target_pct == 0:
            plan.refused.append("the utilisation at the last rate held rounds to 0 %: too small to plan from")
    elif plan.cpu_us is not None and not plan.cores_available:
        plan.refused.append("the cores the server could use are not known (a deployment given by URLs)")
    return plan


def plans(summary: dict[str, Any], manifests: Path = MANIFESTS) -> list[Plan]:
    plan_rps = float(summary["options"].get("plan_rate_rps") or DEFAULT_PLAN_RPS)
    return [plan_for(summary, s, plan_rps, manifests) for s in summary.get("slo", [])]


def _num(x: float | None, fmt: str) -> str:
    return format(x, fmt) if x is not None else "–"


def table(summary: dict[str, Any], manifests: Path = MANIFESTS) -> list[str]:
    """The plan as markdown: assumptions first, then one row per backend, model and batching mode."""
    ps = plans(summary, manifests)
    if not ps:
        return ["No SLO search in this run (`--slo-ms 0`): no capacity plan.", ""]
    rate = ps[0].plan_rps
    slo_ms = summary["options"].get("slo_ms")
    deployment = (summary.get("deployment") or {}).get("kind", "native")
    lines = [
        f"For a target of **{rate:,.0f} req/s** (`--plan-rate`) with p99 ≤ {slo_ms:g} ms, per backend called directly.",
        "Assumptions: **linear scaling per pod**: a pod behaves like **the measured machine** "
        f"({deployment} deployment, {summary['environment'].get('cpu_count')} cores, "
        f"{summary['environment'].get('machine', '?')}) scaled to the pod's CPU request; each request costs the",
        "server CPU measured at the last rate that held; the utilisation that held there (of the cores the server",
        "could use: the machine's less the load generator's) is the HPA target, as a share of the request. Bursting",
        "to the limit, the gateway, network hops between nodes and the node's own overhead are not in the figures.",
        "Pods' CPU request and limit from k8s/base (the manifests). *≥*: the search never broke, so the held rate is a",
        "floor and the plan errs on the safe side.",
        "",
        "| backend | model | batching | last rate held | server CPU µs/req | cores used at that rate | util. held "
        f"| cores / 1,000 req/s at the SLO | pod request (limit) | HPA CPU target | pods for {rate:,.0f} req/s |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for p in ps:
        pod = f"{p.pod['request'] * 1000:.0f}m ({_num(p.pod['limit'], 'g')})"
        floor = "≥ " if p.lower_bound else ""
        name = SIDES[p.backend]
        if p.refused:
            why = "not planned: " + "; ".join(p.refused)
            lines.append(f"| {name} | {p.model} | {p.batching} | {_num(p.held, ',.0f')} | {_num(p.cpu_us, ',.0f')} "
                         f"| – | – | – | {pod} | – | {why} |")  # fmt: skip
            continue
        lines.append(
            f"| {name} | {p.model} | {p.batching} | {floor}{_num(p.held, ',.0f')} | {_num(p.cpu_us, ',.0f')} | "
            f"{_num(p.cores_used, '.2f')} of {_num(p.cores_available, '.2f')} | {floor}{p.utilisation:.0%} | "
            f"{_num(p.cores_per_1000, '.2f')} | {pod} | {floor}{p.hpa_target_pct} % | {p.pods(rate)} |"
        )
    lines += ["", "CPU per request from: " + "; ".join(f"{SIDES[p.backend]} ({p.model}, {p.batching}): "
                                                    f"{p.cpu_source or '–'}" for p in ps), ""]  # fmt: skip
    return lines


def write_plot(summary: dict[str, Any], out: Path, prefix: str = "", manifests: Path = MANIFESTS) -> str | None:
    """capacity.png: server cores used against offered rate (each SLO step, held filled, broken hollow) with the
    linear cost line; and the pods the plan asks for against target rate, up to the plan rate."""
    ps = plans(summary, manifests)
    if not ps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cost, pods) = plt.subplots(1, 2, figsize=(13, 5))
    for p, search in zip(ps, summary["slo"], strict=True):
        label = f"{SIDES[p.backend]} [{p.batching}]" + (f" {p.model}" if len(summary.get("models", [])) > 1 else "")
        steps = [st for st in search["steps"] if st.get("server_cpu_cores") is not None]
        held = [st for st in steps if st["held"]]
        broke = [st for st in steps if not st["held"]]
        line = cost.plot([st["offered_rps"] for st in held], [st["server_cpu_cores"] for st in held], "o",
                         label=f"{label}: held")  # fmt: skip
        color = line[0].get_color()
        cost.plot([st["offered_rps"] for st in broke], [st["server_cpu_cores"] for st in broke], "o",
                  mfc="none", color=color, label=f"{label}: broke")  # fmt: skip
        if p.cpu_us is not None and steps:
            top = max(st["offered_rps"] for st in steps)
            cost.plot([0, top], [0, top * p.cpu_us / 1e6], "--", color=color, lw=1, label=f"{label}: c × rate")
        if not p.refused:
            rates = [r for r in (100 * 1.25**i for i in range(60)) if r <= p.plan_rps] + [p.plan_rps]
            pods.step(rates, [p.pods(r) for r in rates], where="post", color=color,
                      label=f"{label}: {p.pod['request'] * 1000:.0f}m pods at {p.hpa_target_pct} %")  # fmt: skip
    cost.set(xlabel="offered rate (req/s)", ylabel="server CPU (cores)", title="Cost against offered rate (SLO steps)")
    cost.set_xlim(left=0)
    cost.set_ylim(bottom=0)
    pods.set(xscale="log", xlabel="target rate (req/s)", ylabel="pods (manifest CPU request)",
             title=f"Pods at the HPA target, up to {ps[0].plan_rps:,.0f} req/s (linear scaling)")  # fmt: skip
    for ax in (cost, pods):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if not pods.get_legend_handles_labels()[0]:
        pods.text(0.5, 0.5, "no plan: see the table", ha="center", transform=pods.transAxes)
    fig.tight_layout()
    name = prefix + "capacity.png"
    fig.savefig(out / name, dpi=100)
    plt.close(fig)
    return name
