"""The models this gateway serves: the default one (GATEWAY_MODEL_NAME; today's URLs) and the registry's others
(models.toml, stack/registry.py) under /models/{name}/..., each with its own backends and request rules."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.backends import tfserving, torchserve
from gateway.backends.base import Backend
from gateway.errors import UnknownModel
from gateway.schemas import DEFAULT_WIDTH, RequestRules, request_rules
from gateway.settings import Settings
from stack.registry import ModelSpec, RegistryError, load_registry


@dataclass
class ServedModel:
    name: str
    width: int
    classes: int
    rules: RequestRules
    backends: dict[str, Backend]


def _registry() -> list[ModelSpec]:
    try:
        return load_registry()
    except (OSError, RegistryError):
        return []  # an image without models.toml still serves its default model


def create_models(settings: Settings) -> dict[str, ServedModel]:
    """The default model first. Each model gets its own backend objects (pooled clients to the same servers) whose
    answers are checked against that model's class count; the per-backend admission limit is shared."""
    registry = {m.name: m for m in _registry()}
    default = registry.get(settings.model_name)
    if default is not None:  # the registry's shape for it; else .env's width and GATEWAY_N_CLASSES
        settings = settings.model_copy(update={"n_classes": default.classes})
    width = default.width if default else DEFAULT_WIDTH
    served = {settings.model_name: _serve(settings, settings.model_name, width, settings.n_classes)}
    wanted = list(registry) if settings.models.strip() == "all" else [n.strip() for n in settings.models.split(",")]
    for name in wanted:
        if not name or name in served:
            continue
        if name not in registry:
            raise RegistryError(f"GATEWAY_MODELS names {name!r}, which models.toml does not register")
        spec = registry[name]
        own = settings.model_copy(
            update={
                "model_name": spec.name,
                "n_classes": spec.classes,
                "torch_model_version": str(spec.version),
                "tf_model_version": None,  # a pinned version is the default model's
            }
        )
        served[name] = _serve(own, spec.name, spec.width, spec.classes)
    return served


def _serve(settings: Settings, name: str, width: int, classes: int) -> ServedModel:
    backends: dict[str, Backend] = {"tf": tfserving.create(settings), "torch": torchserve.create(settings)}  # type: ignore[dict-item]
    return ServedModel(name, width, classes, request_rules(width), backends)


def lookup(models: dict[str, ServedModel], name: str) -> ServedModel:
    found = models.get(name)
    if found is None:
        raise UnknownModel(f"unknown model {name!r}; this gateway serves: {', '.join(models)}", models=list(models))
    return found
