"""Which backend serves POST /predict: header override, else weighted split, else the default."""

from __future__ import annotations

import random

from gateway.errors import BadInput
from gateway.settings import Settings

BACKENDS = ("tf", "torch")
OVERRIDE_HEADER = "X-Backend"  # read by routes/predict.py as the `x_backend` header parameter


def other(backend: str) -> str:
    return "torch" if backend == "tf" else "tf"


def choose_backend(settings: Settings, override: str | None, rng: random.Random | None = None) -> str:
    if override:
        choice = override.strip().lower()
        if choice not in BACKENDS:
            raise BadInput(f"{OVERRIDE_HEADER} must be one of {', '.join(BACKENDS)}; got {override!r}")
        return choice
    total = settings.tf_weight + settings.torch_weight
    if total > 0:
        return "tf" if (rng or random).random() * total < settings.tf_weight else "torch"
    return settings.default_backend
