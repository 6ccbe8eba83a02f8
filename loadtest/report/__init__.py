"""The comparison report: report.md with a verdict, tables and plots, written from summary.json alone.

It never imports the benchmark's runner: `python -m loadtest report <folder>` rewrites a report from a saved
summary.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtest.report import tables
from loadtest.report.plots import write_plots
from loadtest.report.verdict import verdict

__all__ = ["verdict", "write_report"]


def write_report(summary: dict[str, Any], out: Path) -> Path:
    env, points = summary["environment"], summary["points"]
    plots = write_plots(summary, out)
    lines = ["# servecompare: TF side vs TorchServe", ""]
    if not env["tf_server_is_real_tf_serving"]:
        lines += [
            f"> **Note:** the TF side is the {env['tf_server']}: `tensorflow_model_server` was not on this",
            "> machine. Its figures measure that stand-in, not TensorFlow Serving itself.",
            "",
        ]
    lines += [
        "## Verdict",
        "",
        "Batching off, the smallest rows per request; a side is named only where the spreads don't overlap.",
        "",
    ]
    lines += [f"- **{v['dimension']}**: {v['text']}" for v in verdict(summary)] + [""]
    warned = [p for p in points if p["warnings"]]
    if warned:
        lines += ["Points with warnings (see the notes column):", ""]
        lines += [
            f"- {p['target']} [{p['batching']}] rows {p['rows']} x{p['users']}: {'; '.join(p['warnings'])}"
            for p in warned
        ]
        lines.append("")

    lines += ["## Environment", "", "| | |", "|---|---|"]
    for key in (
        "cpu_count",
        "machine",
        "platform",
        "python",
        "tf_server",
        "rows_per_request",
        "batching_modes",
        "ts_workers",
        "load_generator",
        "trials",
    ):
        lines.append(f"| {key} | {env[key]} |")
    lines.append(f"| versions | {', '.join(f'{k} {v}' for k, v in env['versions'].items())} |")
    lines.append(f"| batching 'on' settings (per rows/request) | {env['batching_on_settings']} |")
    lines += [
        "",
        "Batching 'on' is one budget in rows on both sides: TF's max_batch_size counts rows, TorchServe's batchSize",
        "counts requests, so TorchServe gets rows_per_batch ÷ rows per request requests; both wait the same delay.",
        "",
        "### Settings in force (read back from the running servers)",
        "",
        "| stack | side | settings |",
        "|---|---|---|",
    ]
    for mode, sides in summary.get("settings_in_force", {}).items():
        for side, values in sides.items():
            lines.append(f"| {mode} | {side} | {', '.join(f'{k}={v}' for k, v in values.items())} |")
    lines += [
        "",
        f"Run took {summary['wall_s']} s. Latencies in ms (exact, HDR histograms at 1 µs resolution):",
        "median [min–max] over trials; p90, p99.9 and max from all trials merged.",
        "",
    ]
    if summary.get("startup"):
        lines += ["## Start-up and footprint", "", *tables.startup(summary)]
    lines += ["## Throughput and latency", "", *tables.throughput_latency(points)]
    failures = [p for p in points if p["failures"]]
    if failures:
        lines += ["### Failures", ""]
        lines += [
            f"- {p['target']} x{p['users']} [{p['batching']}] rows {p['rows']}: {'; '.join(p['failure_samples'])}"
            for p in failures
        ]
        lines.append("")
    lines += ["## Cost per request", "", *tables.cost(points)]
    lines += ["## Client-observed vs server-reported time", "", *tables.server_side(points)]
    lines += ["## Gateway added latency", "", *tables.overhead_table(points)]
    if summary.get("overhead"):
        lines += ["## The gateway as a hop: against a bare passthrough", "", *tables.hop_table(summary["overhead"])]
    if summary["slo"]:
        lines += ["## Highest rate within the latency SLO", "", *tables.slo(summary)]
    lines += ["## Plots", "", *[f"![{p}]({p})" for p in plots], ""]
    lines += [
        "## Raw data",
        "",
        "- `summary.json`: every figure above, every run (trial) and its process-tree figures",
        "- `csv/`: locust's CSVs and HTML report per run when `--driver locust` was used",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
