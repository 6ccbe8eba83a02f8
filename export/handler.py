"""TorchServe handler for the digits MLP (packed into the .mar; must import nothing from this project).

Written for the vendor image's runtime: pytorch/torchserve:0.12.0 runs Python 3.9 and torch 2.4, so nothing here
may need a newer Python (no `X | Y` at run time, no `match`); tests/export/test_vendor_runtime.py checks it with
vermin and runs it under a real Python 3.9.

Request body: `{"instances": [[64 floats], ...]}` (TF Serving's row format). Answer per request:
`{"predictions": [[10 probabilities], ...]}`. All valid requests of a TorchServe batch go through one forward
pass; a malformed request gets HTTP 400 and `{"error": "..."}` for itself only, not for its batch neighbours.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler

logger = logging.getLogger(__name__)

SIGNATURE_FILE = "signature.json"
# The same bound as the gateway's (gateway/schemas.py FEATURE_ABS_MAX; a test keeps them equal): a value beyond it
# is refused for its own request, never turned into NaN probabilities or a failure of the whole batch.
FEATURE_ABS_MAX = 1e6


# A refused request raises ValueError (-> HTTP 400 with its message). TorchServe accepts exactly one class
# defined in a handler module, so there is no custom exception class here.
RequestError = ValueError


def parse_instances(body: Any, n_features: int, max_rows: int = 10_000) -> list[list[float]]:
    """Validate one request body; return its rows or raise RequestError saying what is wrong."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError("request body is not UTF-8 text") from exc
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except json.JSONDecodeError as exc:
            raise RequestError(f"request body is not valid JSON: {exc.msg} at position {exc.pos}") from exc
    if not isinstance(body, dict) or "instances" not in body:
        raise RequestError('expected a JSON object {"instances": [[...], ...]}')
    rows = body["instances"]
    if not isinstance(rows, list) or not rows:
        raise RequestError("'instances' must be a non-empty list of rows")
    if len(rows) > max_rows:
        raise RequestError(f"'instances' has {len(rows)} rows; at most {max_rows} are accepted")
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise RequestError(f"instance {i} is not a list of {n_features} numbers")
        if len(row) != n_features:
            raise RequestError(f"instance {i} has {len(row)} values; expected {n_features}")
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RequestError(f"instance {i} value {j} is not a number: {value!r}")
            # Compared, never converted: float() of a huge JSON integer raises OverflowError, not ValueError,
            # and that would fail every request of the batch.
            if isinstance(value, float) and not math.isfinite(value):
                raise RequestError(f"instance {i} value {j} is not finite: {value!r}")
            if not -FEATURE_ABS_MAX <= value <= FEATURE_ABS_MAX:
                shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:20]}... ({len(repr(value))} digits)"
                raise RequestError(f"instance {i} value {j} is beyond ±{FEATURE_ABS_MAX:g}: {shown}")
    return rows


def choose_device(gpu_id: Any) -> torch.device:
    """CUDA (the GPU TorchServe assigned this worker) when present, else the CPU: export/device.py's rule."""
    if gpu_id is not None and torch.cuda.is_available():
        return torch.device(f"cuda:{int(gpu_id)}")
    return torch.device("cpu")


class DigitsHandler(BaseHandler):
    """Batches every valid request of a TorchServe batch into one forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.n_features = 64

    def initialize(self, context: Any) -> None:
        super().initialize(context)
        self.device = choose_device(context.system_properties.get("gpu_id"))
        self.model.to(self.device)
        logger.info("digits model on %s", self.device)
        model_dir = context.system_properties.get("model_dir", ".")
        path = os.path.join(model_dir, SIGNATURE_FILE)
        if os.path.exists(path):
            with open(path) as fh:
                self.n_features = int(json.load(fh)["n_features"])
        torch.set_num_threads(int(os.environ.get("DIGITS_TORCH_THREADS", "1")))
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        parsed: list[list[list[float]] | None] = []
        responses: list[Any] = [None] * len(data)
        for idx, request in enumerate(data):
            body = request.get("body", request.get("data")) if isinstance(request, dict) else request
            try:
                parsed.append(parse_instances(body, self.n_features))
            except RequestError as exc:
                parsed.append(None)
                responses[idx] = {"error": str(exc)}
                # To the worker's stdout, which TorchServe logs as MODEL_LOG (stdout in containers): an operator
                # sees why a client got 400. Refusals are rare, so this costs nothing on the hot path.
                logger.warning("request %d of the batch refused (400): %s", idx, exc)
                if context is not None:
                    context.set_response_status(code=400, phrase="Bad Request", idx=idx)
        rows = [row for item in parsed if item is not None for row in item]
        if rows:
            with torch.inference_mode():
                probs = self.model(torch.tensor(rows, dtype=torch.float32, device=self.device)).cpu().tolist()
            offset = 0
            for idx, item in enumerate(parsed):
                if item is not None:
                    responses[idx] = {"predictions": probs[offset : offset + len(item)]}
                    offset += len(item)
        return responses
