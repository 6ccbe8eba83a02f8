"""POST /compare: the same input to both backends at once; both answers and how far apart they are."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from gateway.deps import AdmissionDep, BackendsDep, MetricsDep, SettingsDep
from gateway.schemas import ERROR_RESPONSES, CompareResponse, PredictRequest
from gateway.service import check_batch, predict_with

router = APIRouter(tags=["compare"], responses=ERROR_RESPONSES)


@router.post("/compare", response_model=CompareResponse, summary="Predict on both backends and compare")
async def compare(
    body: PredictRequest, settings: SettingsDep, backends: BackendsDep, metrics: MetricsDep, admission: AdmissionDep
) -> CompareResponse:
    check_batch(body.instances, settings)
    tf, torch = await asyncio.gather(
        predict_with(backends["tf"], body.instances, metrics, admission),
        predict_with(backends["torch"], body.instances, metrics, admission),
    )
    diff = max(
        (
            abs(a - b)
            for pa, pb in zip(tf.predictions, torch.predictions, strict=True)
            for a, b in zip(pa, pb, strict=True)
        ),
        default=0.0,
    )
    return CompareResponse(tf=tf, torch=torch, max_abs_diff=diff, labels_agree=tf.labels == torch.labels)
