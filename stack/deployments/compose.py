"""The compose kind: the docker compose project, started by the bench (`up -d`, every service healthy; `down` at
the end) or attached to when it is already running (`--attach`: left running). Each server's cost is its
container's cgroup, read from the host (/proc/<pid>/cgroup of the container's first process: Docker's cgroupfs or
systemd layout, v1 or v2), or the engine's stats API where that cgroup is not visible from here. A container's
CPU limit (`cpus:`) is the cores its server may use, for the capacity plan.

TorchServe's management and metrics ports are not published by docker-compose.yml; the bench reaches them on the
container's address on the compose network (Linux hosts), and says so where that fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from stack.config import ROOT, StackConfig
from stack.deployments.base import Endpoints, Log, Meter, not_measured
from stack.deployments.meters import ContainerCgroup, EngineStats, cgroup_dirs

SERVICES = {"tf": "tf-serving", "torch": "torchserve", "gateway": "gateway"}
FILES = (ROOT / "docker-compose.yml",)


class ComposeError(RuntimeError):
    """A compose command failed, or a service has no running container; the message says which."""


class ComposeDeployment:
    kind = "compose"

    def __init__(
        self,
        project: str = "",
        files: tuple[Path, ...] = FILES,
        attach: bool = False,
        env: dict[str, str] | None = None,
        cli: list[str] | None = None,
        up_timeout_s: float = 300.0,
    ) -> None:
        self.project = project or os.environ.get("COMPOSE_PROJECT_NAME") or ROOT.name
        self.files = files
        self.attach = attach
        self.env = {**os.environ, **(env or {})}
        self._cli = cli
        self.up_timeout_s = up_timeout_s
        overrides = {k: v for k, v in (env or {}).items() if k.isupper()}
        self.stack_cfg = StackConfig.load(overrides)  # .env (what compose substitutes) and the ports given
        self._torch_ip = ""

    # ---- compose --------------------------------------------------------------------------------------------
    def compose(self, *args: str, timeout: float = 600) -> str:
        if self._cli is None:
            from stack.compose.engine import compose_cli

            self._cli = compose_cli()
        cmd = [*self._cli, "-p", self.project, "--project-directory", str(ROOT)]
        for f in self.files:
            cmd += ["-f", str(f)]
        done = subprocess.run([*cmd, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise ComposeError(f"`{' '.join(args)}` exited {done.returncode}: {(done.stdout + done.stderr)[-1500:]}")
        return done.stdout

    def container(self, part: str) -> str:
        ids = self.compose("ps", "-q", SERVICES[part]).split()
        if not ids:
            raise ComposeError(f"{SERVICES[part]}: no running container in project {self.project!r}")
        return ids[0]

    def inspect(self, part: str) -> dict[str, Any]:
        out = subprocess.run(["docker", "inspect", self.container(part)], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise ComposeError(f"docker inspect {SERVICES[part]}: {out.stderr[-500:]}")
        return dict(json.loads(out.stdout)[0])

    def health(self, part: str) -> str:
        state = self.inspect(part)["State"]
        return str((state.get("Health") or {}).get("Status") or state.get("Status"))

    # ---- the interface --------------------------------------------------------------------------------------
    @property
    def cfg(self) -> Endpoints:
        """The published ports on the host; TorchServe's metrics and management on its container's address."""
        c, ip = self.stack_cfg, self._torch_ip
        return Endpoints(c.model_name, c.tf_rest_url, c.ts_inference_url, c.gateway_url,
                         f"http://{ip}:8082" if ip else "", f"http://{ip}:8081" if ip else "")  # fmt: skip

    def up(self, log: Log) -> None:
        if not self.attach:
            log(f"docker compose -p {self.project} up -d {' '.join(SERVICES.values())}")
            self.compose("up", "-d", *SERVICES.values(), timeout=self.up_timeout_s + 300)
        deadline = time.monotonic() + self.up_timeout_s
        while (states := {p: self.health(p) for p in SERVICES}) and set(states.values()) != {"healthy"}:
            if time.monotonic() > deadline:
                raise ComposeError(f"not healthy within {self.up_timeout_s:.0f} s: {states}")
            time.sleep(1)
        self._torch_ip = self.address("torch")  # management and metrics stay on the compose network
        log(f"compose project {self.project!r}: {', '.join(SERVICES.values())} healthy")

    def down(self, log: Log) -> None:
        if not self.attach:
            log(f"docker compose -p {self.project} down")
            self.compose("down", "-v", timeout=300)

    def address(self, part: str) -> str:
        networks = self.inspect(part).get("NetworkSettings", {}).get("Networks", {})
        return next((n["IPAddress"] for n in networks.values() if n.get("IPAddress")), "")

    def effective(self) -> dict[str, dict[str, Any]]:
        """TorchServe's management API on its container's address; the TF side's process command line (the
        container's first process is visible from the host) or, for the compatible server, its metrics."""
        from export import serving_config
        from stack import effective

        torch_cfg = _at(self.stack_cfg, self.address("torch"))
        out = {"torch": effective.torchserve_effective(torch_cfg)}
        pid = int(self.inspect("tf")["State"]["Pid"])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if pid else b""
        if b"tfserving_compat" in cmdline or not cmdline:
            out["tf"] = effective.compat_effective(self.stack_cfg, serving_config.TF_METRICS_PATH)
        else:
            out["tf"] = effective.tf_serving_effective_from_cmdline(pid)
        return out

    def meter(self, part: str) -> Meter:
        info = self.inspect(part)
        pid = int(info["State"].get("Pid") or 0)
        try:
            return ContainerCgroup(SERVICES[part], cgroup_dirs(pid))
        except (OSError, ValueError):
            return EngineStats(info["Id"])

    def meters(self) -> dict[str, Meter]:
        return {part: self.meter(part) for part in SERVICES}

    def cpu_limit(self, part: str) -> float | None:
        host = self.inspect(part).get("HostConfig", {})
        if host.get("NanoCpus"):
            return float(host["NanoCpus"]) / 1e9
        if host.get("CpuQuota", 0) > 0 and host.get("CpuPeriod"):
            return float(host["CpuQuota"]) / float(host["CpuPeriod"])
        return None

    def describe(self) -> dict[str, Any]:
        cost: dict[str, str] = {}
        for part in SERVICES:
            try:
                cost[part] = self.meter(part).how
            except ComposeError as exc:
                cost[part] = not_measured(str(exc))
        return {
            "kind": self.kind,
            "project": self.project,
            "started_by_bench": not self.attach,
            "urls": {"tf": self.cfg.tf_rest_url, "torch": self.cfg.ts_inference_url, "gateway": self.cfg.gateway_url},
            "cost": cost,
            "server_cores": {p: c for p in ("tf", "torch") if (c := self.cpu_limit(p))},
            "generator_shares_machine": True,  # the bench drives the published ports from this host
            "local": True,
        }


def _at(cfg: StackConfig, ip: str) -> StackConfig:
    """The config as seen on a container's address, its container ports (TorchServe's management and metrics)."""
    return replace(cfg, host=ip, ts_management_port=8081, ts_metrics_port=8082) if ip else cfg
