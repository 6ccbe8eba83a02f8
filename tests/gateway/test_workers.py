"""GATEWAY_WORKERS: several gateway processes on one port, their metrics summed whichever answers the scrape."""

from __future__ import annotations

import glob
import os
import re
import signal
import tempfile

import httpx
import psutil
import pytest

from tests.conftest import gateway_process, tf_stand_in

REQUESTS = 40


@pytest.fixture
def upstream():  # type: ignore[no-untyped-def]
    with tf_stand_in(winner=9) as url:
        yield url


def _served(text: str) -> float:
    pattern = r'gateway_requests_total\{backend="tf",route="/predict/tf",status="200"\} ([0-9.e+]+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_two_workers_serve_one_port_and_metrics_count_every_request(upstream, test_rows) -> None:  # type: ignore[no-untyped-def]
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "gateway-metrics-*")))
    env = {"GATEWAY_TF_URL": upstream, "GATEWAY_MODELS": "", "GATEWAY_WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": ""}
    with gateway_process(env) as (proc, base):
        workers = [c for c in psutil.Process(proc.pid).children() if "multiprocessing" in " ".join(c.cmdline())]
        assert len([w for w in workers if "resource_tracker" not in " ".join(w.cmdline())]) == 2
        for _ in range(REQUESTS):  # a new connection each: the kernel hands them to either worker
            r = httpx.post(f"{base}/predict/tf", json={"instances": test_rows[:1]}, timeout=10)
            assert r.status_code == 200 and r.json()["labels"] == [9], r.text
        # Every scrape, on a new connection and so from either worker, counts all of them: not one worker's share.
        scrapes = [_served(httpx.get(f"{base}/metrics", timeout=5).text) for _ in range(10)]
        assert scrapes == [REQUESTS] * 10, scrapes
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    left = set(glob.glob(os.path.join(tempfile.gettempdir(), "gateway-metrics-*"))) - before
    assert not left, f"the workers' metrics dir was left behind: {left}"
