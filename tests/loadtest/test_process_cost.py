"""Process cost from the kernel: known answers for the cgroup meter and the psutil fallback, and no cgroup outlives
the stack that made it. Real processes: a parent that starts a child that starts a grandchild burning 0.5 s."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from loadtest.measure.processes import GroupMeter, Meter, ProcessTree, meter_for, rss_bytes, tree
from stack import cgroups
from stack.launcher import NativeStack, Service

BURN_S = 0.5
BURN = (
    f"import os, time\nt = time.process_time()\nwhile time.process_time() - t < {BURN_S}: pass\n"
    "print(os.getpid(), flush=True)"
)

needs_cgroups = pytest.mark.skipif(cgroups.hierarchy() is None, reason="no writable cgroup2 hierarchy here")


def _family(orphan: bool) -> list[str]:
    """A parent that starts a child that starts the grandchild (which burns BURN_S of CPU, says 'done' and exits).
    orphan=False: the child waits for the grandchild (reaps it) and lives on. orphan=True: the child exits at once,
    so the grandchild is reparented out of the tree (to init or a subreaper) and dies there."""
    grandchild = f"subprocess.{'Popen' if orphan else 'run'}([sys.executable, '-c', {BURN!r}])"
    child = f"import subprocess, sys, time\n{grandchild}\n" + ("" if orphan else "time.sleep(60)\n")
    parent = f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {child!r}])\ntime.sleep(60)"
    return [sys.executable, "-c", parent]


def _burnt(cmd: list[str], meter_of: Callable[[int], Meter], preexec: Callable[[], None] | None = None) -> float:
    """CPU the meter saw between the family's start and the grandchild's end (it prints its pid on the shared
    stdout when it has burnt its share; then it exits and is reaped, by its parent or by whoever adopted it)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, preexec_fn=preexec)
    try:
        meter = meter_of(proc.pid)
        before = meter.cpu_seconds()
        assert proc.stdout is not None
        grandchild = int(proc.stdout.readline())
        _until(lambda: not psutil.pid_exists(grandchild))  # exited and reaped
        return float(meter.cpu_seconds() - before)
    finally:
        _kill_tree(proc)


@needs_cgroups
@pytest.mark.parametrize("orphan", [False, True], ids=["reaped-by-its-parent", "orphaned"])
def test_the_cgroup_meter_sees_a_grandchilds_cpu(orphan: bool) -> None:
    """The grandchild's 0.5 s are in the group however it ends: reaped by its own parent, or orphaned out of the
    tree (psutil's tree under the root can never see that one)."""
    group = cgroups.Cgroup.create(f"test-grandchild-{os.getpid()}-{orphan}")
    assert group is not None
    try:
        seen = _burnt(_family(orphan), lambda _pid: GroupMeter(group.path), preexec=group.enter)
    finally:
        group.remove()
    assert seen >= 0.95 * BURN_S, seen
    assert not group.path.exists()


def test_the_psutil_fallback_sees_a_grandchild_reaped_by_its_own_parent() -> None:
    """Without a cgroup: the grandchild's CPU is in its parent's children times, which the fallback reads for every
    process of the tree (the old meter read them for the root only, and saw ~0 here)."""
    seen = _burnt(_family(orphan=False), ProcessTree)
    assert seen >= 0.95 * BURN_S, seen


def test_memory_is_pss_or_the_groups_charge_not_summed_rss() -> None:
    """Two processes sharing most of their pages (a fork): summed RSS counts the shared pages twice, PSS once."""
    code = "import os, time\nb = bytearray(64 * 2**20)\nos.fork()\ntime.sleep(60)"  # 64 MB touched, then shared
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        _until(lambda: len(tree(proc.pid)) >= 2)  # the fork happened
        pss, rss = meter_for(proc.pid).memory_bytes(), rss_bytes(proc.pid)
    finally:
        _kill_tree(proc)
    assert rss > 1.6 * 64 * 2**20 and pss < 0.75 * rss, (pss, rss)


@needs_cgroups
def test_each_service_runs_in_its_own_group_and_no_group_outlives_the_stack(tmp_path: Path) -> None:
    """The launcher puts a service's whole tree in a group before it execs; `down` stops it, kills what escaped the
    process group (a grandchild in its own session) and removes the group."""
    escape = "import os, time\nos.setsid()\ntime.sleep(60)"  # out of the service's process group
    code = f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {escape!r}])\ntime.sleep(60)"
    stack = NativeStack(run_dir=tmp_path / "run")
    svc = Service("gateway", [sys.executable, "-c", code], "http://127.0.0.1:1", {}, lambda: (True, ""))
    proc = stack._spawn(svc, lambda _: None)
    group = cgroups.Cgroup(Path(proc.cgroup))
    try:
        assert proc.cgroup and proc.pid in group.pids()
        _until(lambda: len(group.pids()) >= 2)  # the escaping grandchild joined the group as it started
        members = group.pids()
    finally:
        stack.down(log=lambda _: None)
    assert not group.path.exists(), group.path
    assert not [p for p in members if Path(f"/proc/{p}").exists() and _not_zombie(p)], members


def _until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _kill_tree(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """The test's own processes, by pid: the parent's descendants, then the parent."""
    for p in tree(proc.pid)[1:]:
        with contextlib.suppress(psutil.Error):
            p.kill()
    proc.kill()
    proc.wait()


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1] != "Z"
    except OSError:
        return False
