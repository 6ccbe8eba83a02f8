"""The core of a prediction: batch checks, one upstream call with metrics, normalised answer."""

from __future__ import annotations

from gateway.admission import Admission
from gateway.backends.base import Backend
from gateway.errors import GatewayError, PayloadTooLarge
from gateway.metrics import GatewayMetrics
from gateway.schemas import PredictResponse
from gateway.settings import Settings


def check_batch(instances: list[list[float]], settings: Settings) -> None:
    if len(instances) > settings.max_batch:
        raise PayloadTooLarge(f"batch of {len(instances)} instances exceeds the limit of {settings.max_batch}")


async def predict_with(
    backend: Backend, instances: list[list[float]], metrics: GatewayMetrics, admission: Admission
) -> PredictResponse:
    try:
        async with admission.slot(backend.name):
            result = await backend.predict(instances)
    except GatewayError as exc:
        metrics.upstream.labels(backend.name, type(exc).__name__).observe(0)
        raise
    metrics.upstream.labels(backend.name, "ok").observe(result.upstream_ms / 1000.0)
    labels = [max(range(len(p)), key=p.__getitem__) for p in result.predictions]
    return PredictResponse(
        backend=backend.name,  # type: ignore[arg-type]
        model_name=backend.model_name,
        model_version=result.model_version,
        predictions=result.predictions,
        labels=labels,
        upstream_ms=round(result.upstream_ms, 3),
    )
