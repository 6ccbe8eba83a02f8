"""`python -m export.check --model NAME`: is a registered model (yours, or a builtin) servable, and do both servers
and the gateway give the answers its reference file says? (`make check-model MODEL=NAME`)

1. Files: the SavedModel version directory, the .mar, the reference file (rows of the registered width).
2. The SavedModel's serving signature: one input named as registered, [None, width] float32; one output
   [None, classes]; run on the reference rows with the TensorFlow runtime, its labels are the reference's
   `expected`.
3. The .mar's manifest: the registered name and version.
4. Live: a native stack serving only this model (free loopback ports). Each server directly, and the gateway's
   /models/NAME/predict/{tf,torch}, must answer the reference rows with the expected labels (`expected_torch`
   for TorchServe where given). It prints the largest difference between the two servers' probabilities.

Exit status 0 when everything holds. Then: `make bench ARGS="--models NAME"`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

ROWS = 32


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.check", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a name in the registry")
    p.add_argument("--registry", type=Path, default=None, help="a registry file other than models.toml")
    p.add_argument("--no-live", action="store_true", help="skip step 4 (no servers started)")
    args = p.parse_args(argv)
    if args.registry:
        os.environ["SERVECOMPARE_MODELS"] = str(args.registry.resolve())

    from stack.registry import RegistryError
    from stack.registry import model as lookup

    try:
        spec = lookup(args.model)
    except (RegistryError, OSError) as exc:
        print(f"check {args.model}: FAILED: {exc}")
        return 1
    problems: list[str] = []
    ref: dict[str, Any] = {}

    def step(name: str, fn: Any) -> None:
        try:
            detail = fn()
            print(f"   ok   {name}{': ' + detail if detail else ''}", flush=True)
        except Exception as exc:
            problems.append(f"{name}: {exc}")
            print(f"   FAIL {name}: {exc}", flush=True)

    def files() -> str:
        missing = [str(x) for x in (spec.tf_version_dir / "saved_model.pb", spec.mar, spec.reference) if not x.exists()]
        if missing:
            raise FileNotFoundError(", ".join(missing))
        ref.update(json.loads(spec.reference.read_text()))
        widths = {len(r) for r in ref["rows"]}
        if widths != {spec.width} or len(ref["expected"]) != len(ref["rows"]):
            raise ValueError(f"reference rows of widths {sorted(widths)} / {len(ref['expected'])} labels")
        return f"{len(ref['rows'])} reference rows of {spec.width} features"

    def savedmodel() -> str:
        import numpy as np

        from export import keras_model

        _, serve = keras_model.load_serving_fn(spec.tf_version_dir)
        ((name, tensor),) = serve.structured_input_signature[1].items()
        if name != spec.input or tensor.shape.as_list() != [None, spec.width]:
            raise ValueError(f"input {name} {tensor.shape.as_list()}, registered {spec.input} [None, {spec.width}]")
        (out_name,) = list(serve.structured_outputs)
        probs = serve(**{name: np.asarray(ref["rows"], dtype=np.float32)})[out_name].numpy()
        if probs.shape != (len(ref["rows"]), spec.classes):
            raise ValueError(f"output {out_name} {probs.shape}, registered [None, {spec.classes}]")
        wrong = int((probs.argmax(1) != np.asarray(ref["expected"])).sum())
        if wrong:
            raise ValueError(f"{wrong} of {len(probs)} labels differ from the reference's `expected`")
        return f"signature {name} -> {out_name} [None, {spec.classes}], every label as expected"

    def mar() -> str:
        with zipfile.ZipFile(spec.mar) as archive:
            manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))["model"]
        if manifest.get("modelName") != spec.name or str(manifest.get("modelVersion")) != str(spec.version):
            raise ValueError(f"manifest says {manifest.get('modelName')} v{manifest.get('modelVersion')}")
        return f"manifest {spec.name} v{spec.version}, handler {manifest.get('handler')}"

    def live() -> str:
        import httpx

        from stack.config import StackConfig
        from stack.launcher import NativeStack, free_port_overrides

        cfg = StackConfig.load({**spec.stack_overrides(), **free_port_overrides()})
        rows = ref["rows"][:ROWS]
        want = {"tf": ref["expected"][:ROWS], "torch": ref.get("expected_torch", ref["expected"])[:ROWS]}
        probs = {}
        with tempfile.TemporaryDirectory(prefix="check-") as run_dir, NativeStack(cfg, Path(run_dir), models=[spec]):
            routes = {
                "tf": f"{cfg.tf_rest_url}/v1/models/{spec.name}:predict",
                "torch": f"{cfg.ts_inference_url}/predictions/{spec.name}",
            }
            for side, url in routes.items():
                for where in (url, f"{cfg.gateway_url}/models/{spec.name}/predict/{side}"):
                    r = httpx.post(where, json={"instances": rows}, timeout=30)
                    if r.status_code != 200:
                        raise ValueError(f"{where}: HTTP {r.status_code} {r.text[:300]}")
                    got = r.json()["predictions"]
                    labels = [max(range(len(x)), key=x.__getitem__) for x in got]
                    if labels != want[side]:
                        raise ValueError(f"{where}: labels {labels[:8]}... not the reference's")
                    probs[side] = got
        pairs = zip(probs["tf"], probs["torch"], strict=True)
        diff = max(abs(a - b) for pa, pb in pairs for a, b in zip(pa, pb, strict=True))
        return f"both servers and the gateway answer {len(rows)} rows as expected; max |p_tf - p_torch| {diff:.2e}"

    print(f"== check {spec.name} (registry {os.environ.get('SERVECOMPARE_MODELS') or 'models.toml'})")
    step("files", files)
    if not problems:
        step("SavedModel", savedmodel)
        step(".mar", mar)
        if not args.no_live and not problems:
            step("served", live)
    if problems:
        print(f"check {spec.name}: FAILED ({len(problems)} problem(s))")
        return 1
    print(f"check {spec.name}: PASSED; next: make bench ARGS=\"--models {spec.name}\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
