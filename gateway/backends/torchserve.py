"""TorchServe: inference API `/predictions/{name}`, readiness from the management API's worker state."""

from __future__ import annotations

import contextlib
from typing import Any

from gateway.backends.base import Prediction, get_json, post_instances
from gateway.errors import BackendTimeout, BackendUnavailable, UpstreamError
from gateway.settings import Settings
from gateway.upstream import new_upstream


class TorchServeBackend:
    name = "torch"

    def __init__(self, settings: Settings) -> None:
        self.model_name = settings.model_name
        headers = {"Authorization": f"Bearer {settings.torch_token}"} if settings.torch_token else None
        self._client = new_upstream(settings.torch_url, self.name, settings, headers)
        self._management = new_upstream(settings.torch_management_url, self.name, settings, headers)
        self._readiness_timeout = settings.readiness_timeout_s
        self._readiness = settings.torch_readiness
        self._path = f"/predictions/{self.model_name}"
        self._n_classes = settings.n_classes
        # The inference API doesn't name the version that answered: the configured one, replaced in the background
        # by what the management API describes (where it is reachable). Never asked on the prediction path.
        self.version = settings.torch_model_version

    async def predict(self, body: bytes, rows: int) -> Prediction:
        preds, elapsed, text = await post_instances(self._client, self.name, self._path, body, rows, self._n_classes)
        return Prediction(preds, self.version, elapsed, text)

    async def _describe(self) -> list[dict[str, Any]]:
        models = await get_json(self._management, self.name, f"/models/{self.model_name}", self._readiness_timeout)
        if not isinstance(models, list):
            raise UpstreamError("management API answered something other than a list of models", backend=self.name)
        return models

    def _learn_version(self, models: list[dict[str, Any]]) -> None:
        with contextlib.suppress(IndexError, AttributeError, TypeError, KeyError):
            version = str(models[0]["modelVersion"])
            self.version = version[:-2] if version.endswith(".0") else version

    async def refresh_version(self) -> None:
        """Background only. With "ping" readiness the management API is out of reach (k8s): nothing to ask."""
        if self._readiness == "ping":
            return
        with contextlib.suppress(BackendUnavailable, BackendTimeout, UpstreamError):
            self._learn_version(await self._describe())

    async def ready(self) -> tuple[bool, str]:
        """`/ping` says Healthy before a worker is up; the worker state is what counts."""
        if self._readiness == "ping":
            return await self._ping()
        try:
            models = await self._describe()
        except (BackendUnavailable, BackendTimeout, UpstreamError) as exc:
            return False, str(exc)
        self._learn_version(models)
        workers = [w for m in models if isinstance(m, dict) for w in m.get("workers", [])]
        if any(w.get("status") == "READY" for w in workers):
            return True, "READY"
        return False, f"no READY worker for {self.model_name}: {[w.get('status') for w in workers]}"

    async def _ping(self) -> tuple[bool, str]:
        try:
            answer = await get_json(self._client, self.name, "/ping", self._readiness_timeout)
        except (BackendUnavailable, BackendTimeout, UpstreamError) as exc:
            return False, str(exc)
        status = answer.get("status") if isinstance(answer, dict) else None
        return (status == "Healthy"), f"ping: {status}"

    async def metadata(self) -> dict[str, Any]:
        return {"models": await self._describe()}

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._management.aclose()


def create(settings: Settings) -> TorchServeBackend:
    return TorchServeBackend(settings)
