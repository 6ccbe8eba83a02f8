"""The report's plots, from summary.json's points: error bars are the min–max over trials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOTS = ("latency_percentiles.png", "throughput.png", "cpu_per_request.png", "latency_distribution.png")


def _series(points: list[dict[str, Any]], rows: int) -> dict[tuple[str, str], list[dict[str, Any]]]:
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for p in points:
        if p["rows"] == rows:
            series.setdefault((p["target"], p["batching"]), []).append(p)
    for ps in series.values():
        ps.sort(key=lambda p: p["users"])
    return series


def _errorbar(ax: Any, xs: list[int], stats: list[dict[str, float]], **kw: Any) -> Any:
    ys = [s["median"] for s in stats]
    err = [  # at least 0: the median is rounded, its min and max are not (3 equal trials gave a negative bar)
        [max(y - s["min"], 0.0) for y, s in zip(ys, stats, strict=True)],
        [max(s["max"] - y, 0.0) for y, s in zip(ys, stats, strict=True)],
    ]
    return ax.errorbar(xs, ys, yerr=err, capsize=3, marker="o", **kw)


def _log_labels(ax: Any) -> None:
    """Latency on a log axis labelled at 1, 2 and 5 of each decade: a range inside one decade (1.4-5 ms) got no
    label at all from matplotlib's default, and the plot could not be read."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _ticks(ax: Any, users: list[int]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(users, [str(u) for u in users])
    ax.minorticks_off()
    ax.grid(True, which="both", alpha=0.3)


def write_plots(summary: dict[str, Any], out: Path, prefix: str = "") -> list[str]:
    """The four figures of `summary['points']`, named PLOTS with `prefix` (one set per model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from loadtest.measure import latency

    points = summary["points"]
    if not points:
        return []
    model = f", model {prefix.rstrip('-')}" if prefix else ""  # a figure opened on its own says which
    rows_values = sorted({p["rows"] for p in points})
    users = sorted({p["users"] for p in points})

    def per_rows(name: str, draw: Any, **legend: Any) -> None:
        """One panel per rows-per-request value, concurrency on the x axis."""
        fig, axes = plt.subplots(1, len(rows_values), figsize=(7 * len(rows_values), 5), squeeze=False)
        for ax, rows in zip(axes[0], rows_values, strict=True):
            draw(ax, rows, _series(points, rows))
            _ticks(ax, users)
            if ax.get_legend_handles_labels()[0]:  # a cost not measured (endpoints without Prometheus) draws none
                ax.legend(**legend)
        fig.tight_layout()
        fig.savefig(out / (prefix + name), dpi=100)
        plt.close(fig)

    def latency_panel(ax: Any, rows: int, series: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        for (target, batching), ps in series.items():
            xs = [p["users"] for p in ps]
            line = _errorbar(ax, xs, [p["p50"] for p in ps], label=f"{target} [{batching}] p50")
            style = {"linestyle": "--", "color": line[0].get_color()}
            _errorbar(ax, xs, [p["p99"] for p in ps], label=f"{target} [{batching}] p99", **style)
        ax.set(
            yscale="log",
            xlabel="concurrent users",
            ylabel="latency (ms)",
            title=f"Latency, {rows} row(s) per request{model}",
        )
        _log_labels(ax)

    def throughput_panel(ax: Any, rows: int, series: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        for (target, batching), ps in series.items():
            _errorbar(ax, [p["users"] for p in ps], [p["rps"] for p in ps], label=f"{target} [{batching}]")
        ax.set(xlabel="concurrent users", ylabel="requests / s", title=f"Throughput, {rows} row(s) per request{model}")
        ax.set_ylim(bottom=0)

    def cpu_panel(ax: Any, rows: int, series: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        for (target, batching), ps in series.items():
            owner = {"tf-direct": "tf", "torch-direct": "torch", "gateway-tf": "gateway", "gateway-torch": "gateway"}
            stats = [p["cpu_us_per_request"].get(owner.get(target, "")) for p in ps]
            if target in owner and all(stats):
                label = f"{owner[target]} process tree ({target}) [{batching}]"
                _errorbar(ax, [p["users"] for p in ps], stats, label=label)  # type: ignore[arg-type]
        ax.set(
            xlabel="concurrent users", ylabel="CPU µs per request", title=f"CPU cost per request, {rows} row(s){model}"
        )
        ax.set_ylim(bottom=0)

    per_rows(PLOTS[0], latency_panel, fontsize=6, ncol=2)
    per_rows(PLOTS[1], throughput_panel, fontsize=7)
    per_rows(PLOTS[2], cpu_panel, fontsize=7)

    fig, ax = plt.subplots(figsize=(9, 5))
    top = max(users)
    quantiles = [50, 75, 90, 95, 99, 99.5, 99.9, 99.99]
    for p in points:
        if p["users"] == top and p["rows"] == rows_values[0] and p.get("hdr"):
            hist = latency.decode(p["hdr"])
            ys = [hist.get_value_at_percentile(q) / 1000.0 for q in quantiles]
            ax.plot(range(len(quantiles)), ys, marker="o", label=f"{p['target']} [{p['batching']}]")
    ax.set_xticks(range(len(quantiles)), [f"p{q:g}" for q in quantiles])
    ax.set(
        yscale="log",
        ylabel="latency (ms)",
        title=f"Latency distribution at {top} users (all trials merged, exact){model}",
    )
    _log_labels(ax)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / (prefix + PLOTS[3]), dpi=100)
    plt.close(fig)
    return [prefix + name for name in PLOTS]
