"""The native stack: TF Serving (or the compatible server), TorchServe and the gateway as local processes.

Every process starts in its own session (process group), is recorded in `<run dir>/stack.json`, and is stopped
by group (SIGTERM, then SIGKILL) on `down`, on Ctrl-C and when any part fails, so nothing is left behind.
Logs, pid files and temp files live under the run dir, never in the source tree.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from export import serving_config
from stack import cgroups, lifecycle
from stack.config import ROOT, TORCH_MODEL_STORE, StackConfig
from stack.registry import ModelSpec, load_registry
from stack.tfserving_compat import DISPLAY_NAME as COMPAT_NAME

BIN = Path(sys.executable).parent
STATE_FILE = "stack.json"
TF_BINARY = "tensorflow_model_server"


class StackError(RuntimeError):
    """The stack could not start (or stop): the message says what to do."""


@dataclass
class Proc:
    name: str
    pid: int
    log: str
    url: str
    cgroup: str = ""  # the cgroup v2 group holding its whole process tree ("" where none could be made)


@dataclass
class Service:
    name: str
    cmd: list[str]
    url: str
    ports: dict[str, int]
    ready: Callable[[], tuple[bool, str]]
    env: dict[str, str] = field(default_factory=dict)


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


PORT_KEYS = (
    "TF_REST_PORT",
    "TF_GRPC_PORT",
    "TS_INFERENCE_PORT",
    "TS_MANAGEMENT_PORT",
    "TS_METRICS_PORT",
    "TS_GRPC_INFERENCE_PORT",
    "TS_GRPC_MANAGEMENT_PORT",
    "GATEWAY_PORT",
)


def free_port_overrides(host: str = "127.0.0.1") -> dict[str, str]:
    """Every port setting mapped to a distinct free port on `host`: a stack beside the default one (tests, the
    benchmark's start-up measurement)."""
    ports: dict[str, str] = {}
    while len(set(ports.values())) < len(PORT_KEYS):
        ports = {k: str(free_port(host)) for k in PORT_KEYS}
    return ports


def short_temp_dir(run_dir: Path) -> Path:
    """TorchServe's temp dir for a stack: its workers' Unix sockets live there (`.ts.sock.9000`), and a socket path
    longer than 107 bytes can't be bound: the worker dies at start ("Backend stream closed") and TorchServe retries
    forever. A run dir deep in a tree (pytest's tmp_path) is too long, so: a short one, named after the run dir
    (made when TorchServe's service is built, removed by `down`)."""
    return Path(tempfile.gettempdir()) / f"servecompare-ts-{_digest(run_dir)}"


def _digest(run_dir: Path) -> str:
    return hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:12]


def tf_server_kind() -> str:
    """'tensorflow_model_server' (the real TF Serving) when on PATH, else the compatible server."""
    return TF_BINARY if shutil.which(TF_BINARY) else "tfserving-compat"


def _probe(fn: Callable[[], tuple[bool, str]]) -> tuple[bool, str]:
    try:
        return fn()
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
        return False, f"{type(exc).__name__}: {exc}"


