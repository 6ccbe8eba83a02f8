"""Where a step's time goes: compute against gradient all-reduce, per framework and N, from the workers' probes
(export/scaling/plan.py WorkerResult.probe), and how that explains the scaling efficiency.

With the same global batch at every N, an epoch has the same number of steps, so efficiency at N is
step(1) / (N x step(N)). A step at N is compute(N) + all-reduce(N), so efficiency is about the product of
- the compute split: compute(1) / (N x compute(N)), how well one step's arithmetic divides over N workers, and
- the compute share: compute(N) / (compute(N) + all-reduce(N)), what the gradient sync leaves of each step."""

from __future__ import annotations

import statistics
from typing import Any

from export.scaling.plan import median_ms


def split_row(result: dict[str, Any]) -> dict[str, Any]:
    probe = result.get("probe") or {}
    step, compute, allreduce = (median_ms(probe.get(k, [])) for k in ("step", "compute", "allreduce"))
    parts = compute + allreduce
    # compute + all-reduce against the step timed as trained, round by round (a round's three timings are
    # neighbours in time, so load from other processes hits them alike), the median of those ratios
    rounds = zip(probe.get("step", []), probe.get("compute", []), probe.get("allreduce", []), strict=True)
    ratios = [(c + a) / s for s, c, a in rounds if s > 0]
    return {
        "step_ms": step,
        "compute_ms": compute,
        "allreduce_ms": allreduce,
        "split_error": statistics.median(ratios) - 1.0 if ratios else float("nan"),
        "allreduce_share": allreduce / parts,
        "gradient_mb": result.get("gradient_bytes", 0) / 1e6,
        "probe_rounds": len(probe.get("step", [])),
    }


def explain(rows: list[dict[str, Any]]) -> None:
    """Adds compute_split and predicted_efficiency to each row that has an N = 1 row of its framework."""
    for row in rows:
        base = next((x for x in rows if x["framework"] == row["framework"] and x["workers"] == 1), None)
        if base is None:
            row["compute_split"] = row["predicted_efficiency"] = None
            continue
        row["compute_split"] = base["compute_ms"] / (row["workers"] * row["compute_ms"])
        row["predicted_efficiency"] = row["compute_split"] * (1.0 - row["allreduce_share"])


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    r0 = rows[0]
    lines = [
        "## Where a step's time goes",
        "",
        f"Timed after training, {r0['probe_rounds']} rounds interleaved (the order rotated each round), medians: "
        "a step as trained; the same step "
        "without the gradient all-reduce (PyTorch: DDP's `no_sync`; TensorFlow: the same step function without "
        "`all_reduce`); the all-reduce alone on the gradient's bytes "
        f"({r0['gradient_mb']:.2f} MB of float32). Each starts after a barrier and ends when the slowest worker is "
        "done; (compute + all-reduce) / step − 1 is the median over rounds. Predicted efficiency = compute split × "
        "(1 − all-reduce share), see export/scaling/split.py.",
        "",
        "| framework | N | batch per worker | step ms | compute ms | all-reduce ms | "
        "(compute + all-reduce) / step − 1 | all-reduce share | compute split | predicted efficiency | "
        "measured efficiency |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["framework"], r["workers"])):
        lines.append(
            f"| {r['framework']} | {r['workers']} | {r['global_batch'] // r['workers']} | {r['step_ms']:.1f} | "
            f"{r['compute_ms']:.1f} | {r['allreduce_ms']:.1f} | {r['split_error']:+.0%} | "
            f"{r['allreduce_share']:.0%} | {_num(r['compute_split'])} | {_num(r['predicted_efficiency'])} | "
            f"{_num(r['efficiency'])} |"
        )
    return [*lines, ""]


def summary_line(rows: list[dict[str, Any]]) -> str:
    """One sentence per framework at its largest N: what took the efficiency."""
    parts = []
    for fw in sorted({r["framework"] for r in rows}):
        top = max((r for r in rows if r["framework"] == fw), key=lambda r: r["workers"])
        if top["workers"] == 1 or top["compute_split"] is None:
            continue
        parts.append(
            f"{fw} at N={top['workers']}: the all-reduce of {top['gradient_mb']:.1f} MB is "
            f"{top['allreduce_ms']:.1f} ms of a {top['step_ms']:.1f} ms step ({top['allreduce_share']:.0%}), "
            f"the compute splits at {top['compute_split']:.2f}: predicted efficiency "
            f"{top['predicted_efficiency']:.2f}, measured {_num(top['efficiency'])}"
        )
    return "- Step split: " + "; ".join(parts) + "." if parts else ""


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"
