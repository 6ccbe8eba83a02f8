"""Meters of a deployment's parts: a cgroup v2 group or, where none could be made, a process tree (native; what
each sees: loadtest/measure/processes.py), a container's cgroup or the engine's stats API (compose). Each reads
cumulative CPU seconds and memory now; a window's cost is the difference of two readings."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import httpx
import psutil

from stack.cgroups import Cgroup, pss_bytes
from stack.deployments.base import Meter

CGROUP_ROOT = Path("/sys/fs/cgroup")
DOCKER_SOCKET = "/var/run/docker.sock"


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


def cgroup_dirs(pid: int, root: Path = CGROUP_ROOT) -> dict[str, Path]:
    """A process's cgroup directories from /proc/<pid>/cgroup: {"v2": dir} on a unified host, {"cpuacct": dir,
    "memory": dir} on cgroup v1 (Docker's cgroupfs driver: /sys/fs/cgroup/cpuacct/docker/<id>)."""
    out: dict[str, Path] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers == "":
            out.setdefault("v2", root / rel if (root / "cgroup.controllers").exists() else root / "unified" / rel)
        for c in controllers.split(","):
            if c in ("cpuacct", "memory"):
                named = next((d for d in (root / c, root / controllers) if d.exists()), root / c)
                out[c] = named / rel
    return out


class ContainerCgroup:
    """A container's own cgroup, as the kernel counts it: every process in the container, whatever its parent."""

    def __init__(self, name: str, dirs: dict[str, Path]) -> None:
        self.name = name
        self.dirs = dirs
        self.v1 = "cpuacct" in dirs and (dirs["cpuacct"] / "cpuacct.usage").exists()
        if not self.v1 and not (dirs.get("v2") and (dirs["v2"] / "cpu.stat").exists()):
            raise FileNotFoundError(f"{name}: no readable cgroup ({dirs})")
        self.how = "container cgroup v1 (cpuacct.usage, memory.usage_in_bytes)" if self.v1 else (
            "container cgroup v2 (cpu.stat usage_usec, memory.current)")  # fmt: skip

    def cpu_seconds(self) -> float:
        if self.v1:
            return int((self.dirs["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
        return cpu_stat_seconds((self.dirs["v2"] / "cpu.stat").read_text())

    def memory_bytes(self) -> int:
        path = self.dirs["memory"] / "memory.usage_in_bytes" if self.v1 else self.dirs["v2"] / "memory.current"
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            return 0

    def spec(self) -> str:
        return f"cgroup:{self.dirs.get('v2') or self.dirs['cpuacct']}"


def cpu_stat_seconds(text: str) -> float:
    """cgroup v2 cpu.stat's usage_usec in seconds."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    raise ValueError("cpu.stat has no usage_usec")


class EngineStats:
    """The Docker engine's stats API (GET /containers/<id>/stats): where the container's cgroup is not readable
    from here (a remote engine, Docker Desktop's VM). cpu_stats.cpu_usage.total_usage is in nanoseconds."""

    how = "Docker engine stats API (cpu_usage.total_usage, memory usage)"

    def __init__(self, container_id: str, socket: str = DOCKER_SOCKET) -> None:
        self.id = container_id
        self.socket = socket

    def _stats(self) -> dict[str, Any]:
        transport = httpx.HTTPTransport(uds=self.socket)
        with httpx.Client(transport=transport, base_url="http://docker", timeout=10) as client:
            r = client.get(f"/containers/{self.id}/stats", params={"stream": "false", "one-shot": "true"})
            r.raise_for_status()
            return dict(json.loads(r.text))

    def cpu_seconds(self) -> float:
        return float(self._stats()["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9

    def memory_bytes(self) -> int:
        return int(self._stats().get("memory_stats", {}).get("usage", 0))

    def spec(self) -> str:
        return f"docker-stats:{self.id}"
