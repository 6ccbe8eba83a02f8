"""Nothing orphaned: signals that stop the commands that start servers, servers that die with their owner, and a
registry of this checkout's stacks so `python -m stack down` finds them wherever their run dir is.

- `stop_on_signals()`: SIGTERM and SIGHUP (a CI time-out, `kill`, a closed terminal) raise KeyboardInterrupt in the
  main thread, as Ctrl-C does, so the `finally` that stops the stack runs.
- `die_with_parent()`: a `preexec_fn` that asks the kernel to SIGTERM the child when its parent dies, so even a
  SIGKILLed bench leaves nothing running (not used for `stack up --detach`, whose servers outlive the command).
- The registry: one small JSON file per running stack under `.run/registry/` (or $SERVECOMPARE_REGISTRY).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stack.config import ROOT

PR_SET_PDEATHSIG = 1


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise KeyboardInterrupt once (a second one is ignored while stopping)."""
    stopping = False

    def handler(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def die_with_parent() -> None:
    """preexec_fn (Linux): SIGTERM this child when the process that started it dies, however it dies."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


# ---- the registry of this checkout's stacks -----------------------------------------------------------------------
def registry_dir() -> Path:
    return Path(os.environ.get("SERVECOMPARE_REGISTRY") or ROOT / ".run" / "registry")


def _entry(run_dir: Path) -> Path:
    return registry_dir() / (hashlib.sha1(str(run_dir).encode()).hexdigest()[:16] + ".json")


def register(run_dir: Path, ports: dict[str, int]) -> None:
    path = _entry(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_dir": str(run_dir), "owner_pid": os.getpid(), "ports": ports}))


def unregister(run_dir: Path) -> None:
    _entry(run_dir).unlink(missing_ok=True)


def registered() -> list[dict[str, Any]]:
    """Every stack this checkout recorded as started and not yet stopped (some may have died since)."""
    out = []
    for path in sorted(registry_dir().glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            out.append(json.loads(path.read_text()))
    return out
