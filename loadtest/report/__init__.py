"""The comparison report, written from summary.json alone: report.md (a short summary with the verdict, then the
plots, then the tables) and the same as one self-contained page, report.html (html_page.py).

It never imports the benchmark's runner: `python -m loadtest report <folder>` rewrites a report from a saved
summary.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtest.report import capacity, tables
from loadtest.report.html_page import write_page
from loadtest.report.plots import write_plots
from loadtest.report.verdict import verdict

__all__ = ["verdict", "write_report"]


def for_model(summary: dict[str, Any], model: str) -> dict[str, Any]:
    """The summary narrowed to one model's points and SLO searches (points without a model are the default's)."""
    first = summary["models"][0]["name"] if summary.get("models") else ""
    mine = [p for p in summary["points"] if (p.get("model") or first) == model]
    return {
        **summary,
        "points": mine,
        "slo": [s for s in summary["slo"] if (s.get("model") or first) == model],
        "overhead": summary.get("overhead") if model == first else {},  # the hop is measured on the first model
    }


def write_report(summary: dict[str, Any], out: Path) -> Path:
    """report.md and report.html in `out`: a short summary with the verdict, then the plots, then the tables."""
    models = [m["name"] for m in summary.get("models", [])]
    many = len(models) > 1
    per_model = [(name, for_model(summary, name), f"{name}-") for name in models] if many else [("", summary, "")]
    env = summary["environment"]
    lines = ["# servecompare: TF side vs TorchServe", ""]
    if not env["tf_server_is_real_tf_serving"]:
        lines += [
            f"> **Note:** the TF side is the {env['tf_server']}: `tensorflow_model_server` was not on this",
            "> machine. Its figures measure that stand-in, not TensorFlow Serving itself.",
            "",
        ]
    lines += _summary(summary)
    for name, part, _ in per_model:
        lines += [f"### Verdict{f', model `{name}`' if name else ''}", ""]
        lines += [f"- **{v['dimension']}**: {v['text']}" for v in verdict(part)] + [""]
    lines += [
        "How the verdict is reached: batching off, the smallest rows per request, each side called directly. No side",
        "is named where either had failed requests, a point that did not settle, the load generator as a possible",
        "limit or a backlog; otherwise a side is named only when the 95 % bootstrap interval of the ratio of the",
        "sides' means (over ≥ 5 trials or starts) clears 1 by the margin stated on the line; the SLO rate only when",
        "the brackets [last rate held, first rate broken] are that far apart.",
        "",
        "## Plots",
        "",
    ]
    for name, part, prefix in per_model:
        plots = write_plots(part, out, prefix)
        plan_plot = capacity.write_plot(part, out, prefix)
        lines += [f"### Model `{name}`", ""] if name else []
        lines += [line for p in [*plots, *([plan_plot] if plan_plot else [])] for line in (f"![{p}]({p})", "")]
    if many:
        lines += ["## Models side by side", "", *tables.models(summary), ""]
    for name, part, _ in per_model:
        lines += [f"## Model `{name}`", ""] if name else []
        lines += _tables(part, "###" if name else "##")
    lines += _deployment(summary)
    lines += _environment(summary)
    if summary.get("startup"):
        lines += ["## Start-up and footprint (the default model)", "", *tables.startup(summary)]
    if summary.get("overhead"):
        lines += ["## The gateway as a hop: against a bare passthrough", "", *tables.hop_table(summary["overhead"])]
    lines += [
        "## Raw data",
        "",
        "- `summary.json`: every figure above, every run (trial) and its process-tree figures",
        "- `report.html`: this report as one page, plots embedded",
        "- `csv/`: locust's CSVs and HTML report per run when `--driver locust` was used",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    write_page(lines, out)
    return path


def _summary(summary: dict[str, Any]) -> list[str]:
    """What was compared, on which machine and server versions, when: the lines above the verdict."""
    env, opts = summary["environment"], summary.get("options", {})
    versions = env.get("versions", {})
    models = ", ".join(
        f"`{m['name']}`" + (f" ({m['parameters']:,} weights)" if m.get("parameters") else "")
        for m in summary.get("models", [])
    )
    kind = (summary.get("deployment") or {}).get("kind", "native")
    lines = [
        "## Summary",
        "",
        f"- Compared: the TF side, {env.get('tf_server', '?')} on tensorflow-cpu {versions.get('tensorflow-cpu', '?')},"
        f" against TorchServe {versions.get('torchserve', '?')} on torch {versions.get('torch', '?')}; model"
        f" {models or 'the default'}; each called directly and through the gateway.",
        f"- Load: {', '.join(str(u) for u in opts.get('users', []))} concurrent users,"
        f" {', '.join(str(r) for r in opts.get('rows', []))} row(s) per request, batching"
        f" {', '.join(opts.get('batching', ['off']))}; trials: {env.get('trials', '?')}; open-loop SLO search"
        + (f" for p99 ≤ {opts['slo_ms']:g} ms." if opts.get("slo_ms") else ": not run."),
        f"- Machine: {env.get('cpu_count', '?')} cores, {env.get('machine', '?')}, {env.get('platform', '?')},"
        f" Python {env.get('python', '?')}; deployment {kind}.",
        f"- Run: {summary.get('started_at', 'date not recorded')}, {summary.get('wall_s', '?')} s.",
        "",
    ]
    return lines


def _tables(summary: dict[str, Any], h: str) -> list[str]:
    """The tables of one model's points."""
    points = summary["points"]
    lines: list[str] = []
    warned = [p for p in points if p["warnings"]]
    if warned:
        lines += ["Points with warnings (see the notes column):", ""]
        lines += [
            f"- {p['target']} [{p['batching']}] rows {p['rows']} x{p['users']}: {'; '.join(p['warnings'])}"
            for p in warned
        ]
        lines.append("")
    lines += [
        "Latencies in ms (exact, HDR histograms at 1 µs resolution): median [min–max] over trials; p90, p99.9 and",
        "max from all trials merged.",
        "",
    ]
    lines += [f"{h} Throughput and latency", "", *tables.throughput_latency(points)]
    failures = [p for p in points if p["failures"]]
    if failures:
        lines += [f"{h}# Failures", ""]
        lines += [
            f"- {p['target']} x{p['users']} [{p['batching']}] rows {p['rows']}: {'; '.join(p['failure_samples'])}"
            for p in failures
        ]
        lines.append("")
    lines += [f"{h} Cost per request", "", *tables.cost(points)]
    lines += [f"{h} Client-observed vs server-reported time", "", *tables.server_side(points)]
    lines += [f"{h} Gateway added latency", ""]
    if summary.get("overhead", {}).get("table"):
        lines += tables.paired_overhead(summary["overhead"])
    else:
        lines += ["No paired measurement in this run (`--no-overhead`, or not every gateway target measured).", ""]
    lines += tables.overhead_table(points)
    if summary["slo"]:
        lines += [f"{h} Highest rate within the latency SLO", "", *tables.slo(summary)]
    lines += [f"{h} Capacity plan", "", *capacity.table(summary)]
    return lines


def _environment(summary: dict[str, Any]) -> list[str]:
    env = summary["environment"]
    lines = ["## Environment", "", "| | |", "|---|---|"]
    for key in (
        "cpu_count",
        "machine",
        "platform",
        "python",
        "tf_server",
        "rows_per_request",
        "batching_modes",
        "ts_workers",
        "runtime_threads",
        "load_generator",
        "trials",
    ):
        lines.append(f"| {key} | {env.get(key, '–')} |")
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
    lines += ["", f"Run took {summary['wall_s']} s.", ""]
    return lines


def _deployment(summary: dict[str, Any]) -> list[str]:
    """What was measured and how each part's cost was read (or why it was not)."""
    d = summary.get("deployment") or {"kind": "native"}
    lines = [f"## Deployment under test: {d['kind']}", ""]
    if d.get("urls"):
        lines += [f"Targets: {', '.join(f'{k} {v}' for k, v in d['urls'].items())}.", ""]
    if d.get("cost"):
        lines += ["| part | cost read from |", "|---|---|"]
        lines += [f"| {part} | {how} |" for part, how in d["cost"].items()] + [""]
    return lines
