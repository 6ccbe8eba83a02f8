"""The native kind: the stack this checkout starts (stack/launcher.py's NativeStack), metered by each server's
cgroup (or process tree where none could be made)."""

from __future__ import annotations

import os
from typing import Any

from stack.config import StackConfig
from stack.deployments.base import Log, Meter
from stack.deployments.meters import meter_for
from stack.launcher import NativeStack

NAMES = {"tf": ("tf-serving", "tfserving-compat"), "torch": ("torchserve",), "gateway": ("gateway",)}


class NativeDeployment:
    kind = "native"

    def __init__(self, stack: NativeStack, started_here: bool = True) -> None:
        self.stack = stack
        self.started_here = started_here  # False: attached to a running stack, which `down` leaves running

    @property
    def cfg(self) -> StackConfig:
        return self.stack.cfg

    def up(self, log: Log) -> None:
        if self.started_here:
            self.stack.up(log=log)

    def down(self, log: Log) -> None:
        if self.started_here:
            self.stack.down(log=log)

    def effective(self) -> dict[str, dict[str, Any]]:
        return self.stack.effective()

    def meters(self) -> dict[str, Meter]:
        """Each server's cgroup where the launcher made one (stack/cgroups.py), else its process tree."""
        running = [p for p, alive in self.stack.status() if alive]
        found = {part: p for p in running for part in NAMES if p.name in NAMES[part]}
        return {part: meter_for(p.pid, p.cgroup) for part, p in found.items()}

    def describe(self) -> dict[str, Any]:
        meters = self.meters()
        return {
            "kind": self.kind,
            "urls": {"tf": self.cfg.tf_rest_url, "torch": self.cfg.ts_inference_url, "gateway": self.cfg.gateway_url},
            "cost": {part: m.how if (m := meters.get(part)) else "not measured: not running" for part in NAMES},
            "server_cores": {"tf": os.cpu_count(), "torch": os.cpu_count()},
            "generator_shares_machine": True,
            "local": True,
        }
