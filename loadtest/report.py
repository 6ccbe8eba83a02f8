"""The comparison report: report.md with tables and embedded PNG plots, from summary.json."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
from pathlib import Path
from typing import Any

from stack.config import StackConfig
from stack.launcher import TF_BINARY, tf_server_kind
from stack.tfserving_compat import DISPLAY_NAME as COMPAT_NAME

PLOTS = ("latency_percentiles.png", "throughput.png", "latency_distribution.png")


def _version(pkg: str) -> str:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return "not installed"


def environment(cfg: StackConfig, opts: Any) -> dict[str, Any]:
    from loadtest.runner import batching_overrides

    kind = tf_server_kind()
    batching_on = batching_overrides("on", cfg, opts.batch_size)
    return {
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tf_server": "TensorFlow Serving (tensorflow_model_server)" if kind == TF_BINARY else COMPAT_NAME,
        "tf_server_is_real_tf_serving": kind == TF_BINARY,
        "versions": {
            p: _version(p) for p in ("tensorflow-cpu", "torch", "torchserve", "locust", "fastapi", "uvicorn", "httpx")
        },
        "model": {"name": cfg.model_name, "version": cfg.model_version},
        "batch_size_per_request": opts.batch_size,
        "batching_modes": opts.batching,
        "batching_on_settings": {
            "rows_per_batch": int(batching_on["TF_MAX_BATCH_SIZE"]),
            "tf_max_batch_size": int(batching_on["TF_MAX_BATCH_SIZE"]),
            "tf_batch_timeout_micros": cfg.tf_batch_timeout_micros,
            "ts_batch_size": int(batching_on["TS_BATCH_SIZE"]),
            "ts_max_batch_delay_ms": int(batching_on["TS_MAX_BATCH_DELAY_MS"]),
        },
        "ts_workers": cfg.ts_workers,
        "load_generator": "locust (FastHttpUser), one process on the same machine as the servers",
    }


def _user_ticks(ax: Any, ms: list[dict[str, Any]]) -> None:
    users = sorted({m["users"] for m in ms})
    ax.set_xticks(users, [str(u) for u in users])
    ax.minorticks_off()


def _plots(summary: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = summary["measurements"]
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for m in ms:
        series.setdefault((m["target"], m["batching"]), []).append(m)
    for rows in series.values():
        rows.sort(key=lambda m: m["users"])

    fig, ax = plt.subplots(figsize=(9, 5))
    for (target, batching), rows in series.items():
        users = [m["users"] for m in rows]
        line = ax.plot(users, [m["p50"] for m in rows], marker="o", label=f"{target} [{batching}] p50")[0]
        ax.plot(
            users,
            [m["p99"] for m in rows],
            marker="^",
            linestyle="--",
            color=line.get_color(),
            label=f"{target} [{batching}] p99",
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="concurrent users",
        ylabel="latency (ms)",
        title="Latency percentiles vs concurrency",
    )
    _user_ticks(ax, ms)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / PLOTS[0], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 5))
    for (target, batching), rows in series.items():
        ax.plot([m["users"] for m in rows], [m["rps"] for m in rows], marker="o", label=f"{target} [{batching}]")
    ax.set(xscale="log", xlabel="concurrent users", ylabel="requests / s", title="Throughput vs concurrency")
    _user_ticks(ax, ms)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / PLOTS[1], dpi=110)
    plt.close(fig)

    top = max(m["users"] for m in ms)
    fig, ax = plt.subplots(figsize=(9, 5))
    for (target, batching), rows in series.items():
        m = next(r for r in rows if r["users"] == max(r2["users"] for r2 in rows))
        keys = list(m["percentiles"])
        ax.plot(
            range(len(keys)),
            [m["percentiles"][k] for k in keys],
            marker="o",
            label=f"{target} [{batching}] ({m['users']} users)",
        )
        ax.set_xticks(range(len(keys)), keys)
    ax.set(
        yscale="log",
        xlabel="percentile",
        ylabel="latency (ms)",
        title=f"Latency distribution at the highest concurrency ({top} users)",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / PLOTS[2], dpi=110)
    plt.close(fig)
    return list(PLOTS)


def gateway_overhead(ms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Added latency and relative throughput of the gateway vs the same backend called directly."""
    index = {(m["target"], m["users"], m["batching"]): m for m in ms}
    rows = []
    for (target, users, batching), via in sorted(index.items()):
        if not target.startswith("gateway-") or target == "gateway-compare":
            continue
        direct = index.get((target.replace("gateway-", "") + "-direct", users, batching))
        if direct is None:
            continue
        rows.append({
            "backend": target.replace("gateway-", ""), "users": users, "batching": batching,
            "added_p50_ms": round(via["p50"] - direct["p50"], 2), "added_p99_ms": round(via["p99"] - direct["p99"], 2),
            "throughput_ratio": round(via["rps"] / direct["rps"], 3) if direct["rps"] else None,
        })  # fmt: skip
    return rows


