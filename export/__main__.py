"""`python -m export`: train the digits MLP, export both servers' artifacts, check that they agree."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from export import data, serving_config
from stack.config import ROOT, StackConfig
from stack.registry import ModelSpec, load_registry

ARCHIVE_HANDLER = ROOT / "export" / "handler.py"


def build_mar(spec: ModelSpec, torchscript: Path, workdir: Path) -> Path:
    signature = workdir / "signature.json"
    signature.write_text(json.dumps({"n_features": spec.width, "n_classes": spec.classes}))
    spec.mar.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(Path(sys.executable).parent / "torch-model-archiver"),
        "--model-name", spec.name,
        "--version", serving_config.ts_model_version(spec.version),
        "--serialized-file", str(torchscript),
        "--handler", str(ARCHIVE_HANDLER),
        "--extra-files", str(signature),
        "--export-path", str(spec.mar.parent),
        "--force",
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    return spec.mar


def repack_handler(mar: Path, handler: Path = ARCHIVE_HANDLER) -> bool:
    """Put the current handler into an existing `.mar` (same TorchScript, manifest and extra files); True when it
    changed. For a handler fix without retraining: the archive is a zip whose handler.py is a copy."""
    with zipfile.ZipFile(mar) as old:
        entries = [(info, old.read(info.filename)) for info in old.infolist()]
    new_handler = handler.read_bytes()
    if dict((i.filename, b) for i, b in entries).get("handler.py") == new_handler:
        return False
    tmp = mar.with_suffix(".mar.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for info, data in entries:
            out.writestr(info, new_handler if info.filename == "handler.py" else data)
    tmp.replace(mar)
    return True


def write_reference(
    split: data.DigitsSplit, expected_tf: np.ndarray, expected_torch: np.ndarray, path: Path
) -> Path:
    """The load tests' payload: test rows, true labels, and each exported model's own answers to check against.

    With `--train native` the two models are trained apart and may disagree on a few rows: each backend is then
    checked against its own model's labels (`expected` is the TF model's, `expected_torch` TorchScript's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "rows": split.x_test.astype(float).tolist(),
                "labels": split.y_test.astype(int).tolist(),
                "expected": expected_tf.astype(int).tolist(),
                "expected_torch": expected_torch.astype(int).tolist(),
            },
            separators=(",", ":"),
        )
    )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument(
        "--train",
        choices=["transfer", "native"],
        default="transfer",
        help="transfer (default): train once in PyTorch and copy the weights into Keras, so both servers "
        "compute the same function; native: train each framework on its own (to compare training too)",
    )
    parser.add_argument(
        "--model", action="append", default=None, help="a registered builtin model (repeatable; default: all)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="default: the registry's, per model")
    parser.add_argument("--seed", type=int, default=data.SEED)
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs", help="TensorBoard logs")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--repack-handler",
        action="store_true",
        help="no training: put export/handler.py into every registered model's existing .mar and stop",
    )
    args = parser.parse_args(argv)
    if args.repack_handler:
        for spec in load_registry():
            if spec.mar.exists():
                state = "handler repacked" if repack_handler(spec.mar) else "handler already current"
                print(f"   {spec.mar.relative_to(ROOT)}: {state}")
        return 0

    registry = load_registry()
    chosen = [m for m in registry if m.builtin and (args.model is None or m.name in args.model)]
    unknown = set(args.model or []) - {m.name for m in chosen}
    if unknown:
        builtins = ", ".join(m.name for m in registry if m.builtin)
        parser.error(f"not a registered builtin model: {', '.join(sorted(unknown))} (builtin: {builtins})")
    cfg = StackConfig.load()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for spec in chosen:
        export_model(spec, args.train, args.epochs or spec.epochs, args.seed, args.runs_dir, stamp, not args.quiet)
    for path in serving_config.write_all(cfg, registry):
        print(f"   wrote {path.relative_to(ROOT)}")
    return 0


def export_model(
    spec: ModelSpec, train: str, epochs: int, seed: int, runs_dir: Path, stamp: str, verbose: bool
) -> None:
    from export import device, keras_model, tensorboard, torch_model  # heavy imports after --help

    assert spec.hidden is not None
    split = data.load_split(seed)
    print(f"== {spec.name}: hidden {spec.hidden}, training ({train}) on digits: {len(split.x_train)} train / "
          f"{len(split.x_test)} test rows, {epochs} epochs")  # fmt: skip
    print(f"   devices: {device.describe()}; TensorBoard: tensorboard --logdir {runs_dir / stamp}")
    mode = train if spec.name == load_registry()[0].name else f"{train}-{spec.name}"
    runs = {fw: tensorboard.run_dir(runs_dir, stamp, mode, fw) for fw in tensorboard.FRAMEWORKS}
    lr = spec.lr
    tmodel = torch_model.train(split, epochs, seed, runs["pytorch"], verbose, hidden=spec.hidden, lr=lr)
    if train == "transfer":
        kmodel = keras_model.build_mlp(spec.width, spec.classes, spec.hidden)
        kmodel.set_weights(torch_model.keras_weights(tmodel))
        keras_model.log_transferred(kmodel, split, runs["tensorflow"], epochs - 1)
    else:
        kmodel = keras_model.train(split, epochs, seed, runs["tensorflow"], verbose, hidden=spec.hidden, lr=lr)

    print(f"== exporting SavedModel to {spec.tf_version_dir}")
    keras_model.export_savedmodel(kmodel, spec.tf_version_dir, split.x_test[:8], spec.name)
    print(f"== exporting TorchScript + .mar to {spec.mar}")
    with tempfile.TemporaryDirectory() as tmp:
        ts_path = torch_model.save_torchscript(tmodel, Path(tmp) / "model.pt")
        build_mar(spec, ts_path, Path(tmp))

    _, serve = keras_model.load_serving_fn(spec.tf_version_dir)
    tf_probs = serve(**{keras_model.INPUT_NAME: split.x_test})[keras_model.OUTPUT_NAME].numpy()
    torch_probs = torch_model.predict(tmodel, split.x_test)
    tf_acc = float((tf_probs.argmax(1) == split.y_test).mean())
    torch_acc = float((torch_probs.argmax(1) == split.y_test).mean())
    diff = float(np.abs(tf_probs - torch_probs).max())
    write_reference(split, tf_probs.argmax(1), torch_probs.argmax(1), spec.reference)
    print(f"== {spec.name} test accuracy: SavedModel {tf_acc:.4f}, TorchScript {torch_acc:.4f}")
    print(
        f"== max |p_tf - p_torch| on the test split: {diff:.2e}; argmax agree: "
        f"{bool((tf_probs.argmax(1) == torch_probs.argmax(1)).all())}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
