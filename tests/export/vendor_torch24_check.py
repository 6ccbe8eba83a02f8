"""Run by tests/export/test_vendor_torch24.py inside the Python 3.9 rootfs with torch 2.4.0 and TorchServe 0.12.0's
own `ts` package on PYTHONPATH (the runtime of pytorch/torchserve:0.12.0-cpu): each `.mar`'s handler, as
TorchServe loads it (its BaseHandler, a real Context, the TorchScript saved by this project's torch), answers the
reference rows with the labels the reference file expects.

    python3.9 vendor_torch24_check.py MAR_DIR REFERENCE_JSON [MAR_DIR REFERENCE_JSON ...]
"""

import importlib.util
import json
import sys

import torch
from ts.context import Context


def check_model(mar_dir, reference_path):
    with open(mar_dir + "/MAR-INF/MANIFEST.json") as fh:
        manifest = json.load(fh)
    with open(reference_path) as fh:
        reference = json.load(fh)
    spec = importlib.util.spec_from_file_location("handler", mar_dir + "/handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # As ts/model_loader.py makes it: no config file in the .mar, so an empty model_yaml_config.
    context = Context(manifest["model"]["modelName"], mar_dir, manifest, 8, None, "0.12.0", model_yaml_config={})
    handler = module.DigitsHandler()
    handler.initialize(context)
    rows = reference["rows"][:64]
    want = reference.get("expected_torch", reference["expected"])[:64]
    # A batch of 4 requests of different sizes, as TorchServe hands them to the handler.
    spans = [(0, 1), (1, 9), (9, 30), (30, 64)]
    batch = [{"body": json.dumps({"instances": rows[a:b]}).encode()} for a, b in spans]
    answers = handler.handle(batch, context)
    got = [max(range(len(p)), key=p.__getitem__) for answer in answers for p in answer["predictions"]]
    ok = got == want
    name = manifest["model"]["modelName"]
    labels = "as the reference" if ok else f"differ: {got} vs {want}"
    print(
        f"{'ok  ' if ok else 'FAIL'} {name}: torch {torch.__version__}, {len(rows)} rows in a batch of "
        f"{len(batch)} requests, labels {labels}"
    )
    return ok


if __name__ == "__main__":
    print("python", sys.version.split()[0])
    args = sys.argv[1:]
    results = [check_model(args[i], args[i + 1]) for i in range(0, len(args), 2)]
    sys.exit(0 if results and all(results) else 1)
