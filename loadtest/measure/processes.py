"""CPU time and memory of a measured part (a server's process tree, the gateway, the load generator).

Two meters, one interface: `cpu_seconds()` (cumulative, read at the instants a window starts and ends) and
`memory_bytes()` (now). `spec()` names a meter in a string another process can open again (`open_meter`), so the
load generator reads the servers' meters at the very instants its windows start and end.

- `GroupMeter`, the kernel's count: the part's cgroup v2 group (stack/cgroups.py, which the launcher puts every
  server's process tree in before it execs). CPU is cpu.stat's usage_usec: every process that was ever in the group,
  a grandchild reaped by its own parent or an orphan included. Memory is the group's charge (memory.current) where
  the memory controller is enabled, else the PSS of the group's processes.
- `ProcessTree`, the fallback where no group could be made: psutil over the tree under the root pid at each reading.
  CPU per live process is its own user + system *plus its children_* times* (what its reaped children used), for
  every process of the tree, not the root alone: a grandchild that exits and is reaped by its own parent is counted
  in that parent's children times, and the sum over the tree is conserved when a process dies and is reaped inside
  the tree. What it cannot see: a descendant orphaned to a reaper outside the tree (a double fork), and a zombie's
  time until it is reaped. Memory is the PSS summed over the tree (shared pages split, not counted twice as RSS).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import psutil

from stack.cgroups import Cgroup, pss_bytes


class Meter(Protocol):
    how: str

    def cpu_seconds(self) -> float: ...

    def memory_bytes(self) -> int: ...

    def spec(self) -> str: ...


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def cpu_seconds(pid: int) -> float:
    """The tree's CPU: every live process's own time and its reaped children's (see the module's docstring)."""
    total = 0.0
    for proc in tree(pid):
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def rss_bytes(pid: int) -> int:
    """Summed RSS (a shared page counts in every process that maps it): kept for a quick look, not for figures."""
    total = 0
    for proc in tree(pid):
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


class ProcessTree:
    how = "psutil over the process tree (CPU incl. reaped children; PSS)"

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def memory_bytes(self) -> int:
        return pss_bytes([p.pid for p in tree(self.pid)])

    def spec(self) -> str:
        return f"pid:{self.pid}"


class GroupMeter:
    def __init__(self, path: str | Path) -> None:
        self.group = Cgroup(Path(path))
        self.how = "cgroup v2 cpu.stat; " + (
            "memory.current" if (self.group.path / "memory.current").exists() else "PSS of the group's processes"
        )

    def cpu_seconds(self) -> float:
        return self.group.cpu_seconds()

    def memory_bytes(self) -> int:
        return self.group.memory_bytes()[0]

    def spec(self) -> str:
        return f"cgroup:{self.group.path}"


def meter_for(pid: int, cgroup: str = "") -> Meter:
    """The kernel's meter where the part has a group, else psutil's over its tree."""
    return GroupMeter(cgroup) if cgroup else ProcessTree(pid)


def open_meter(spec: str) -> Meter:
    kind, _, value = spec.partition(":")
    if kind == "cgroup":
        return GroupMeter(value)
    if kind == "pid":
        return ProcessTree(int(value))
    raise ValueError(f"not a meter: {spec!r} (cgroup:<path> or pid:<pid>)")


class TreeMeter:
    """`with TreeMeter({"gateway": pid or meter, ...}) as m: ...` then `m.result` per name: cpu_s, cpu_share,
    peak_memory_mb (PSS or cgroup memory, sampled every `interval_s`) and how it was read. CPU is read as the block
    starts and ends: use it where no driver reports its own window (the sweep's windows read the meters themselves,
    loadtest/drive/windows.py)."""

    def __init__(self, parts: Mapping[str, int | Meter], interval_s: float = 0.25) -> None:
        self.meters: dict[str, Meter] = {
            name: ProcessTree(p) if isinstance(p, int) else p for name, p in parts.items() if p
        }
        self.interval_s = interval_s
        self.result: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._peak = dict.fromkeys(self.meters, 0)
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._read_memory()
            self._stop.wait(self.interval_s)

    def _read_memory(self) -> None:
        for name, meter in self.meters.items():
            with contextlib.suppress(OSError, psutil.Error):
                self._peak[name] = max(self._peak[name], meter.memory_bytes())

    def _cpu(self) -> dict[str, float]:
        out = {}
        for name, meter in self.meters.items():
            with contextlib.suppress(OSError, psutil.Error):
                out[name] = meter.cpu_seconds()
        return out

    def __enter__(self) -> TreeMeter:
        self._start_cpu = self._cpu()
        self._start_wall = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        end = self._cpu()
        wall = time.perf_counter() - self._start_wall
        self._stop.set()
        self._thread.join(timeout=5)
        self._read_memory()
        for name, meter in self.meters.items():
            cpu = max(0.0, end.get(name, 0.0) - self._start_cpu.get(name, 0.0))
            self.result[name] = {
                "cpu_s": round(cpu, 4),
                "cpu_share": round(cpu / wall, 3) if wall else None,  # of one core
                "peak_memory_mb": round(self._peak[name] / 2**20, 1),
                "peak_rss_mb": round(self._peak[name] / 2**20, 1),  # the old name (now PSS or cgroup memory)
                "how": meter.how,
            }
