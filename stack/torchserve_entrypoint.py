"""Run TorchServe in a container so that it stops on SIGTERM within seconds and the container ends when it dies.

`torchserve --foreground` is a Python CLI that starts the Java frontend (which starts the Python workers) and
waits: it installs no signal handler, so as PID 1 (Kubernetes) it ignores SIGTERM until the grace period's
SIGKILL, and killed any other way it leaves the JVM running. The vendor image's own entrypoint ends in
`tail -f /dev/null`, so a dead JVM leaves the container "Up". This wrapper (stdlib only, mounted into the vendor
image by compose and k8s) starts the CLI in its own process group, forwards SIGTERM/SIGINT to the whole group,
SIGKILLs what is left after a grace, and exits with the server's status when the server exits on its own.

    python torchserve_entrypoint.py [--grace SECONDS] [--same-group] -- torchserve --start --foreground ...
    python torchserve_entrypoint.py --ready [MANAGEMENT_URL]   # health check: exit 0 when every loaded model
                                                               # has a READY worker (/ping is Healthy before that)

`--same-group` (the native launcher): TorchServe stays in this wrapper's process group, so whoever stops the group
(SIGTERM, then SIGKILL) reaches every TorchServe process even if this wrapper is killed first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

GRACE_S = 8.0


def _group_alive(pgid: int) -> bool:
    """Any process of the group other than this wrapper (which may be a member) and zombies."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _stop_group(pgid: int, grace: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # our own group signal must not interrupt the stop
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(pgid):
        _reap()
        time.sleep(0.05)
    if _group_alive(pgid):
        print(f"[entrypoint] TorchServe did not stop in {grace:.0f}s: SIGKILL", file=sys.stderr, flush=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _reap() -> None:
    """As PID 1 we inherit orphans (the JVM once the CLI is gone): reap them so they don't linger as zombies."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def ready(management: str = "http://127.0.0.1:8081") -> tuple[bool, str]:
    """Every model TorchServe was configured to load (its management API's list) has a READY worker."""
    import json
    import urllib.request

    def get(path: str) -> object:
        with urllib.request.urlopen(f"{management}{path}", timeout=2) as resp:
            return json.load(resp)

    try:
        listed = get("/models")
        names = [m["modelName"] for m in listed["models"]]  # type: ignore[index]
        if not names:
            return False, "no model loaded"
        for name in names:
            workers = [w["status"] for m in get(f"/models/{name}") for w in m["workers"]]  # type: ignore[attr-defined]
            if "READY" not in workers:
                return False, f"{name}: workers {workers}"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, f"ready: {', '.join(names)}"


def main(argv: list[str]) -> int:
    if argv[:1] == ["--ready"]:
        ok, why = ready(*argv[1:2])
        print(why)
        return 0 if ok else 1
    grace, same_group = GRACE_S, False
    while argv[:1] in (["--grace"], ["--same-group"]):
        if argv[0] == "--grace":
            grace, argv = float(argv[1]), argv[2:]
        else:
            same_group, argv = True, argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    server = subprocess.Popen(argv, start_new_session=not same_group)
    pgid = os.getpgid(0) if same_group else server.pid
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    while server.poll() is None and not stopping:
        time.sleep(0.1)
    if stopping:
        print(f"[entrypoint] signal {stopping[0]}: stopping TorchServe", file=sys.stderr, flush=True)
    else:
        print(f"[entrypoint] TorchServe exited ({server.returncode}): stopping", file=sys.stderr, flush=True)
    _stop_group(pgid, grace)  # also when the CLI exited on its own: its JVM and workers go with it
    server.wait()
    _reap()
    return 0 if stopping else (server.returncode or 1)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
