"""The interface every deployment under test has, and the URLs of its targets.

A deployment is started (or attached to) with `up`, released with `down` (which stops only what `up` started),
names its targets' URLs in `cfg`, reads back the settings the servers run with (`effective`), and gives one meter per
part whose cost it can measure (`meters`: "tf", "torch", "gateway"); a part without a meter is not measured, and
`describe()` says why, for the report. A meter is read at the instants a window starts and ends: `cpu_seconds()`
cumulative, `memory_bytes()` now (the same shape as loadtest/measure/processes.py's meters).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

Log = Callable[[str], None]
PARTS = ("tf", "torch", "gateway")


class ServingURLs(Protocol):
    """What the load generators and the metrics scrapes need: StackConfig has it, and so has Endpoints."""

    @property
    def model_name(self) -> str: ...
    @property
    def tf_rest_url(self) -> str: ...
    @property
    def ts_inference_url(self) -> str: ...
    @property
    def ts_metrics_url(self) -> str: ...
    @property
    def gateway_url(self) -> str: ...


@dataclass(frozen=True)
class Endpoints:
    """Targets anywhere: each URL given (a port-forward, a Service's DNS name inside a cluster)."""

    model_name: str
    tf_rest_url: str
    ts_inference_url: str
    gateway_url: str
    ts_metrics_url: str = ""  # TorchServe's metrics port: its server-side times; "" where not reachable
    ts_management_url: str = ""  # TorchServe's management API: its settings read back; "" where not reachable


class Meter(Protocol):
    how: str

    def cpu_seconds(self) -> float: ...

    def memory_bytes(self) -> int: ...

    def spec(self) -> str: ...


class Deployment(Protocol):
    kind: str

    @property
    def cfg(self) -> ServingURLs: ...

    def up(self, log: Log) -> None: ...

    def down(self, log: Log) -> None: ...

    def effective(self) -> dict[str, dict[str, Any]]: ...

    def meters(self) -> dict[str, Meter]: ...

    def describe(self) -> dict[str, Any]:
        """For summary.json's `deployment`: kind, urls, `cost` per part (how it is metered, or "not measured: why"),
        `server_cores` per backend where known (a container's CPU limit), `generator_shares_machine`, `local`."""
        ...


def not_measured(why: str) -> str:
    return f"not measured: {why}"