def write_report(summary: dict[str, Any], out: Path) -> Path:
    plots = _plots(summary, out) if summary["measurements"] else []
    env = summary["environment"]
    ms = summary["measurements"]
    lines = ["# servecompare: TensorFlow Serving side vs TorchServe", ""]
    if not env["tf_server_is_real_tf_serving"]:
        lines += [
            f"> **Note:** the TF side is the {env['tf_server']}: `tensorflow_model_server` was not on this",
            "> machine. Its figures measure that stand-in, not TensorFlow Serving itself.",
            "",
        ]
    lines += ["## Environment", "", "| | |", "|---|---|"]
    for key in (
        "cpu_count",
        "machine",
        "platform",
        "python",
        "tf_server",
        "batch_size_per_request",
        "batching_modes",
        "ts_workers",
        "load_generator",
    ):
        lines.append(f"| {key} | {env[key]} |")
    lines.append(f"| versions | {', '.join(f'{k} {v}' for k, v in env['versions'].items())} |")
    lines.append(f"| batching 'on' settings | {env['batching_on_settings']} |")
    lines += [
        "",
        "Batching 'on' is one budget in rows on both sides: TF's max_batch_size counts rows, TorchServe's batchSize",
        "counts requests, so TorchServe gets rows_per_batch / rows per request requests, and both wait the same delay.",
        "",
        "### Settings in force (read back from the running servers)",
        "",
        "| batching | side | settings |",
        "|---|---|---|",
    ]
    for mode, sides in summary.get("settings_in_force", {}).items():
        for side, values in sides.items():
            lines.append(f"| {mode} | {side} | {', '.join(f'{k}={v}' for k, v in values.items())} |")
    lines += ["", f"Run took {summary['wall_s']} s. Latencies are locust's client-side figures in ms.", ""]

    lines += ["## Throughput and latency", ""]
    for target in dict.fromkeys(m["target"] for m in ms):
        lines += [
            f"### {target}",
            "",
            "| batching | users | req/s | p50 | p90 | p99 | max | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for m in sorted((m for m in ms if m["target"] == target), key=lambda m: (m["batching"], m["users"])):
            lines.append(
                f"| {m['batching']} | {m['users']} | {m['rps']:.1f} | {m['p50']:.1f} | {m['p90']:.1f} | "
                f"{m['p99']:.1f} | {m['max']:.1f} | {m['failures']} |"
            )
        lines.append("")
    failures = [m for m in ms if m["failures"]]
    if failures:
        lines += ["### Failures", ""]
        lines += [
            f"- {m['target']} x{m['users']} [{m['batching']}]: {'; '.join(m['failure_samples'])}" for m in failures
        ]
        lines.append("")

    overhead = gateway_overhead(ms)
    lines += [
        "## Gateway added latency",
        "",
        "Gateway route minus the same backend called directly, same concurrency and batching.",
        "",
        "| backend | batching | users | added p50 (ms) | added p99 (ms) | throughput vs direct |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in overhead:
        lines.append(
            f"| {r['backend']} | {r['batching']} | {r['users']} | {r['added_p50_ms']} | {r['added_p99_ms']} | "
            f"{r['throughput_ratio']} |"
        )
    lines.append("")

    if summary["slo"]:
        lines += [
            "## Highest rate within the latency SLO",
            "",
            "Offered rate raised step by step (paced users) until p99 broke the bound or errors appeared.",
            "",
            "| target | batching | p99 bound (ms) | max req/s that held | steps |",
            "|---|---|---:|---:|---:|",
        ]
        for s in summary["slo"]:
            best = f"{s['max_rps_within_slo']:.1f}" if s["max_rps_within_slo"] else "none (first step broke it)"
            lines.append(f"| {s['target']} | {s['batching']} | {s['slo_p99_ms']:.0f} | {best} | {len(s['steps'])} |")
        lines += [
            "",
            "Every step, and why it held or broke (a step broken by p99 alone is measured again, marked *retry*):",
            "",
            "| target | batching | offered req/s | achieved req/s | p99 (ms) | requests | failures | verdict |",
            "|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for s in summary["slo"]:
            for st in s["steps"]:
                verdict = st.get("reason", "holds" if st["held"] else "broke") + (" (retry)" if st.get("retry") else "")
                lines.append(
                    f"| {s['target']} | {s['batching']} | {st['offered_rps']} | {st['achieved_rps']:.1f} | "
                    f"{st['p99_ms']:.1f} | {st.get('requests', '')} | {st['failures']} | {verdict} |"
                )
        lines.append("")

    lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    lines += [
        "## Raw data",
        "",
        "- `summary.json`: every figure above",
        "- `csv/`: locust's CSVs and HTML report for every run (`<batching>-<target>-u<users>_stats.csv`, `.html`)",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
