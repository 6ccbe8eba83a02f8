"""Where training runs, stated once: CUDA when present, else the CPU. The trainers (export/torch_model.py,
export/keras_model.py, export/scaling/) ask here and the reports record the answer. The TorchServe handler, which
may import nothing from this project, applies the same rule (export/handler.py `choose_device`; a test holds the
two together)."""

from __future__ import annotations

from typing import Any


def torch_device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def tf_device() -> str:
    import tensorflow as tf

    return "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"


def describe() -> dict[str, str]:
    """What each framework trains on here, for reports."""
    return {"pytorch": str(torch_device()), "tensorflow": tf_device()}
