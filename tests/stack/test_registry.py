"""The model registry (models.toml): it agrees with .env, refuses broken entries, and every server config follows
it: a model added to it is in TF Serving's model_config_list, TorchServe's load_models and per-model settings, and
the native stack's model store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from export import serving_config
from stack.config import StackConfig
from stack.launcher import NativeStack
from stack.registry import REGISTRY_FILE, RegistryError, load_registry

CFG = StackConfig.load()
ENTRY = (
    'name = "{name}"\nversion = {version}\nwidth = 16\nclasses = 3\n'
    'tf_base = "tf/{name}"\nmar = "torch/{name}.mar"\nreference = "ref/{name}.json"\n'
)


def test_the_default_model_is_envs() -> None:
    default = load_registry()[0]
    assert (default.name, default.version, default.width, default.classes) == (
        CFG.model_name, CFG.model_version, CFG.n_features, CFG.n_classes,
    )  # fmt: skip
    assert default.tf_version_dir == CFG.tf_version_dir and default.mar == CFG.mar_path


def extended(tmp_path: Path) -> list:  # type: ignore[type-arg]
    """The project's registry plus a model of the user's."""
    path = tmp_path / "models.toml"
    text = REGISTRY_FILE.read_text().replace('"models/', f'"{REGISTRY_FILE.parent}/models/')
    path.write_text(text + "\n[[models]]\n" + ENTRY.format(name="mine", version=3))
    return load_registry(path)


def test_a_registered_model_is_in_every_server_config(tmp_path: Path) -> None:
    models = extended(tmp_path)
    assert [m.name for m in models][-1] == "mine"
    tf = serving_config.tf_models_config(models)
    assert 'name: "mine"' in tf and 'base_path: "/models/mine"' in tf and tf.count("config {") == len(models)
    props = serving_config.ts_config_properties(CFG, models)
    lines = dict(line.split("=", 1) for line in props.splitlines())
    assert lines["load_models"].split(",") == [f"{m.name}.mar" for m in models]
    settings = json.loads(lines["models"])
    assert settings["mine"] == {"3": {**settings[CFG.model_name][str(CFG.model_version)], "marName": "mine.mar"}}
    native = serving_config.tf_models_config(models, base_path=None)
    assert f'base_path: "{tmp_path / "tf" / "mine"}"' in native


def test_the_native_stack_serves_what_it_is_given(tmp_path: Path) -> None:
    models = extended(tmp_path)
    for m in models:  # stand-ins, so the symlinked model store can be built
        m.mar.parent.mkdir(parents=True, exist_ok=True)
        if not m.mar.exists():
            m.mar.write_bytes(b"")
    stack = NativeStack(CFG, run_dir=tmp_path / "run", models=models)
    (tmp_path / "run" / "conf").mkdir(parents=True)
    try:
        services = {s.name: s for s in stack.services()}
    finally:
        stack.down(log=lambda _: None)  # nothing was started; down removes TorchServe's temp dir
    store = Path(services["torchserve"].cmd[services["torchserve"].cmd.index("--model-store") + 1])
    assert sorted(p.name for p in store.iterdir()) == sorted(f"{m.name}.mar" for m in models)
    assert (store / "mine.mar").resolve() == models[-1].mar
    props = (tmp_path / "run" / "conf" / "config.properties").read_text()
    assert "load_models=" + ",".join(f"{m.name}.mar" for m in models) in props
    assert 'name: "mine"' in (tmp_path / "run" / "conf" / "models.config").read_text()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (ENTRY.format(name="Bad-Name", version=1), "lowercase"),
        (ENTRY.format(name="mine", version=0), "version >= 1"),
        (ENTRY.format(name="mine", version=1).replace("torch/mine.mar", "torch/other.mar"), "<name>.mar"),
        (ENTRY.format(name="mine", version=1).replace("width = 16\n", ""), "width"),
        (ENTRY.format(name="digits", version=1), "duplicate"),
    ],
)
def test_a_broken_entry_is_refused_naming_it(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "models.toml"
    path.write_text(REGISTRY_FILE.read_text() + "\n[[models]]\n" + entry)
    with pytest.raises(RegistryError, match=message):
        load_registry(path)
