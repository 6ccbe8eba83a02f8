"""A project policy check for docker-compose.yml (checkov has no compose framework): hardening, read-only
models, loopback-only published ports, health checks, and TorchServe's management/metrics never published."""

from __future__ import annotations

from typing import Any

TS_PRIVATE_PORTS = ("8081", "8082")


def violations(compose: dict[str, Any]) -> list[str]:
    found = []
    for name, svc in compose.get("services", {}).items():
        if svc.get("privileged"):
            found.append(f"{name}: privileged")
        if svc.get("network_mode") == "host":
            found.append(f"{name}: host network")
        if "ALL" not in (svc.get("cap_drop") or []):
            found.append(f"{name}: capabilities not dropped")
        if not any("no-new-privileges" in str(o) for o in svc.get("security_opt") or []):
            found.append(f"{name}: no-new-privileges missing")
        if "healthcheck" not in svc:
            found.append(f"{name}: no healthcheck")
        for port in svc.get("ports") or []:
            text = str(
                port
                if not isinstance(port, dict)
                else f"{port.get('host_ip', '')}:{port.get('published')}:{port.get('target')}"
            )
            if not text.startswith("127.0.0.1:"):
                found.append(f"{name}: port {text} published beyond loopback")
            if name == "torchserve" and text.rsplit(":", 1)[-1].split("/")[0] in TS_PRIVATE_PORTS:
                found.append(f"{name}: management/metrics port {text} published")
        for vol in svc.get("volumes") or []:
            text = (
                vol
                if isinstance(vol, str)
                else f"{vol.get('source')}:{vol.get('target')}:{'ro' if vol.get('read_only') else 'rw'}"
            )
            if "models" in text.split(":")[0] and not text.endswith(":ro"):
                found.append(f"{name}: models mounted writable ({text})")
    return found
