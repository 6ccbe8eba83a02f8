"""The scaling report: summary.json, report.md and scaling.png from the workers' results."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from export.scaling import split


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per framework and N: median epoch time (the first epoch, with its graph building and warm-up, left out),
    its spread (min–max of the rest), samples/s, efficiency against N = 1 of the same framework, final accuracy."""
    rows = []
    for r in results:
        epochs = r["epoch_seconds"][1:] or r["epoch_seconds"]
        median = statistics.median(epochs)
        rows.append(
            {
                "framework": r["framework"],
                "workers": r["workers"],
                "strategy": r["strategy"],
                "device": r["device"],
                "epoch_s_median": median,
                "epoch_s_min": min(epochs),
                "epoch_s_max": max(epochs),
                "samples_per_s": r["train_rows"] / median,
                "final_accuracy": r["accuracies"][-1],
                "final_loss": r["losses"][-1],
                "epochs": len(r["epoch_seconds"]),
                "setup_s": r["setup_seconds"],
                "train_rows": r["train_rows"],
                "global_batch": r["plan"]["global_batch"],
                "model": r["plan"].get("model", "digits"),
                "parameters": r.get("gradient_bytes", 0) // 4,
                **split.split_row(r),
            }
        )
    for row in rows:
        base = next((x for x in rows if x["framework"] == row["framework"] and x["workers"] == 1), None)
        row["efficiency"] = row["samples_per_s"] / (row["workers"] * base["samples_per_s"]) if base else None
    split.explain(rows)
    return rows


def write_report(
    results: list[dict[str, Any]], out: Path, devices: dict[str, str], tensorboard_dir: Path | None,
    placement: str = "its own process on loopback",
) -> Path:  # fmt: skip
    """summary.json, scaling.png and report.md in `out`; `placement` says where each worker ran."""
    out.mkdir(parents=True, exist_ok=True)
    rows = summarise(results)
    (out / "summary.json").write_text(json.dumps({"rows": rows, "devices": devices, "raw": results}, indent=2))
    plot(rows, out / "scaling.png", rows[0]["model"] if rows else "")
    (out / "report.md").write_text(markdown(rows, devices, tensorboard_dir, placement))
    return out / "report.md"


def plot(rows: list[dict[str, Any]], path: Path, model: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for fw in sorted({r["framework"] for r in rows}):
        mine = sorted((r for r in rows if r["framework"] == fw), key=lambda r: r["workers"])
        xs = [r["workers"] for r in mine]
        ys = [r["samples_per_s"] for r in mine]
        lo = [r["train_rows"] / r["epoch_s_max"] for r in mine]
        hi = [r["train_rows"] / r["epoch_s_min"] for r in mine]
        below = [y - a for y, a in zip(ys, lo, strict=True)]
        above = [b - y for y, b in zip(ys, hi, strict=True)]
        ax.errorbar(xs, ys, yerr=[below, above], marker="o", capsize=4, label=fw)
        if mine and mine[0]["workers"] == 1:
            ax.plot(xs, [ys[0] * x for x in xs], linestyle=":", color=ax.lines[-1].get_color(), alpha=0.6)
    ax.set_xlabel("data-parallel workers (processes)")
    ax.set_ylabel("training samples/s (median epoch)")
    ax.set_xticks(sorted({r["workers"] for r in rows}))
    ax.set_title(
        f"Data-parallel training of the {model} MLP\n(dotted: linear scaling from 1 worker; bars: epoch min–max)"
    )
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(
    rows: list[dict[str, Any]], devices: dict[str, str], tensorboard_dir: Path | None,
    placement: str = "its own process on loopback",
) -> str:  # fmt: skip
    model = rows[0]["model"] if rows else "?"
    params = rows[0]["parameters"] if rows else 0
    lines = [
        "# Training scaling: PyTorch DDP vs TensorFlow MultiWorkerMirroredStrategy",
        "",
        f"Model: `{model}` (models.toml), {params:,} weights.",
        "",
        f"Devices: PyTorch on `{devices.get('pytorch')}`, TensorFlow on `{devices.get('tensorflow')}`. "
        f"Each worker is {placement}, limited to one thread; "
        f"global batch {rows[0]['global_batch'] if rows else '?'} split evenly across workers, Adam at the same "
        "learning rate for every N, the same seeded split and epoch order. Epoch time is the median of all epochs "
        "but the first; efficiency is samples/s ÷ (N × samples/s at N = 1) of the same framework.",
        "",
        "| framework | N | strategy | median epoch s (min–max) | samples/s | efficiency | test accuracy | setup s |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["framework"], r["workers"])):
        eff = f"{r['efficiency']:.2f}" if r["efficiency"] is not None else "–"
        lines.append(
            f"| {r['framework']} | {r['workers']} | {r['strategy']} | {r['epoch_s_median']:.3f} "
            f"({r['epoch_s_min']:.3f}–{r['epoch_s_max']:.3f}) | {r['samples_per_s']:.0f} | {eff} | "
            f"{r['final_accuracy']:.4f} | {r['setup_s']:.1f} |"
        )
    lines += ["", *split.markdown(rows), "![samples/s against workers](scaling.png)", "", "## Summary", ""]
    lines += summary_lines(rows)
    if tensorboard_dir is not None:
        lines += [
            "",
            "TensorBoard (both frameworks, the same `loss` and `accuracy` scalars): "
            f"`tensorboard --logdir {tensorboard_dir}`",
        ]
    lines.append("")
    return "\n".join(lines)


def summary_lines(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for fw in sorted({r["framework"] for r in rows}):
        mine = sorted((r for r in rows if r["framework"] == fw), key=lambda r: r["workers"])
        parts = [f"N={r['workers']}: {r['samples_per_s']:.0f} samples/s" for r in mine]
        top = mine[-1]
        eff = f", efficiency {top['efficiency']:.2f} at N={top['workers']}" if top["efficiency"] is not None else ""
        verdict = ""
        if len(mine) > 1:
            a, b = mine[0], mine[-1]
            a_lo, a_hi = a["train_rows"] / a["epoch_s_max"], a["train_rows"] / a["epoch_s_min"]
            b_lo, b_hi = b["train_rows"] / b["epoch_s_max"], b["train_rows"] / b["epoch_s_min"]
            if b_lo > a_hi:
                verdict = f" (N={b['workers']} is faster than N={a['workers']}: the epoch spreads don't overlap)"
            elif b_hi < a_lo:
                verdict = f" (N={b['workers']} is slower than N={a['workers']}: the epoch spreads don't overlap)"
            else:
                verdict = " (the epoch spreads overlap: no clear difference)"
        same = max(r["final_accuracy"] for r in mine) - min(r["final_accuracy"] for r in mine) < 0.005
        agree = " the same at every N (the same global batch and order: one training, split over processes)" if (
            len(mine) > 1 and same
        ) else ""
        out.append(
            f"- {fw}: {'; '.join(parts)}{eff}{verdict}; final test accuracy {top['final_accuracy']:.4f}{agree}."
        )
    line = split.summary_line(rows)
    if line:
        out.append(line)
    return out
