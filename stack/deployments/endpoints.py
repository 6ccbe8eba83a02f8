"""The endpoints kind: a running deployment given by its URLs (a k8s cluster through port-forward, or its Services
from inside it). Its cost comes from a Prometheus URL when given: the cAdvisor series per pod,
`container_cpu_usage_seconds_total` and `container_memory_working_set_bytes`, summed over the pods of each
Deployment; with no Prometheus the cost is "not measured", never a guess.

Prometheus samples at its scrape interval, so a reading is the counter as last scraped: a window shorter than two
scrape intervals measures nothing useful, and the bench's windows should be long enough (the report says how read).
"""

from __future__ import annotations

from typing import Any

import httpx

from stack.deployments.base import Endpoints, Log, Meter, not_measured

# The k8s manifests' Deployment and container names (k8s/base): the pods are <deployment>-<hash>-<id>.
K8S_NAMES = {"tf": "tf-serving", "torch": "torchserve", "gateway": "gateway"}


class PrometheusError(RuntimeError):
    """The Prometheus query failed or answered no series; the message says which."""


def selector(part: str, namespace: str) -> str:
    name = K8S_NAMES[part]
    return f'{{namespace="{namespace}", pod=~"{name}-.*", container="{name}"}}'


class PrometheusMeter:
    """One part's pods through Prometheus's instant query API: the sum over its pods' series now."""

    def __init__(self, base_url: str, part: str, namespace: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.part = part
        self.namespace = namespace
        self.timeout = timeout
        self.how = f"Prometheus {self.base_url}: container_cpu_usage_seconds_total{selector(part, namespace)}"

    def query(self, promql: str) -> float:
        try:
            r = httpx.get(f"{self.base_url}/api/v1/query", params={"query": promql}, timeout=self.timeout)
            r.raise_for_status()
            body = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusError(f"{promql}: {exc}") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"{promql}: {body.get('error', body)}")
        result = body["data"]["result"]
        if not result:
            raise PrometheusError(f"{promql}: no series (pods not found, or cAdvisor not scraped)")
        return sum(float(series["value"][1]) for series in result)

    def cpu_seconds(self) -> float:
        return self.query(f"sum(container_cpu_usage_seconds_total{selector(self.part, self.namespace)})")

    def memory_bytes(self) -> int:
        return int(self.query(f"sum(container_memory_working_set_bytes{selector(self.part, self.namespace)})"))

    def spec(self) -> str:
        return f"prometheus:{self.base_url}#{self.part}@{self.namespace}"


class EndpointsDeployment:
    kind = "endpoints"

    def __init__(
        self, urls: Endpoints, prometheus: str = "", namespace: str = "servecompare",
        server_cores: dict[str, float] | None = None,
    ) -> None:  # fmt: skip
        """`server_cores`: the cores each backend's pods may use together (their CPU limits summed), as the user
        knows them: from outside they cannot be read, and the capacity plan needs them."""
        self.urls = urls
        self.prometheus = prometheus
        self.namespace = namespace
        self.server_cores = dict(server_cores or {})

    @property
    def cfg(self) -> Endpoints:
        return self.urls

    def up(self, log: Log) -> None:
        """Attach: every target must answer before anything is measured."""
        u = self.urls
        checks = {
            "tf": f"{u.tf_rest_url}/v1/models/{u.model_name}",
            "torch": f"{u.ts_inference_url}/ping",
            "gateway": f"{u.gateway_url}/readyz",
        }
        for part, url in checks.items():
            try:
                httpx.get(url, timeout=10).raise_for_status()
            except httpx.HTTPError as exc:
                raise ConnectionError(f"{part} at {url} does not answer: {exc}") from exc
        log(f"attached to {', '.join(checks.values())}")

    def down(self, log: Log) -> None:
        """Nothing was started here: nothing is stopped."""

    def effective(self) -> dict[str, dict[str, Any]]:
        """What can be read back from outside: TorchServe's management API where its URL is given; TF Serving
        has no API for its batching settings, so its side says it was not read back."""
        out: dict[str, dict[str, Any]] = {"tf": {"source": "not read back (TF Serving has no API for it)"}}
        if self.urls.ts_management_url:
            from stack.effective import torchserve_effective

            out["torch"] = torchserve_effective(self.urls, timeout=5.0)  # type: ignore[arg-type]
        else:
            out["torch"] = {"source": "not read back (no TorchServe management URL given)"}
        return out

    def meters(self) -> dict[str, Meter]:
        if not self.prometheus:
            return {}
        return {part: PrometheusMeter(self.prometheus, part, self.namespace) for part in K8S_NAMES}

    def describe(self) -> dict[str, Any]:
        cost = {part: m.how for part, m in self.meters().items()} or {
            part: not_measured("no Prometheus URL given (--prometheus)") for part in K8S_NAMES
        }
        return {
            "kind": self.kind,
            "urls": {
                "tf": self.urls.tf_rest_url,
                "torch": self.urls.ts_inference_url,
                "gateway": self.urls.gateway_url,
            },
            "cost": cost,
            "server_cores": self.server_cores,  # unknown from outside unless given: the capacity plan says so
            "generator_shares_machine": False,
            "local": False,
        }
