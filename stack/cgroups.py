"""One cgroup v2 per process tree, so the kernel counts its CPU and memory: every descendant a process ever starts
is in its group, even one reaped by its own parent or orphaned (psutil, reading the tree now and then, loses those).

    group = Cgroup.create("stack-1a2b3c-torchserve")   # None where no writable cgroup2 hierarchy exists
    subprocess.Popen(cmd, preexec_fn=group.enter)       # the child joins before it execs: its whole tree with it
    group.cpu_seconds(); group.memory_bytes()          # cpu.stat usage_usec; memory.current (or the PSS of its
    group.remove()                                      #   processes where the memory controller is not enabled)

Groups live under `<cgroup2 mount>/servecompare/`; `remove` kills what is left in a group and deletes it, so none
outlives the stack or the run that made it. Needs write access to the hierarchy (root, or a delegated subtree).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

PARENT = "servecompare"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def hierarchy() -> Path | None:
    """The writable cgroup2 mount: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        sep = fields.index("-") if "-" in fields else -1
        if sep > 0 and fields[sep + 1] == "cgroup2":
            mount = Path(fields[4])
            if os.access(mount, os.W_OK) and (mount / "cgroup.procs").exists():
                return mount
    return None


class Cgroup:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, name: str) -> Cgroup | None:
        """A fresh group called `name` (made safe for a path), or None where cgroups can't be made here."""
        mount = hierarchy()
        if mount is None:
            return None
        parent = mount / PARENT
        path = parent / _SAFE.sub("-", name)
        for _ in range(3):  # another run may remove the (then empty) parent between our two mkdirs
            try:
                parent.mkdir(exist_ok=True)
                _enable_controllers(parent)
                if path.exists():  # a group of a run that died without cleaning up: start afresh
                    cls(path).remove(keep_parent=True)
                path.mkdir()
                return cls(path)
            except FileNotFoundError:
                continue
            except OSError:
                return None
        return None

    def enter(self) -> None:
        """Move the calling process into the group (a Popen preexec_fn: the child joins before it execs)."""
        (self.path / "cgroup.procs").write_text("0")

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of every process that has ever been in the group, exited ones included."""
        v1 = self.path / "cpuacct.usage"  # a cgroup v1 cpuacct group (a container's, on a hybrid host): ns
        if v1.exists():
            return int(v1.read_text()) / 1e9
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
        raise OSError(f"no usage_usec in {self.path / 'cpu.stat'}")

    def memory_bytes(self) -> tuple[int, str]:
        """The group's memory now and how it was read: the kernel's charge (memory.current) where the memory
        controller is on; else the proportional set size of its processes (shared pages split, not summed twice)."""
        current = self.path / "memory.current"
        if current.exists():
            return int(current.read_text()), "cgroup memory.current"
        return pss_bytes(self.pids()), "PSS of the group's processes"

    def memory_peak_bytes(self) -> int | None:
        """The kernel's high-water mark since the group was made (memory controller only)."""
        peak = self.path / "memory.peak"
        return int(peak.read_text()) if peak.exists() else None

    def remove(self, timeout_s: float = 5.0, keep_parent: bool = False) -> None:
        """Kill whatever is still in the group (cgroup.kill), wait until it is empty, delete it."""
        if not self.path.exists():
            return
        kill = self.path / "cgroup.kill"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pids():
                with contextlib.suppress(OSError):
                    if kill.exists():
                        kill.write_text("1")
                    else:  # kernels before 5.14
                        for pid in self.pids():
                            os.kill(pid, 9)
            else:
                try:
                    self.path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY: a task that has just exited is still leaving the group
                    pass
            time.sleep(0.02)
        if not keep_parent:
            with contextlib.suppress(OSError):  # the parent too, once no run uses it (else: EBUSY, kept)
                self.path.parent.rmdir()

    def __repr__(self) -> str:
        return f"Cgroup({str(self.path)!r})"


def _enable_controllers(parent: Path) -> None:
    """Best effort: the memory and cpu controllers for the groups under `parent`, where the system gives them to
    it (nothing above is changed; on a hybrid host the memory controller belongs to cgroup v1, and memory is then
    read as PSS). CPU time needs no controller: every cgroup v2 group has cpu.stat's usage_usec."""
    available = (parent / "cgroup.controllers").read_text().split()
    for ctl in ("memory", "cpu"):
        if ctl in available:
            with contextlib.suppress(OSError):
                (parent / "cgroup.subtree_control").write_text(f"+{ctl}")


def pss_bytes(pids: list[int]) -> int:
    """Sum of the processes' PSS (smaps_rollup): a page shared by n of them counts 1/n in each."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:  # gone, or a kernel thread
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1]) * 1024
                break
    return total


def leftovers() -> list[Path]:
    """Groups under servecompare/ that still exist (a test checks none outlive a stack)."""
    mount = hierarchy()
    parent = mount / PARENT if mount else None
    return sorted(p for p in parent.iterdir() if p.is_dir()) if parent and parent.exists() else []


def preexec(group: Cgroup | None, then: Callable[[], None] | None = None) -> Callable[[], None] | None:
    """A Popen preexec_fn that puts the child in `group` (if any; a failure leaves it outside, see `confirmed`) and
    then runs `then`."""
    if group is None:
        return then

    def run() -> None:
        with contextlib.suppress(OSError):
            group.enter()
        if then is not None:
            then()

    return run


def confirmed(group: Cgroup | None, pid: int) -> str:
    """The group's path if `pid` really is in it, else "" (the group is removed: its meter would read nothing)."""
    if group is None:
        return ""
    if pid in group.pids():
        return str(group.path)
    group.remove()
    return ""
