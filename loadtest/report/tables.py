"""The report's tables, as markdown lines, from summary.json."""

from __future__ import annotations

from typing import Any


def rng(s: dict[str, float], digits: int = 2) -> str:
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}–{s['max']:.{digits}f}]"


def throughput_latency(points: list[dict[str, Any]]) -> list[str]:
    lines = []
    for rows in sorted({p["rows"] for p in points}):
        lines += [f"### {rows} row(s) per request", ""]
        for target in dict.fromkeys(p["target"] for p in points):
            ps = sorted(
                (p for p in points if p["target"] == target and p["rows"] == rows),
                key=lambda p: (p["batching"], p["users"]),
            )
            if not ps:
                continue
            lines += [
                f"#### {target}",
                "",
                "| batching | users | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | trials | errors | notes |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            ]
            for p in ps:
                lat = p["latency"]
                notes = "; ".join(p["warnings"])
                lines.append(
                    f"| {p['batching']} | {p['users']} | {rng(p['rps'], 1)} | {rng(p['p50'])} | {lat['p90']:.2f} | "
                    f"{rng(p['p99'])} | {lat['p99_9']:.2f} | {lat['max']:.2f} | {p['trials']} | {p['failures']} | "
                    f"{notes} |"
                )
            lines.append("")
    return lines


def cost(points: list[dict[str, Any]]) -> list[str]:
    lines = [
        "CPU time of each process tree (its cgroup where one could be made) over the measured windows divided by the",
        "good answers in them (median [min–max] over trials); `per CPU-s` is requests per CPU-second of the serving",
        "side. The generator's own cost is shown too. Peak memory: the cgroup's, or the PSS of its processes.",
        "",
        "| target | batching | rows | users | server CPU µs/req | per CPU-s | gateway CPU µs/req "
        "| generator CPU µs/req | peak memory MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in sorted(points, key=lambda p: (p["rows"], p["batching"], p["target"], p["users"])):
        cpu = p["cpu_us_per_request"]
        backends = {
            "tf-direct": ["tf"],
            "torch-direct": ["torch"],
            "gateway-tf": ["tf"],
            "gateway-torch": ["torch"],
        }.get(p["target"], ["tf", "torch"])
        measured = [b for b in backends if b in cpu]
        server = sum(cpu[b]["median"] for b in measured)
        gateway = rng(cpu["gateway"], 0) if p["target"].startswith("gateway-") and "gateway" in cpu else "–"
        generator = rng(cpu["generator"], 0) if "generator" in cpu else "–"
        rss = ", ".join(f"{k} {v:.0f}" for k, v in p["peak_rss_mb"].items())
        lines.append(
            f"| {p['target']} | {p['batching']} | {p['rows']} | {p['users']} | "
            f"{f'{server:.0f}' if measured else 'not measured'} | {f'{1e6 / server:.0f}' if server else '–'} | "
            f"{gateway} | {generator} | {rss} |"
        )
    return [*lines, ""]


def server_side(points: list[dict[str, Any]]) -> list[str]:
    lines = [
        "Mean time per request as the client saw it and as each server's own metrics report it (TorchServe: its",
        "frontend's inference latency, queue included; TF side: its request latency). The difference is HTTP, JSON and",
        "the client's side of the connection.",
        "",
        "| target | batching | rows | users | client mean ms | server mean ms | client − server ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for p in sorted(points, key=lambda p: (p["rows"], p["batching"], p["target"], p["users"])):
        if p["target"] not in ("tf-direct", "torch-direct"):
            continue
        server = p["server_mean_ms"].get(p["target"].split("-")[0])
        client = p["latency"]["mean"]
        if server is None or client is None:
            continue
        lines.append(
            f"| {p['target']} | {p['batching']} | {p['rows']} | {p['users']} | {client:.3f} | {server:.3f} | "
            f"{client - server:.3f} |"
        )
    return [*lines, ""]


def gateway_overhead(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    index = {(p["target"], p["users"], p["batching"], p["rows"]): p for p in points}
    rows = []
    for (target, users, batching, n_rows), via in sorted(index.items()):
        if target not in ("gateway-tf", "gateway-torch"):
            continue
        direct = index.get((target.replace("gateway-", "") + "-direct", users, batching, n_rows))
        if direct is None:
            continue
        rows.append(
            {
                "backend": target.replace("gateway-", ""),
                "users": users,
                "batching": batching,
                "rows": n_rows,
                "added_p50_ms": round(via["p50"]["median"] - direct["p50"]["median"], 2),
                "added_p99_ms": round(via["p99"]["median"] - direct["p99"]["median"], 2),
                "throughput_ratio": round(via["rps"]["median"] / direct["rps"]["median"], 3)
                if direct["rps"]["median"]
                else None,
                "gateway_cpu_us": via["cpu_us_per_request"].get("gateway", {}).get("median"),
            }
        )
    return rows


def paired_overhead(overhead: dict[str, Any]) -> list[str]:
    """The gateway's added latency from the hop instrument: each round's gateway p50 (p99) minus the same round's
    direct p50 (p99), the routes called in turn request by request; median [min–max] over rounds."""
    lines = [
        "Measured paired: one client calls the backend directly and through the gateway in turn, request by request,",
        "with the same payload (`python -m loadtest overhead`; the hop table below has the passthrough beside it).",
        "Added: the gateway's p50 (p99) minus the direct p50 (p99) of the same round, median [min–max] over rounds.",
        "",
        "| backend | rows | direct p50 ms | gateway added p50 ms | gateway added p99 ms | gateway CPU µs/req |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in overhead["table"]:
        span = r.get("gateway_added_p50_range")
        added = f"{r['gateway_added_p50_ms']}" + (f" [{span[0]}–{span[1]}]" if span else "")
        lines.append(
            f"| {r['backend']} | {r['rows']} | {r['direct_p50_ms']} | {added} | {r['gateway_added_p99_ms']} | "
            f"{r['gateway_cpu_us']} |"
        )
    return [*lines, ""]


def overhead_table(points: list[dict[str, Any]]) -> list[str]:
    lines = [
        "**Unpaired, not a decision:** the gateway route's sweep point minus the direct one's (medians over trials,",
        "same concurrency and batching). These are separate runs seconds apart, so the machine's drift between them",
        "is in every difference (it can come out negative); read them as a rough picture under load only.",
        "",
        "| backend | batching | rows | users | added p50 ms | added p99 ms | throughput vs direct "
        "| gateway CPU µs/req |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in gateway_overhead(points):
        lines.append(
            f"| {r['backend']} | {r['batching']} | {r['rows']} | {r['users']} | {r['added_p50_ms']} | "
            f"{r['added_p99_ms']} | "
            f"{r['throughput_ratio']} | {r['gateway_cpu_us']} |"
        )
    return [*lines, ""]


def slo(summary: dict[str, Any]) -> list[str]:
    arrivals = summary["options"].get("slo_arrivals") or summary["options"].get("slo_min_queries")
    lines = [
        "Arrivals on a Poisson schedule at the offered rate (open loop, MLPerf LoadGen's Server scenario), exactly",
        f"{arrivals} a step; latency from the scheduled send time, so a stall is not hidden. A step holds when every",
        "request was answered right and p99 is within the bound. The rate doubles until a step breaks, then the",
        "bracket is bisected until its ends are within 10 %; no step is measured twice. The answer is the bracket",
        "[last rate held, first rate broken]: the capacity lies between. *p99 interval*: where the true p99 lies",
        "(95 %), from the order statistics of that many answers.",
        "",
        "| target | batching | p99 bound ms | last rate held | first rate broken | steps |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for s in summary["slo"]:
        held, broken = s.get("bracket") or [s.get("max_rps_within_slo"), None]
        lines.append(
            f"| {s['target']} | {s['batching']} | {s['slo_p99_ms']:g} | "
            f"{f'{held:.0f}' if held else 'none (the first step broke)'} | "
            f"{f'{broken:.0f}' if broken else 'none (never broke)'} | {len(s['steps'])} |"
        )
    lines += [
        "",
        "| target | batching | offered req/s | achieved req/s | p50 ms | p99 ms | p99 interval ms | queries "
        "| failures | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in summary["slo"]:
        for st in s["steps"]:
            ci = st.get("p99_interval_ms") or [None, None]
            interval = f"{ci[0]}–{ci[1] if ci[1] is not None else '?'}" if ci[0] is not None else "–"
            lines.append(
                f"| {s['target']} | {s['batching']} | {st['offered_rps']} | {st['achieved_rps']:.1f} | "
                f"{st['p50_ms']} | {st['p99_ms']} | {interval} | {st['requests']} | {st['failures']} | "
                f"{st['reason']}{' (retry)' if st.get('retry') else ''} |"
            )
    return [*lines, ""]


def startup(summary: dict[str, Any]) -> list[str]:
    start = summary.get("startup") or {}
    if not start:
        return []
    lines = [
        "Each server started alone; time from process start to its first correct prediction, memory of its whole",
        "process tree 2 s later, size of its artifact.",
        "",
        "| side | server | start → first prediction s | idle RSS MB | artifact | artifact MB |",
        "|---|---|---:|---:|---|---:|",
    ]
    for side, r in start.items():
        lines.append(
            f"| {side} | {r['server']} | {r['start_to_first_prediction_s']} | {r['idle_rss_mb']} | {r['artifact']} | "
            f"{r['artifact_mb']} |"
        )
    return [*lines, ""]


def hop_table(overhead: dict[str, Any]) -> list[str]:
    lines = [
        "One sequential keep-alive client calls a backend directly, through the gateway and through a bare aiohttp",
        "passthrough (bytes in/out, no parsing) in turn, request by request, with the same payload; a round is one",
        "backend for some seconds. Added: the hop's p50 (p99) minus the direct p50 (p99) of the same round, median",
        "[min–max] over rounds. Ratio: the gateway's mean added p50 over the passthrough's, with its 95 % bootstrap",
        "interval over rounds, beside its goal (issue 24: within 1.25x of the passthrough at 1 row and at 64 rows).",
        "CPU: each hop's process tree per request, the gateway's beside its goal where it has one (at 1 row, 400 µs);",
        "the client's own per request beside them.",
        "",
        "| backend | rows | direct p50 ms | gateway +p50 ms | passthrough +p50 ms | ratio (goal) | gateway +p99 ms "
        "| passthrough +p99 ms | gateway CPU µs/req | passthrough CPU µs/req | client CPU µs/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ratio(r: dict[str, Any]) -> str:
        span = r.get("ratio_p50_interval")
        if r["ratio_p50"] is None:
            return "– (passthrough adds ~0)"
        return f"{r['ratio_p50']}" + (f" [{span[0]}–{span[1]}]" if span else "")

    def added(r: dict[str, Any], hop: str) -> str:
        span = r.get(f"{hop}_added_p50_range")
        return f"{r[f'{hop}_added_p50_ms']}" + (f" [{span[0]}–{span[1]}]" if span else "")

    def cpu(r: dict[str, Any]) -> str:
        goal = r.get("cpu_goal_us")
        return f"{r['gateway_cpu_us']}" + (f" (≤ {goal})" if goal else "")

    for r in overhead["table"]:
        lines.append(
            f"| {r['backend']} | {r['rows']} | {r['direct_p50_ms']} | {added(r, 'gateway')} | "
            f"{added(r, 'passthrough')} | {ratio(r)} (≤ {r['goal']}) | {r['gateway_added_p99_ms']} | "
            f"{r['passthrough_added_p99_ms']} | {cpu(r)} | {r['passthrough_cpu_us']} | "
            f"{r.get('client_cpu_us', '–')} |"
        )
    return [*lines, ""]


def models(summary: dict[str, Any]) -> list[str]:
    """Per model, backend and rows: what a request costs at low load and how much of that the bigger model's
    compute adds (where compute starts to dominate), the best throughput, and batching on ÷ off where both ran."""
    names = [m["name"] for m in summary["models"]]
    first = names[0]
    params = {m["name"]: m.get("parameters") for m in summary["models"]}
    points = summary["points"]

    def pick(model: str, target: str, rows: int, batching: str) -> list[dict[str, Any]]:
        return [
            p for p in points
            if (p.get("model") or first) == model and p["target"] == target and p["rows"] == rows
            and p["batching"] == batching
        ]  # fmt: skip

    lines = [
        "Direct to each server, batching off unless said. *added by the model*: p50 at the lowest concurrency over",
        f"`{first}`'s on the same side and rows: what the bigger model's compute adds to a request, and its share",
        "of the request (the rest, transport and framing, is the same for every model). *batching on ÷ off*: best",
        "throughput with server-side batching over without (medians; bold where the spreads don't overlap).",
        "",
        "| model | weights | side | rows | p50 ms, low load | added by the model | best req/s (off) "
        "| batching on ÷ off |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for model in names:
        for side, target in (("tf", "tf-direct"), ("torch", "torch-direct")):
            for rows in sorted({p["rows"] for p in points}):
                off = pick(model, target, rows, "off")
                if not off:
                    continue
                low = min(off, key=lambda p: p["users"])
                base = pick(first, target, rows, "off")
                added = "–"
                if model != first and base:
                    base_low = next((p for p in base if p["users"] == low["users"]), None)
                    if base_low:
                        extra = low["p50"]["median"] - base_low["p50"]["median"]
                        added = f"{extra:+.2f} ms ({extra / low['p50']['median']:.0%})"
                best = max(off, key=lambda p: p["rps"]["median"])
                on = pick(model, target, rows, "on")
                gain = "–"
                if on:
                    best_on = max(on, key=lambda p: p["rps"]["median"])
                    ratio = best_on["rps"]["median"] / best["rps"]["median"]
                    clear = best_on["rps"]["min"] > best["rps"]["max"] or best_on["rps"]["max"] < best["rps"]["min"]
                    gain = f"**{ratio:.2f}**" if clear else f"{ratio:.2f}"
                weights = f"{params[model]:,}" if params.get(model) else "?"
                lines.append(
                    f"| {model} | {weights} | {side} | {rows} | {rng(low['p50'])} (x{low['users']}) | {added} | "
                    f"{rng(best['rps'], 0)} (x{best['users']}) | {gain} |"
                )
    return [*lines, ""]
