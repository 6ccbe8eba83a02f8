"""`python -m export`: train the digits MLP, export both servers' artifacts, check that they agree."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from export import data, device, serving_config, tensorboard
from stack.config import ROOT, StackConfig

ARCHIVE_HANDLER = ROOT / "export" / "handler.py"
REFERENCE_FILE = ROOT / "models" / "reference" / "digits_test.json"


def build_mar(cfg: StackConfig, torchscript: Path, workdir: Path) -> Path:
    signature = workdir / "signature.json"
    signature.write_text(json.dumps({"n_features": cfg.n_features, "n_classes": cfg.n_classes}))
    cfg.mar_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(Path(sys.executable).parent / "torch-model-archiver"),
        "--model-name", cfg.model_name,
        "--version", serving_config.ts_model_version(cfg),
        "--serialized-file", str(torchscript),
        "--handler", str(ARCHIVE_HANDLER),
        "--extra-files", str(signature),
        "--export-path", str(cfg.mar_path.parent),
        "--force",
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    return cfg.mar_path


def write_reference(
    split: data.DigitsSplit, expected_tf: np.ndarray, expected_torch: np.ndarray, path: Path = REFERENCE_FILE
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
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=data.SEED)
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs", help="TensorBoard logs")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    from export import keras_model, torch_model  # heavy imports after --help

    cfg = StackConfig.load()
    split = data.load_split(args.seed)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    verbose = not args.quiet
    print(f"== training ({args.train}) on digits: {len(split.x_train)} train / {len(split.x_test)} test rows")
    print(f"== devices: {device.describe()}; TensorBoard: tensorboard --logdir {args.runs_dir / stamp}")
    runs = {fw: tensorboard.run_dir(args.runs_dir, stamp, args.train, fw) for fw in tensorboard.FRAMEWORKS}
    tmodel = torch_model.train(split, args.epochs, args.seed, runs["pytorch"], verbose)
    if args.train == "transfer":
        kmodel = keras_model.build_mlp(cfg.n_features, cfg.n_classes)
        kmodel.set_weights(torch_model.keras_weights(tmodel))
        keras_model.log_transferred(kmodel, split, runs["tensorflow"], args.epochs - 1)
    else:
        kmodel = keras_model.train(split, args.epochs, args.seed, runs["tensorflow"], verbose)

    print(f"== exporting SavedModel to {cfg.tf_version_dir.relative_to(ROOT)}")
    keras_model.export_savedmodel(kmodel, cfg.tf_version_dir, split.x_test[:8], cfg.model_name)
    print(f"== exporting TorchScript + .mar to {cfg.mar_path.relative_to(ROOT)}")
    with tempfile.TemporaryDirectory() as tmp:
        ts_path = torch_model.save_torchscript(tmodel, Path(tmp) / "model.pt")
        build_mar(cfg, ts_path, Path(tmp))
    for path in serving_config.write_all(cfg):
        print(f"   wrote {path.relative_to(ROOT)}")

    _, serve = keras_model.load_serving_fn(cfg.tf_version_dir)
    tf_probs = serve(**{keras_model.INPUT_NAME: split.x_test})[keras_model.OUTPUT_NAME].numpy()
    torch_probs = torch_model.predict(tmodel, split.x_test)
    tf_acc = float((tf_probs.argmax(1) == split.y_test).mean())
    torch_acc = float((torch_probs.argmax(1) == split.y_test).mean())
    diff = float(np.abs(tf_probs - torch_probs).max())
    write_reference(split, tf_probs.argmax(1), torch_probs.argmax(1))
    print(f"== test accuracy: SavedModel {tf_acc:.4f}, TorchScript {torch_acc:.4f}")
    print(
        f"== max |p_tf - p_torch| on the test split: {diff:.2e}; argmax agree: "
        f"{bool((tf_probs.argmax(1) == torch_probs.argmax(1)).all())}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
