"""TensorBoard logs with the same scalar names for both frameworks, so their runs overlay in one TensorBoard.

Every training mode writes one run directory per framework: `runs/<time>/<mode>-<framework>/`, mode being
transfer, native or scaling-n<N>, framework pytorch or tensorflow. Scalars per epoch: `loss` (the mean training
loss) and `accuracy` (on the test split). `tensorboard --logdir runs` shows them side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TAGS = ("loss", "accuracy")
FRAMEWORKS = ("pytorch", "tensorflow")


def run_dir(runs_dir: Path, stamp: str, mode: str, framework: str) -> Path:
    assert framework in FRAMEWORKS, framework
    return runs_dir / stamp / f"{mode}-{framework}"


class ScalarLog:
    """`log(step, loss, accuracy)`; PyTorch's SummaryWriter for pytorch, tf.summary for tensorflow."""

    def __init__(self, path: Path, framework: str) -> None:
        self.framework = framework
        path.mkdir(parents=True, exist_ok=True)
        self._writer: Any
        if framework == "pytorch":
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(path))
        else:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(str(path))

    def log(self, step: int, loss: float, accuracy: float) -> None:
        values = dict(zip(TAGS, (loss, accuracy), strict=True))
        if self.framework == "pytorch":
            for tag, value in values.items():
                self._writer.add_scalar(tag, value, step)
        else:
            import tensorflow as tf

            with self._writer.as_default(step=step):
                for tag, value in values.items():
                    tf.summary.scalar(tag, value)

    def close(self) -> None:
        if self.framework == "pytorch":
            self._writer.close()
        else:
            self._writer.flush()
            self._writer.close()


def read_scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars of one run directory, whichever framework wrote them (tests, reports)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    out: dict[str, list[tuple[int, float]]] = {}
    for tag in acc.Tags().get("scalars", []):
        out[tag] = [(e.step, float(e.value)) for e in acc.Scalars(tag)]
    for tag in acc.Tags().get("tensors", []):
        import numpy as np
        from tensorboard.util import tensor_util

        out[tag] = [(e.step, float(np.asarray(tensor_util.make_ndarray(e.tensor_proto)))) for e in acc.Tensors(tag)]
    return out
