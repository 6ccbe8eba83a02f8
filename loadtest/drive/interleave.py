"""Several routes measured request by request in turn: the instrument for what a hop adds.

One sequential client (asyncio + uvloop, one keep-alive connection per route, the lean driver's raw HTTP/1.1)
sends the same payload to every route in a cycle, one after another, then the next cycle with another payload and
the order rotated. Every route so sees the same moments of a shared, drifting machine and the same payloads: the
difference of two routes' percentiles is the hops' difference, not the minute's. (Rounds of a few seconds per route
in turn, the first design, let the direct p50 move 4-6 ms between rounds at 64 rows: more than the hop.)

    python -m loadtest.drive.interleave --route tf-direct tf http://127.0.0.1:8501/v1/models/digits:predict \\
        --route tf-gateway tf http://127.0.0.1:8000/predict/tf --rows 64 --duration 6 --out -

Every answer is checked like the lean driver's; only good answers are latency. Output: per route requests, good
answers, failures, p50/p99 in ms at 1 µs resolution, the HDR histogram; the client's own CPU seconds (and per good
answer).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import time
from typing import Any
from urllib.parse import urlsplit

from loadtest.drive.lean import (
    Connection,
    Outcome,
    add_run_options,
    build_requests,
    cpu_since,
    failure_samples,
    install_uvloop,
    one_or_reconnect,
    write_result,
)
from loadtest.measure import latency


async def interleaved(
    routes: list[tuple[str, str, str]], rows: int, duration_s: float, seed: int
) -> dict[str, Outcome]:
    """routes: (name, kind, url with path). The payload list is the same for every route (loadtest/payloads.py), so
    index i is the same payload everywhere."""
    rng = random.Random(seed)
    names = [name for name, _, _ in routes]
    requests, conns, outcomes = {}, {}, {}
    for name, kind, url in routes:
        parts = urlsplit(url)
        requests[name] = (kind, parts.hostname or "127.0.0.1", parts.port or 80, build_requests(url, parts.path, rows))
        conns[name] = await Connection.open(requests[name][1], requests[name][2])
        outcomes[name] = Outcome()
    count = len(next(iter(requests.values()))[3])
    deadline = time.perf_counter() + duration_s
    cycle = 0
    try:
        while time.perf_counter() < deadline:
            i = rng.randrange(count)
            shift = cycle % len(names)
            for name in names[shift:] + names[:shift]:
                kind, host, port, reqs = requests[name]
                req, payload = reqs[i]
                conns[name] = await one_or_reconnect(conns[name], req, payload, kind, outcomes[name], host, port)
            cycle += 1
    finally:
        for conn in conns.values():
            conn.close()
    return outcomes


def run(args: argparse.Namespace) -> dict[str, Any]:
    install_uvloop()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.perf_counter()
    outcomes = asyncio.run(interleaved([tuple(r) for r in args.route], args.rows, args.duration, args.seed))
    wall = time.perf_counter() - wall0
    cpu = cpu_since(cpu0)
    total = sum(o.ok for o in outcomes.values())
    return {
        "driver": "interleave (one sequential client, routes in turn request by request, raw HTTP/1.1 keep-alive)",
        "wall_s": round(wall, 3),
        "generator_cpu_s": round(cpu, 3),
        "generator_cpu_us_per_request": round(cpu * 1e6 / max(total, 1), 1),
        "routes": {
            name: {
                "requests": o.requests,
                "ok": o.ok,
                "failures": o.failures,
                "failure_samples": failure_samples(o),
                "p50": latency.percentile_ms(o.hist, 50.0),
                "p99": latency.percentile_ms(o.hist, 99.0),
                "hdr": latency.encode(o.hist),
            }
            for name, o in outcomes.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.drive.interleave", description=__doc__)
    p.add_argument(
        "--route", nargs=3, action="append", required=True, metavar=("NAME", "KIND", "URL"),
        help="a route: its name, how answers are checked (tf, torch, compare), its URL with path",
    )  # fmt: skip
    add_run_options(p, duration_s=6.0)
    args = p.parse_args(argv)
    write_result(run(args), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
