"""CPU time and memory of whole process trees (TorchServe = CLI + JVM + workers), sampled with psutil.

CPU seconds are read at the start and the end of a run (user + system of every live process in the tree, plus what
reaped children used); the peak RSS of each tree is sampled every `interval_s` in a thread. CPU per request is the
figure that stays meaningful on a shared, noisy machine, where wall-clock throughput does not.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import psutil


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for i, proc in enumerate(tree(pid)):
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system
            if i == 0:
                total += t.children_user + t.children_system
    return total


def rss_bytes(pid: int) -> int:
    total = 0
    for proc in tree(pid):
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


class TreeMeter:
    """`with TreeMeter({"gateway": pid, ...}) as meter: ...` then `meter.result` per name: cpu_s, peak_rss_mb."""

    def __init__(self, pids: dict[str, int], interval_s: float = 0.25) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid}
        self.interval_s = interval_s
        self.result: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._peak = dict.fromkeys(self.pids, 0)
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                self._peak[name] = max(self._peak[name], rss_bytes(pid))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> TreeMeter:
        self._start_cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._start_wall = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        end = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        wall = time.perf_counter() - self._start_wall
        self._stop.set()
        self._thread.join(timeout=5)
        for name, pid in self.pids.items():
            self._peak[name] = max(self._peak[name], rss_bytes(pid))
            cpu = max(0.0, end[name] - self._start_cpu[name])
            self.result[name] = {
                "cpu_s": round(cpu, 4),
                "cpu_share": round(cpu / wall, 3) if wall else None,  # of one core
                "peak_rss_mb": round(self._peak[name] / 2**20, 1),
            }
