"""Deployments under test, one interface (base.py): the native stack this checkout starts (native.py), a docker
compose project started by the bench or attached to (compose.py), and any running deployment given by its URLs
(endpoints.py). Each says where its targets are, what settings the servers run with, and how each server's cost is
metered: or that it is not measured, never a guess."""

from stack.deployments.base import Deployment, Endpoints, Meter

KINDS = ("native", "compose", "endpoints")

__all__ = ["KINDS", "Deployment", "Endpoints", "Meter", "open_deployment"]


def open_deployment(kind: str, **options: object) -> Deployment:
    """A deployment of `kind` from the bench's options: compose (`project`, `files`, `attach`), endpoints (`urls`,
    `prometheus`, `namespace`). The native kind is the bench's own (it starts a stack per batching mode)."""
    if kind == "compose":
        from stack.deployments.compose import ComposeDeployment

        return ComposeDeployment(**options)  # type: ignore[arg-type]
    if kind == "endpoints":
        from stack.deployments.endpoints import EndpointsDeployment

        return EndpointsDeployment(**options)  # type: ignore[arg-type]
    raise ValueError(f"no deployment kind {kind!r} to open here (one of {', '.join(KINDS[1:])})")