class NativeStack:
    """`owned` (the default): the servers die with the process that starts them, even a SIGKILLed one (the kernel
    SIGTERMs them). `stack up --detach` passes owned=False: its servers must outlive the command."""

    def __init__(
        self,
        cfg: StackConfig | None = None,
        run_dir: Path | None = None,
        gateway_env: dict[str, str] | None = None,
        owned: bool = True,
        models: list[ModelSpec] | None = None,
    ) -> None:
        self.cfg = cfg or StackConfig.load()
        # The served models: the registry's (its default first), or those given (the bench: the one it measures).
        self.models = models or load_registry()
        self.gateway_env = gateway_env or {}
        self.owned = owned
        self.run_dir = Path(run_dir or os.environ.get("SERVECOMPARE_RUN_DIR") or ROOT / ".run").resolve()
        self.state_path = self.run_dir / STATE_FILE

    # ---- the three services -------------------------------------------------------------------------------
    def _tf_service(self) -> Service:
        cfg, conf = self.cfg, self.run_dir / "conf"
        models_config = conf / "models.config"
        models_config.write_text(serving_config.tf_models_config(self.models, base_path=None))
        args = [
            f"--port={cfg.tf_grpc_port}",
            f"--rest_api_port={cfg.tf_rest_port}",
            f"--model_config_file={models_config}",
            f"--monitoring_config_file={serving_config.TF_MONITORING_CONFIG}",
            f"--tensorflow_intra_op_parallelism={cfg.runtime_threads}",
            f"--tensorflow_inter_op_parallelism={cfg.runtime_threads}",
        ]
        if cfg.tf_batching:
            batching = conf / "batching.config"
            batching.write_text(serving_config.tf_batching_config(cfg.tf_max_batch_size, cfg.tf_batch_timeout_micros))
            args += ["--enable_batching=true", f"--batching_parameters_file={batching}"]
        if tf_server_kind() == TF_BINARY:
            cmd = [shutil.which(TF_BINARY) or TF_BINARY, *args]
            name = "tf-serving"
        else:
            cmd = [
                sys.executable,
                "-m",
                "stack.tfserving_compat",
                *args,
                f"--rest_api_bind_address={cfg.host}",
                f"--grpc_bind_address={cfg.host}",
            ]
            name = "tfserving-compat"

        names = [m.name for m in self.models]

        def ready() -> tuple[bool, str]:
            seen = {}
            for name in names:
                r = httpx.get(f"{cfg.tf_rest_url}/v1/models/{name}", timeout=2)
                ok = r.status_code == 200
                seen[name] = [s["state"] for s in r.json().get("model_version_status", [])] if ok else r.status_code
            return all(isinstance(s, list) and "AVAILABLE" in s for s in seen.values()), f"model status {seen}"

        return Service(
            name,
            cmd,
            cfg.tf_rest_url,
            {"TF_REST_PORT": cfg.tf_rest_port, "TF_GRPC_PORT": cfg.tf_grpc_port},
            ready,
            {"TF_CPP_MIN_LOG_LEVEL": "2"},
        )

    def _torchserve_service(self) -> Service:
        cfg = self.cfg
        names = [m.name for m in self.models]
        ts_dir = self.run_dir / "torchserve"
        (ts_dir / "logs").mkdir(parents=True, exist_ok=True)
        ts_tmp = short_temp_dir(self.run_dir)
        ts_tmp.mkdir(parents=True, exist_ok=True)  # removed by down()
        # The served models' archives, wherever the registry keeps them, in one model store of this run.
        store = ts_dir / "model-store"
        shutil.rmtree(store, ignore_errors=True)
        store.mkdir(parents=True)
        for m in self.models:
            (store / m.mar.name).symlink_to(m.mar)
        config = self.run_dir / "conf" / "config.properties"
        config.write_text(
            serving_config.ts_config_properties(
                cfg, self.models, model_store=str(store), log4j=str(TORCH_MODEL_STORE / "log4j2.xml")
            )
        )
        # Under the container entrypoint, in its process group: a SIGTERM to the group (or to the wrapper alone, from a
        # dying parent) stops the CLI, the JVM and the workers; the CLI alone would leave the JVM running.
        cmd = [
            sys.executable,
            str(ROOT / "stack" / "torchserve_entrypoint.py"),
            "--same-group",
            "--",
            str(BIN / "torchserve"),
            "--start",
            "--foreground",
            "--ncs",
            "--disable-token-auth",
            "--model-store",
            str(store),
            "--ts-config",
            str(config),
        ]
        env = {
            "LOG_LOCATION": str(ts_dir / "logs"),
            "TORCHSERVE_LOG_TARGET": "ts_log",  # models/torch/log4j2.xml: a file here, stdout in containers
            "METRICS_LOCATION": str(ts_dir / "logs"),
            "DIGITS_TORCH_THREADS": str(cfg.runtime_threads),  # the handler's torch.set_num_threads
            "TEMP": str(ts_tmp),
            "TMPDIR": str(ts_tmp),  # TorchServe keeps its pid file and its workers' Unix sockets in the temp dir
        }

        def ready() -> tuple[bool, str]:
            seen = {}
            for name in names:
                r = httpx.get(f"{cfg.ts_management_url}/models/{name}", timeout=2)
                ok = r.status_code == 200
                seen[name] = [w["status"] for m in r.json() for w in m.get("workers", [])] if ok else r.status_code
            return all(isinstance(s, list) and "READY" in s for s in seen.values()), f"workers {seen}"

        ports = {
            "TS_INFERENCE_PORT": cfg.ts_inference_port,
            "TS_MANAGEMENT_PORT": cfg.ts_management_port,
            "TS_METRICS_PORT": cfg.ts_metrics_port,
            "TS_GRPC_INFERENCE_PORT": cfg.ts_grpc_inference_port,
            "TS_GRPC_MANAGEMENT_PORT": cfg.ts_grpc_management_port,
        }
        return Service("torchserve", cmd, cfg.ts_inference_url, ports, ready, env)

    def _gateway_service(self) -> Service:
        cfg = self.cfg
        cmd = [sys.executable, "-m", "gateway", "--host", cfg.host, "--port", str(cfg.gateway_port)]
        env = {
            "GATEWAY_TF_URL": cfg.tf_rest_url,
            "GATEWAY_TF_GRPC_TARGET": f"{cfg.host}:{cfg.tf_grpc_port}",
            "GATEWAY_TORCH_URL": cfg.ts_inference_url,
            "GATEWAY_TORCH_MANAGEMENT_URL": cfg.ts_management_url,
            "GATEWAY_MODEL_NAME": cfg.model_name,
            "GATEWAY_MODELS": ",".join(m.name for m in self.models),  # what the servers here serve, no more
            "GATEWAY_WORKERS": str(cfg.gateway_workers),
            **self.gateway_env,
        }

        def ready() -> tuple[bool, str]:
            r = httpx.get(f"{cfg.gateway_url}/readyz", timeout=3)
            return r.status_code == 200, r.text[:300]

        return Service("gateway", cmd, cfg.gateway_url, {"GATEWAY_PORT": cfg.gateway_port}, ready, env)

    def services(self) -> list[Service]:
        (self.run_dir / "conf").mkdir(parents=True, exist_ok=True)
        return [self._tf_service(), self._torchserve_service(), self._gateway_service()]

    # ---- lifecycle ----------------------------------------------------------------------------------------
    def up(self, timeout: float = 180.0, log: Callable[[str], None] = print) -> list[Proc]:
        if self._live_procs():
            raise StackError(
                f"a stack is already running (state in {self.state_path}): stop it with `python -m stack down`, "
                "or pass --replace"
            )
        for m in self.models:
            for path in (m.tf_version_dir / "saved_model.pb", m.mar):
                if not path.exists():
                    hint = "run `python -m export` first" if m.builtin else "see models.toml and the README"
                    raise StackError(f"{path} is missing ({m.name}): {hint}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        services = self.services()
        for svc in services:
            for name, port in svc.ports.items():
                if not port_free(self.cfg.host, port):
                    raise StackError(_port_in_use(self.cfg.host, port, name, svc.name))
        procs: list[Proc] = []
        lifecycle.register(self.run_dir, {k: v for svc in services for k, v in svc.ports.items()})
        try:
            # Both backends start at once; the gateway last, since its readiness needs both.
            for svc in services[:2]:
                procs.append(self._spawn(svc, log))
            for svc in services[:2]:
                self._wait_ready(svc, procs, timeout, log)
            procs.append(self._spawn(services[2], log))
            self._wait_ready(services[2], procs, timeout, log)
        except BaseException:
            log("!! start-up failed: stopping what was started")
            self.down(log=log)
            raise
        return procs

    def stop_service(self, name: str, grace: float = 10.0) -> None:
        """Stop one part (fault tests); the rest keeps running."""
        state = self._read_state()
        _stop_groups([Proc(**p) for p in state if p["name"] == name], grace, lambda _: None)
        _remove_cgroups([Proc(**p) for p in state if p["name"] == name])
        self.state_path.write_text(json.dumps([p for p in state if p["name"] != name], indent=2))

    def start_service(self, name: str, timeout: float = 120.0) -> Proc:
        """(Re)start one part and wait until it is ready."""
        svc = next(s for s in self.services() if s.name == name)
        proc = self._spawn(svc, lambda _: None)
        self._wait_ready(svc, [proc], timeout, lambda _: None)
        return proc

    def pid_of(self, name: str) -> int:
        return next(int(p["pid"]) for p in self._read_state() if p["name"] == name)

    def _spawn(self, svc: Service, log: Callable[[str], None]) -> Proc:
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{svc.name}.log"
        env = {**os.environ, **svc.env, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        # Its own cgroup, joined before exec: the kernel counts the CPU and memory of everything it ever starts.
        group = cgroups.Cgroup.create(f"stack-{_digest(self.run_dir)}-{svc.name}")
        with open(log_path, "ab") as out:
            popen = subprocess.Popen(
                svc.cmd,
                cwd=self.run_dir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=cgroups.preexec(group, lifecycle.die_with_parent if self.owned else None),
            )
        proc = Proc(svc.name, popen.pid, str(log_path), svc.url, cgroups.confirmed(group, popen.pid))
        self._record(proc)
        shown = COMPAT_NAME if svc.name == "tfserving-compat" else svc.name
        log(f"-- started {shown} (pid {popen.pid}), log {log_path}")
        return proc

    def _wait_ready(self, svc: Service, procs: list[Proc], timeout: float, log: Callable[[str], None]) -> None:
        deadline = time.monotonic() + timeout
        detail = ""
        while time.monotonic() < deadline:
            for p in procs:
                if not _alive(p.pid):
                    raise StackError(f"{p.name} exited during start-up; last log lines:\n{log_tail(Path(p.log))}")
            ok, detail = _probe(svc.ready)
            if ok:
                log(f"-- {svc.name} ready at {svc.url}")
                return
            time.sleep(0.25)
        raise StackError(f"{svc.name} not ready after {timeout:.0f}s ({detail})")

    def _record(self, proc: Proc) -> None:
        state = self._read_state()
        state.append(asdict(proc))
        self.state_path.write_text(json.dumps(state, indent=2))

    def _read_state(self) -> list[dict[str, Any]]:
        try:
            return list(json.loads(self.state_path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return []

    def _live_procs(self) -> list[Proc]:
        return [Proc(**p) for p in self._read_state() if _alive(int(p["pid"]))]

    def down(self, grace: float = 10.0, log: Callable[[str], None] = print) -> None:
        """Stop every recorded process group: SIGTERM, wait up to `grace`, then SIGKILL."""
        _stop_groups([Proc(**p) for p in self._read_state()], grace, log)
        _remove_cgroups([Proc(**p) for p in self._read_state()])
        shutil.rmtree(short_temp_dir(self.run_dir), ignore_errors=True)
        self.state_path.unlink(missing_ok=True)
        lifecycle.unregister(self.run_dir)

    def status(self) -> list[tuple[Proc, bool]]:
        return [(Proc(**p), _alive(int(p["pid"]))) for p in self._read_state()]

    def effective(self) -> dict[str, dict[str, Any]]:
        """The settings each running server reports it uses (stack/effective.py): ask them, not the config."""
        from stack import effective

        tf_pid = next((int(p["pid"]) for p in self._read_state() if p["name"] in ("tf-serving", "tfserving-compat")), 0)
        if tf_server_kind() == TF_BINARY:
            tf = effective.tf_serving_effective_from_cmdline(tf_pid)
        else:
            tf = effective.compat_effective(self.cfg, serving_config.TF_METRICS_PATH)
        return {"tf": tf, "torch": effective.torchserve_effective(self.cfg)}

    def urls(self) -> dict[str, str]:
        cfg = self.cfg
        tf_name = "TensorFlow Serving" if tf_server_kind() == TF_BINARY else COMPAT_NAME
        return {
            "gateway": cfg.gateway_url + "  (docs: /docs)",
            f"tf ({tf_name})": f"{cfg.tf_rest_url}/v1/models/{cfg.model_name}  (gRPC {cfg.host}:{cfg.tf_grpc_port})",
            "torchserve": f"{cfg.ts_inference_url}/predictions/{cfg.model_name}  "
            f"(management {cfg.ts_management_url}, metrics {cfg.ts_metrics_url}/metrics)",
        }

    def __enter__(self) -> NativeStack:
        self.up(log=lambda _: None)
        return self

    def __exit__(self, *_: object) -> None:
        self.down(log=lambda _: None)


def registered_stacks() -> list[tuple[Path, list[tuple[Proc, bool]]]]:
    """Every stack this checkout started and did not stop, wherever its run dir is, with its processes."""
    out = []
    for entry in lifecycle.registered():
        stack = NativeStack(StackConfig.load(environ=False), run_dir=Path(entry["run_dir"]))
        out.append((stack.run_dir, stack.status()))
    return out


def stop_registered(log: Callable[[str], None] = print, grace: float = 10.0) -> int:
    """Stop every stack of this checkout that the registry knows (`stack down`, `--replace`); how many."""
    entries = lifecycle.registered()
    for entry in entries:
        run_dir = Path(entry["run_dir"])
        log(f"== stopping the stack recorded in {run_dir}")
        NativeStack(StackConfig.load(environ=False), run_dir=run_dir).down(grace=grace, log=log)
        lifecycle.unregister(run_dir)
    return len(entries)


def _port_in_use(host: str, port: int, name: str, service: str) -> str:
    for entry in lifecycle.registered():
        if port in entry.get("ports", {}).values():
            stack = NativeStack(StackConfig.load(environ=False), run_dir=Path(entry["run_dir"]))
            if any(alive for _, alive in stack.status()):
                return (
                    f"port {port} ({name}, for {service}) is held by a stack this checkout started earlier "
                    f"(run dir {entry['run_dir']}, started by pid {entry.get('owner_pid')}): stop it with "
                    "`python -m stack down`, or pass --replace"
                )
    return (
        f"port {port} ({name}, for {service}) on {host} is already in use: "
        f"stop what is using it, or set {name} to a free port"
    )


def _stop_groups(procs: list[Proc], grace: float, log: Callable[[str], None]) -> None:
    """SIGTERM each process group (last started first), wait up to `grace`, SIGKILL what is left, reap."""
    for p in reversed(procs):  # gateway first, so no request meets a dead backend on purpose
        _signal_group(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_group_alive(p.pid) for p in procs):
        time.sleep(0.05)
    for p in procs:
        if _group_alive(p.pid):
            log(f"-- {p.name} did not stop in {grace:.0f}s: SIGKILL")
            _signal_group(p.pid, signal.SIGKILL)
    for p in procs:
        _reap(p.pid)
        log(f"-- stopped {p.name} (pid {p.pid})")


def _remove_cgroups(procs: list[Proc]) -> None:
    """After the processes are stopped: their groups go too (anything still in one is killed)."""
    for p in procs:
        if p.cgroup:
            cgroups.Cgroup(Path(p.cgroup)).remove()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Only zombies left? Then the group is effectively gone.
    import psutil

    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def log_tail(path: Path, lines: int = 25, without: tuple[str, ...] = ()) -> str:
    """The last `lines` lines of a process's log for an error message, leaving out lines that hold any of `without`
    (start-up chatter)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join([line for line in text if not any(w in line for w in without)][-lines:]) or "(empty)"
