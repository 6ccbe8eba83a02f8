"""The model registry: `models.toml` at the repository root (or the file $SERVECOMPARE_MODELS names)."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from stack.config import ROOT

REGISTRY_FILE = ROOT / "models.toml"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class RegistryError(ValueError):
    pass


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: int
    input: str
    width: int
    classes: int
    tf_base: Path  # SavedModel base path: numeric version directories inside
    mar: Path
    reference: Path
    hidden: tuple[int, ...] | None = None  # builtin models: the MLP's hidden layer widths
    epochs: int = 60
    lr: float = 1e-2  # Adam's learning rate when `python -m export` trains it

    @property
    def builtin(self) -> bool:
        return self.hidden is not None

    @property
    def tf_version_dir(self) -> Path:
        return self.tf_base / str(self.version)

    def stack_overrides(self) -> dict[str, str]:
        """StackConfig settings under which this model is the stack's default (the servers' and the gateway's)."""
        return {"MODEL_NAME": self.name, "MODEL_VERSION": str(self.version), "N_FEATURES": str(self.width),
                "N_CLASSES": str(self.classes)}  # fmt: skip


def registry_path() -> Path:
    return Path(os.environ.get("SERVECOMPARE_MODELS") or REGISTRY_FILE)


def load_registry(path: Path | None = None) -> list[ModelSpec]:
    """Every registered model, the default first; a broken entry is a RegistryError naming it."""
    path = path or registry_path()
    data = tomllib.loads(path.read_text())
    entries = data.get("models") or []
    if not entries:
        raise RegistryError(f"{path}: no [[models]] entries")
    base = path.parent
    out: list[ModelSpec] = []
    for i, entry in enumerate(entries):
        where = f"{path} model #{i + 1} ({entry.get('name', '?')})"
        try:
            builtin = entry.get("builtin")
            spec = ModelSpec(
                name=str(entry["name"]),
                version=int(entry["version"]),
                input=str(entry.get("input", "features")),
                width=int(entry["width"]),
                classes=int(entry["classes"]),
                tf_base=(base / entry["tf_base"]).resolve(),
                mar=(base / entry["mar"]).resolve(),
                reference=(base / entry["reference"]).resolve(),
                hidden=tuple(int(h) for h in builtin["hidden"]) if builtin else None,
                epochs=int(builtin.get("epochs", 60)) if builtin else 60,
                lr=float(builtin.get("lr", 1e-2)) if builtin else 1e-2,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"{where}: {type(exc).__name__}: {exc}") from None
        if not _NAME.match(spec.name):
            raise RegistryError(f"{where}: a name is lowercase letters, digits and _ (it goes in URLs and files)")
        if spec.width < 1 or spec.classes < 2 or spec.version < 1:
            raise RegistryError(f"{where}: width >= 1, classes >= 2, version >= 1")
        if spec.mar.name != f"{spec.name}.mar" or spec.tf_base.name != spec.name:
            raise RegistryError(f"{where}: TorchServe and TF Serving find a model by its name: <name>.mar, .../<name>")
        out.append(spec)
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise RegistryError(f"{path}: duplicate model names {names}")
    return out


def model(name: str, registry: list[ModelSpec] | None = None) -> ModelSpec:
    models = registry or load_registry()
    for m in models:
        if m.name == name:
            return m
    raise RegistryError(f"unknown model {name!r}; registered: {', '.join(m.name for m in models)}")
