"""Run by tests/export/test_vendor_runtime.py under Debian bullseye's Python 3.9 (the TorchServe image's version):
the handler of each `.mar`, with small stand-ins for torch and TorchServe's BaseHandler (the pure-Python parts are
what is checked here: parsing, validation, the batch's bookkeeping), and the container entrypoint.

    python3.9 vendor_py39_check.py MANAGEMENT_URL MAR_DIR [MAR_DIR ...]

Prints one line per check and exits non-zero at the first failure. Written for Python 3.9 itself."""

import importlib.util
import json
import subprocess
import sys
import types


def stub_modules():
    """`torch` and `ts.torch_handler.base_handler`, just enough for the handler's import and its handle()."""
    torch = types.ModuleType("torch")

    class Tensor:
        def __init__(self, rows):
            self.rows = rows

        def cpu(self):
            return self

        def tolist(self):
            return self.rows

    class inference_mode:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    torch.Tensor = Tensor
    torch.tensor = lambda rows, dtype=None, device=None: Tensor([list(r) for r in rows])
    torch.float32 = "float32"
    torch.device = lambda name: name
    torch.cuda = types.SimpleNamespace(is_available=lambda: False)
    torch.inference_mode = inference_mode
    torch.set_num_threads = lambda n: None
    ts = types.ModuleType("ts")
    torch_handler = types.ModuleType("ts.torch_handler")
    base = types.ModuleType("ts.torch_handler.base_handler")

    class BaseHandler:
        def __init__(self):
            self.initialized = False

        def initialize(self, context):
            self.model = ModelStandIn()

    class ModelStandIn:
        """A row's answer is its sum and its first value: each request of a batch must get its own rows'."""

        def to(self, device):
            return self

        def __call__(self, tensor):
            return Tensor([[sum(r), r[0]] for r in tensor.rows])

    base.BaseHandler = BaseHandler
    sys.modules.update(
        {"torch": torch, "ts": ts, "ts.torch_handler": torch_handler, "ts.torch_handler.base_handler": base}
    )


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (": " + detail if detail and not ok else ""))
    if not ok:
        sys.exit(1)


def check_handler(mar_dir):
    spec = importlib.util.spec_from_file_location("handler_" + mar_dir.replace(".", "_"), mar_dir + "/handler.py")
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    with open(mar_dir + "/signature.json") as fh:
        signature = json.load(fh)
    width = signature["n_features"]
    row = [float(i) for i in range(width)]
    for body in (
        json.dumps({"instances": [row]}).encode(),
        bytearray(json.dumps({"instances": [row]}).encode()),
        json.dumps({"instances": [row]}),
        {"instances": [row]},
    ):
        check(mar_dir + ": parse " + type(body).__name__, handler.parse_instances(body, width) == [row])
    for body, needle in (
        (b"\xff", "UTF-8"),
        (b"{", "not valid JSON"),
        ({"rows": []}, "instances"),
        ({"instances": [[1.0] * (width - 1)]}, f"expected {width}"),
        ({"instances": [["x"] * width]}, "not a number"),
        ({"instances": [[True] * width]}, "not a number"),
        ({"instances": [[float("nan")] + [0.0] * (width - 1)]}, "not finite"),
        ({"instances": [[10**400] + [0] * (width - 1)]}, "beyond"),
    ):
        try:
            handler.parse_instances(body, width)
            check(mar_dir + ": refuse " + needle, False, "accepted")
        except ValueError as exc:
            check(mar_dir + ": refuse " + needle, needle in str(exc), str(exc))
    h = handler.DigitsHandler()
    context = types.SimpleNamespace(system_properties={"gpu_id": None, "model_dir": mar_dir}, statuses=[])
    context.set_response_status = lambda code, phrase, idx: context.statuses.append((idx, code))
    h.initialize(context)
    check(mar_dir + ": width from signature.json", h.n_features == width)
    a, b = [1.0] * width, [2.0] * width
    batch = [
        {"body": json.dumps({"instances": [a, b]}).encode()},
        {"body": b"not json"},
        {"data": json.dumps({"instances": [b]}).encode()},
    ]
    answers = h.handle(batch, context)
    check(
        mar_dir + ": batch answers",
        answers[0] == {"predictions": [[sum(a), 1.0], [sum(b), 2.0]]}
        and answers[2] == {"predictions": [[sum(b), 2.0]]}
        and "error" in answers[1],
        repr(answers),
    )
    check(mar_dir + ": the bad request alone is 400", context.statuses == [(1, 400)], repr(context.statuses))


def check_entrypoint(management_url):
    entry = "stack/torchserve_entrypoint.py"
    done = subprocess.run([sys.executable, entry, "--ready", management_url], capture_output=True, text=True)
    check("entrypoint --ready", done.returncode == 0, done.stdout + done.stderr)
    done = subprocess.run(
        [sys.executable, entry, "--grace", "2", "--", sys.executable, "-c", "raise SystemExit(3)"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    check("entrypoint passes on the server's exit status", done.returncode == 3, done.stdout + done.stderr)


if __name__ == "__main__":
    print("python", sys.version.split()[0])
    stub_modules()
    check_entrypoint(sys.argv[1])
    for mar_dir in sys.argv[2:]:
        check_handler(mar_dir)
