"""Start-up and footprint of each server: time from process start to the first correct prediction, idle memory of
its process tree (its cgroup's memory, or the PSS of its processes: loadtest/measure/processes.py; the keys keep
their old name, idle_rss), and the size of its artifact on disk. Each server is started alone, so neither competes with
the other for the CPU while it starts."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from loadtest.measure.processes import meter_for
from loadtest.payloads import check_predictions, payloads
from stack.config import StackConfig
from stack.launcher import NativeStack

SERVICES = {"tf": ("tf", 0), "torch": ("torchserve", 1)}


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _first_correct_prediction(url: str, deadline: float) -> None:
    p = payloads(1)[0]
    while time.monotonic() < deadline:
        try:
            r = httpx.post(url, content=p.body, headers={"content-type": "application/json"}, timeout=2)
            if r.status_code == 200 and check_predictions(r.json().get("predictions"), p.expected) is None:
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.02)
    raise TimeoutError(f"no correct prediction from {url}")


def measure_startup(
    cfg: StackConfig, run_dir: Path, idle_s: float = 2.0, timeout: float = 180.0, repeats: int = 5
) -> dict[str, Any]:
    """Each server started alone `repeats` times, alternating (tf, torch, tf, torch, ...): start-up on this kind of
    machine varies several-fold between runs, so the verdict needs several starts a side for its interval."""
    from stack.registry import model

    stack = NativeStack(cfg, run_dir=run_dir, models=[model(cfg.model_name)])  # the measured model alone
    (run_dir / "conf").mkdir(parents=True, exist_ok=True)
    services = stack.services()
    urls = {
        "tf": f"{cfg.tf_rest_url}/v1/models/{cfg.model_name}:predict",
        "torch": f"{cfg.ts_inference_url}/predictions/{cfg.model_name}",
    }
    artifacts = {"tf": cfg.tf_version_dir, "torch": cfg.mar_path}
    seen: dict[str, dict[str, list[float]]] = {side: {"start": [], "rss": []} for side in SERVICES}
    how: dict[str, str] = {}
    try:
        for _ in range(repeats):
            for side, (_, index) in SERVICES.items():
                svc = services[index]
                started = time.monotonic()
                proc = stack._spawn(svc, lambda _: None)
                _first_correct_prediction(urls[side], started + timeout)
                seen[side]["start"].append(time.monotonic() - started)
                time.sleep(idle_s)
                meter = meter_for(proc.pid, proc.cgroup)
                seen[side]["rss"].append(meter.memory_bytes() / 2**20)
                how[side] = meter.how
                stack.stop_service(svc.name)
    finally:
        stack.down(log=lambda _: None)
    out: dict[str, Any] = {}
    for side, (_, index) in SERVICES.items():
        start, rss = seen[side]["start"], seen[side]["rss"]
        out[side] = {
            "server": services[index].name,
            "start_to_first_prediction_s": round(statistics.median(start), 2),
            "start_s": {
                "median": round(statistics.median(start), 2),
                "min": round(min(start), 2),
                "max": round(max(start), 2),
            },
            "idle_rss_mb": round(statistics.median(rss), 1),
            "idle_rss": {
                "median": round(statistics.median(rss), 1),
                "min": round(min(rss), 1),
                "max": round(max(rss), 1),
            },
            "start_samples_s": [round(x, 3) for x in start],  # one per start: what the verdict's interval resamples
            "idle_rss_samples_mb": [round(x, 1) for x in rss],
            "memory_read_as": how.get(side, ""),
            "artifact_mb": round(_dir_bytes(artifacts[side]) / 2**20, 3),
            "artifact": str(artifacts[side].relative_to(cfg.mar_path.parent.parent)),
            "starts": len(start),
        }
    return out
