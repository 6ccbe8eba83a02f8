"""A model a user brings: a 16-feature, 3-class MLP made here (SavedModel + .mar + reference file), registered in its
own registry file, checked by `python -m export.check`, then measured by a short bench through both servers and the
gateway, like the builtin models."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from stack.config import ROOT

pytestmark = pytest.mark.integration

WIDTH, CLASSES, HIDDEN = 16, 3, (8,)


def make_user_model(root: Path) -> Path:
    """Everything a user brings, laid out where the registry entry says, and the registry file."""
    import torch

    from export import keras_model, torch_model
    from export.__main__ import build_mar
    from stack.registry import load_registry

    registry = root / "models.toml"
    registry.write_text(
        '[[models]]\nname = "mine"\nversion = 3\ninput = "features"\n'
        f"width = {WIDTH}\nclasses = {CLASSES}\n"
        'tf_base = "tf/mine"\nmar = "torch/mine.mar"\nreference = "reference/mine.json"\n'
    )
    (spec,) = load_registry(registry)
    torch.manual_seed(7)
    tmodel = torch_model.build_mlp(WIDTH, CLASSES, HIDDEN).eval()
    kmodel = keras_model.build_mlp(WIDTH, CLASSES, HIDDEN)
    kmodel.set_weights(torch_model.keras_weights(tmodel))
    rows = np.random.default_rng(7).uniform(0, 1, (40, WIDTH)).astype(np.float32)
    keras_model.export_savedmodel(kmodel, spec.tf_version_dir, rows[:4], spec.name)
    with tempfile.TemporaryDirectory() as tmp:
        build_mar(spec, torch_model.save_torchscript(tmodel, Path(tmp) / "model.pt"), Path(tmp))
    labels = torch_model.predict(tmodel, rows).argmax(1).tolist()
    spec.reference.parent.mkdir(parents=True, exist_ok=True)
    spec.reference.write_text(json.dumps({"rows": rows.astype(float).tolist(), "expected": labels}))
    return registry


@pytest.fixture(scope="module")
def user_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_user_model(tmp_path_factory.mktemp("user-model"))


def test_the_check_command_passes_a_good_model_and_refuses_a_wrong_reference(user_registry: Path) -> None:
    cmd = [sys.executable, "-m", "export.check", "--model", "mine", "--registry", str(user_registry)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "check mine: PASSED" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "both servers and the gateway answer" in done.stdout
    ref_path = user_registry.parent / "reference" / "mine.json"
    good = ref_path.read_text()
    try:
        ref = json.loads(good)
        ref["expected"] = [(label + 1) % CLASSES for label in ref["expected"]]
        ref_path.write_text(json.dumps(ref))
        done = subprocess.run([*cmd, "--no-live"], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 1 and "labels differ from the reference" in done.stdout, done.stdout
    finally:
        ref_path.write_text(good)


def test_a_short_bench_measures_the_users_model(
    user_registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loadtest.bench import BenchOptions, bench

    monkeypatch.setenv("SERVECOMPARE_MODELS", str(user_registry))
    opts = BenchOptions(
        users=[1], rows=[1, 4], duration_s=0.5, trials=1, max_trials=1, verdict_trials=1, verdict_max_trials=1,
        load_warmup_s=0.3, targets=["tf-direct", "torch-direct", "gateway-tf", "gateway-compare"], startup=False,
        overhead=False, slo_ms=None, models=["mine"],
    )  # fmt: skip
    summary = bench(opts, tmp_path, log=lambda _: None)
    assert {p["target"] for p in summary["points"]} == set(opts.targets)
    for p in summary["points"]:
        assert p["model"] == "mine" and p["requests"] > 0 and p["failures"] == 0, p  # 3-class answers checked
    assert "## Verdict" in (tmp_path / "report.md").read_text()
