"""The PyTorch side: the MLP, its training loop, TorchScript export and weight exchange with Keras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from export.data import DigitsSplit
from export.device import torch_device
from export.tensorboard import ScalarLog

HIDDEN = 64


def build_mlp(n_features: int = 64, n_classes: int = 10, hidden: tuple[int, ...] = (HIDDEN, HIDDEN)) -> nn.Sequential:
    """Linear+ReLU per hidden width, then Linear and softmax: the seed MLP is (64, 64), the wide one (2048, 2048)."""
    layers: list[nn.Module] = []
    width = n_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, n_classes), nn.Softmax(dim=1))


def linear_layers(model: nn.Sequential) -> list[nn.Linear]:
    return [m for m in model if isinstance(m, nn.Linear)]


def train(
    split: DigitsSplit,
    epochs: int = 60,
    seed: int = 0,
    log_dir: Path | None = None,
    verbose: bool = True,
    hidden: tuple[int, ...] = (HIDDEN, HIDDEN),
    lr: float = 1e-2,
) -> nn.Sequential:
    """Adam on cross-entropy; the softmax layer stays in the model, so train on its log. On export/device.py's
    device; the model comes back on the CPU (export and weight exchange)."""
    torch.manual_seed(seed)
    device = torch_device()
    model = build_mlp(split.x_train.shape[1], int(split.y_train.max()) + 1, hidden).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x = torch.from_numpy(split.x_train).to(device)
    y = torch.from_numpy(split.y_train).to(device)
    generator = torch.Generator().manual_seed(seed)
    writer = ScalarLog(log_dir, "pytorch") if log_dir is not None else None
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator).to(device)
        total = 0.0
        for start in range(0, len(x), 32):
            idx = order[start : start + 32]
            optimizer.zero_grad()
            probs = model(x[idx])
            loss = nn.functional.nll_loss(torch.log(probs.clamp_min(1e-12)), y[idx])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        acc = accuracy(model, split.x_test, split.y_test)
        if writer is not None:
            writer.log(epoch, total / len(x), acc)
        if verbose and (epoch % 10 == 9 or epoch == epochs - 1):
            print(f"  [torch] epoch {epoch + 1:3d}/{epochs}  loss {total / len(x):.4f}  test acc {acc:.4f}")
    if writer is not None:
        writer.close()
    model.eval()
    return model.cpu()


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    where = next(model.parameters()).device
    return model(torch.from_numpy(np.asarray(x, dtype=np.float32)).to(where)).cpu().numpy()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    return float((predict(model, x).argmax(axis=1) == y).mean())


def keras_weights(model: nn.Sequential) -> list[np.ndarray]:
    """Weights in Keras order: a Dense kernel is the transposed Linear weight."""
    out: list[np.ndarray] = []
    for layer in linear_layers(model):
        out.append(layer.weight.detach().numpy().T.copy())
        out.append(layer.bias.detach().numpy().copy())
    return out


def load_keras_weights(model: nn.Sequential, weights: list[np.ndarray]) -> None:
    with torch.no_grad():
        pairs = zip(weights[::2], weights[1::2], strict=True)
        for layer, (kernel, bias) in zip(linear_layers(model), pairs, strict=True):
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
            layer.bias.copy_(torch.from_numpy(bias))


def save_torchscript(model: nn.Module, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    scripted = torch.jit.script(model.eval())
    scripted.save(str(path))
    return path
