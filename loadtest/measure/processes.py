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
from typing import Any

import psutil

from stack.deployments.base import Meter
from stack.deployments.meters import GroupMeter, ProcessTree, cpu_seconds, meter_for, open_meter, rss_bytes, tree

# The meters live with the deployments that hand them out (stack/deployments/meters.py); TreeMeter, the reading
# around a block where no driver reads its own windows, is this module's own.
__all__ = ["GroupMeter", "Meter", "ProcessTree", "TreeMeter", "cpu_seconds", "meter_for", "open_meter", "rss_bytes",
           "tree"]  # fmt: skip


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
