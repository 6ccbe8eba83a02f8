"""A Docker engine to talk to: the running one, or (Linux, root, dockerd installed) one started here and stopped
afterwards; and the compose CLI that is present (`docker compose`, else Debian's `docker-compose` v1)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


class Unavailable(RuntimeError):
    """No engine can be had here; the message says why."""


def _ok(*cmd: str, timeout: float = 20) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def engine_running() -> bool:
    return shutil.which("docker") is not None and _ok("docker", "info")


def compose_cli() -> list[str]:
    """`docker compose` (v2 plugin) where present, else `docker-compose` (v1)."""
    if shutil.which("docker") and _ok("docker", "compose", "version"):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise Unavailable("no compose CLI: neither `docker compose` nor `docker-compose` is installed")


def why_no_engine() -> str | None:
    """None when an engine is running or can be started here; else the reason."""
    if engine_running():
        return None
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "no Docker engine is running, and starting one needs Linux and root"
    if shutil.which("dockerd") is None:
        return "no Docker engine is running and dockerd is not installed"
    return None


@contextlib.contextmanager
def docker_engine(log_path: Path, start_timeout_s: float = 60) -> Iterator[bool]:
    """Yields True when this started dockerd (and stops it on the way out), False when one was already running."""
    reason = why_no_engine()
    if reason:
        raise Unavailable(reason)
    if engine_running():
        yield False
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + start_timeout_s
        while not engine_running():
            if proc.poll() is not None:
                raise Unavailable(f"dockerd exited with status {proc.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise Unavailable(f"dockerd did not answer within {start_timeout_s:.0f} s; see {log_path}")
            time.sleep(0.5)
        print(f"== started dockerd (pid {proc.pid}); it stops when this run ends", flush=True)
        yield True
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
