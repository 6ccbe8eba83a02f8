"""The TorchServe handler on good and bad input, run through TorchServe's own Context and loader path."""

from __future__ import annotations

import json
import math
import zipfile

import pytest
from ts.context import Context, RequestProcessor

from export.handler import DigitsHandler, parse_instances
from stack.config import StackConfig

CFG = StackConfig.load()


@pytest.fixture(scope="module")
def handler_and_dir(tmp_path_factory):  # type: ignore[no-untyped-def]
    model_dir = tmp_path_factory.mktemp("digits_mar")
    with zipfile.ZipFile(CFG.mar_path) as mar:
        mar.extractall(model_dir)
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
    context = Context(CFG.model_name, str(model_dir), manifest, 8, None, "0.12.0", model_yaml_config={})
    handler = DigitsHandler()
    handler.initialize(context)
    return handler, manifest, model_dir


def run_batch(handler_and_dir, bodies):  # type: ignore[no-untyped-def]
    handler, manifest, model_dir = handler_and_dir
    context = Context(CFG.model_name, str(model_dir), manifest, len(bodies), None, "0.12.0", model_yaml_config={})
    context.request_processor = [RequestProcessor({}) for _ in bodies]
    out = handler.handle([{"body": b} for b in bodies], context)
    return out, [rp.get_response_status_code() for rp in context.request_processor]


def test_good_batch_one_forward_pass(handler_and_dir, test_rows) -> None:  # type: ignore[no-untyped-def]
    handler = handler_and_dir[0]
    calls = []
    original = handler.model
    handler.model = lambda x: (calls.append(x.shape), original(x))[1]
    try:
        out, codes = run_batch(handler_and_dir, [{"instances": test_rows[:2]}, {"instances": test_rows[2:5]}])
    finally:
        handler.model = original
    assert calls == [(5, 64)], "all requests of a batch go through one forward pass"
    assert codes == [200, 200]
    assert [len(o["predictions"]) for o in out] == [2, 3]
    for o in out:
        for probs in o["predictions"]:
            assert len(probs) == 10 and math.isclose(sum(probs), 1.0, rel_tol=1e-5)


def test_bytes_and_text_bodies(handler_and_dir, test_rows) -> None:  # type: ignore[no-untyped-def]
    raw = json.dumps({"instances": test_rows[:1]})
    out, codes = run_batch(handler_and_dir, [raw.encode(), bytearray(raw.encode()), raw])
    assert codes == [200, 200, 200]
    assert out[0] == out[1] == out[2]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"instances": [[0.0] * 63]}, "instance 0 has 63 values; expected 64"),
        ({"instances": [[0.0] * 64, [0.0] * 65]}, "instance 1 has 65 values; expected 64"),
        ({"instances": [["a"] + [0.0] * 63]}, "instance 0 value 0 is not a number: 'a'"),
        ({"instances": [[True] + [0.0] * 63]}, "instance 0 value 0 is not a number: True"),
        ({"instances": [[float("nan")] + [0.0] * 63]}, "instance 0 value 0 is not finite: nan"),
        ({"instances": [[0.0] * 63 + [float("inf")]]}, "instance 0 value 63 is not finite: inf"),
        ({"instances": []}, "'instances' must be a non-empty list of rows"),
        ({"instances": [0.0] * 64}, "instance 0 is not a list of 64 numbers"),
        ({"rows": []}, 'expected a JSON object {"instances": [[...], ...]}'),
        ([1, 2], 'expected a JSON object {"instances": [[...], ...]}'),
        (b"{not json", "request body is not valid JSON"),
        (b"\xff\xfe", "request body is not UTF-8 text"),
        (b'{"instances": [[NaN' + b", 0" * 63 + b"]]}", "is not finite"),
    ],
)
def test_bad_input_is_a_400_with_a_message(handler_and_dir, body, message) -> None:  # type: ignore[no-untyped-def]
    out, codes = run_batch(handler_and_dir, [body])
    assert codes == [400]
    assert message in out[0]["error"]
    # The whole message, not a part of it: what TorchServe's client reads (the JSON errors go on with a position).
    assert out[0]["error"] == message or message == "is not finite" or out[0]["error"].startswith(message + ":")


def test_mixed_batch_only_the_bad_request_fails(handler_and_dir, test_rows) -> None:  # type: ignore[no-untyped-def]
    good = {"instances": test_rows[:2]}
    out, codes = run_batch(handler_and_dir, [good, {"instances": [[0.0] * 3]}, good, b"junk"])
    assert codes == [200, 400, 200, 400]
    assert out[0] == out[2] and len(out[0]["predictions"]) == 2
    assert "expected 64" in out[1]["error"] and "not valid JSON" in out[3]["error"]


def test_parse_instances_limits_rows() -> None:
    with pytest.raises(ValueError, match="at most 2"):
        parse_instances({"instances": [[0.0]] * 3}, 1, max_rows=2)


def test_values_beyond_the_bound_fail_only_their_own_request(handler_and_dir, test_rows) -> None:  # type: ignore[no-untyped-def]
    """A JSON integer too large for a float raised OverflowError (the whole batch got 503); 1e39 gave NaN with 200."""
    good = {"instances": test_rows[:1]}
    huge_int = b'{"instances": [[' + b"1" + b"0" * 400 + b", 0" * 63 + b"]]}"
    out, codes = run_batch(handler_and_dir, [good, huge_int, {"instances": [[1e39] + [0.0] * 63]}, good])
    assert codes == [200, 400, 400, 200]
    assert "beyond ±1e+06" in out[1]["error"] and "digits" in out[1]["error"] and "1e+39" in out[2]["error"]
    assert out[0] == out[3]


def test_the_handler_bounds_values_like_the_gateway() -> None:
    from export.handler import FEATURE_ABS_MAX as handler_bound
    from gateway.schemas import FEATURE_ABS_MAX as gateway_bound

    assert handler_bound == gateway_bound


def test_the_handler_picks_its_device_like_the_trainers(monkeypatch, handler_and_dir) -> None:  # type: ignore[no-untyped-def]
    import torch

    from export import device
    from export.handler import choose_device

    handler, _, _ = handler_and_dir
    assert handler.device == torch.device("cpu")  # no GPU here (gpu_id None in the fixture's Context)
    assert str(next(handler.model.parameters()).device) == "cpu"
    assert choose_device(None) == torch.device("cpu")
    assert choose_device(0) == device.torch_device() == torch.device("cpu")  # CUDA absent: CPU, as the trainers
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device(1) == torch.device("cuda:1") and device.torch_device() == torch.device("cuda")


def test_each_request_of_a_batch_gets_the_answer_for_its_own_rows(handler_and_dir, test_rows) -> None:  # type: ignore[no-untyped-def]
    """Known answers with distinct values: requests of different sizes, a malformed one in the middle, each compared
    with a forward pass of its own rows through the .mar's TorchScript loaded apart from the handler."""
    import torch

    _, _, model_dir = handler_and_dir
    reference = torch.jit.load(str(model_dir / "model.pt"), map_location="cpu").eval()
    sizes = [3, 1, 5, 2]
    starts = [0, 3, 4, 9]
    requests = [test_rows[s : s + n] for s, n in zip(starts, sizes, strict=True)]
    bodies: list[object] = [{"instances": r} for r in requests]
    bodies.insert(2, {"instances": [[0.0] * 64, [0.0] * 7]})  # malformed, between the 1-row and the 5-row request
    out, codes = run_batch(handler_and_dir, bodies)
    assert codes == [200, 200, 400, 200, 200]
    assert "instance 1 has 7 values" in out[2]["error"]
    good = [o for i, o in enumerate(out) if i != 2]
    for rows, answer in zip(requests, good, strict=True):
        with torch.inference_mode():
            expected = reference(torch.tensor(rows, dtype=torch.float32)).tolist()
        got = answer["predictions"]
        assert len(got) == len(rows)
        for g, e in zip(got, expected, strict=True):
            assert g == pytest.approx(e, abs=1e-5)
    # The rows are distinct digits, so a shifted or repeated slice would differ: guard the test's own premise.
    first_rows = [tuple(round(p, 4) for p in g["predictions"][0]) for g in good]
    assert len(set(first_rows)) == len(first_rows)


def test_row_and_value_limits_are_inclusive() -> None:
    row = [0.0] * 3
    assert len(parse_instances({"instances": [row] * 10_000}, 3)) == 10_000  # the default limit itself is accepted
    with pytest.raises(ValueError, match="has 10001 rows; at most 10000"):
        parse_instances({"instances": [row] * 10_001}, 3)
    assert parse_instances({"instances": [row] * 2}, 3, max_rows=2) == [row] * 2
    edge = [[1e6, -1e6, 0]]
    assert parse_instances({"instances": edge}, 3) == edge  # exactly the bound is a value, not an error


@pytest.mark.parametrize(
    ("digits", "shown"),
    [(40, "1" * 40), (41, "1" * 20 + "... (41 digits)"), (60, "1" * 20 + "... (60 digits)")],
)
def test_a_huge_value_is_shown_whole_up_to_40_characters(digits: int, shown: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_instances({"instances": [[int("1" * digits), 0]]}, 2)
    assert str(err.value) == f"instance 0 value 0 is beyond ±1e+06: {shown}"


def test_requests_as_bare_bodies_or_under_data_are_read(handler_and_dir, test_rows) -> None:  # type: ignore[no-untyped-def]
    """TorchServe hands a request as {"body": ...} or {"data": ...}; a bare body (not a dict) is read as it is."""
    handler, manifest, model_dir = handler_and_dir
    raw = json.dumps({"instances": test_rows[:1]}).encode()
    context = Context(CFG.model_name, str(model_dir), manifest, 3, None, "0.12.0", model_yaml_config={})
    context.request_processor = [RequestProcessor({}) for _ in range(3)]
    out = handler.handle([{"body": raw}, {"data": raw}, raw], context)
    assert [rp.get_response_status_code() for rp in context.request_processor] == [200, 200, 200]
    assert out[0] == out[1] == out[2] and len(out[0]["predictions"]) == 1


def test_integer_features_are_fed_as_float32(handler_and_dir) -> None:  # type: ignore[no-untyped-def]
    """JSON integers make an int64 tensor unless the handler says float32 (the model then raises for the batch)."""
    ints = [list(range(64))]
    as_ints, codes = run_batch(handler_and_dir, [{"instances": ints}])  # alone: batched with floats, torch infers
    as_floats, _ = run_batch(handler_and_dir, [{"instances": [[float(v) for v in ints[0]]]}])
    assert codes == [200] and as_ints == as_floats


def test_a_refusal_is_logged_and_gets_its_phrase(handler_and_dir, caplog) -> None:  # type: ignore[no-untyped-def]
    handler, manifest, model_dir = handler_and_dir
    context = Context(CFG.model_name, str(model_dir), manifest, 2, None, "0.12.0", model_yaml_config={})
    context.request_processor = [RequestProcessor({}) for _ in range(2)]
    with caplog.at_level("WARNING", logger="export.handler"):
        handler.handle([{"body": {"instances": [[0.0] * 64]}}, {"body": {"instances": []}}], context)
    assert [r.getMessage() for r in caplog.records] == [
        "request 1 of the batch refused (400): 'instances' must be a non-empty list of rows"
    ]
    assert context.request_processor[1].get_response_status_phrase() == "Bad Request"
    assert context.request_processor[0].get_response_status_phrase() is None


def test_the_batch_goes_to_the_handlers_device(handler_and_dir) -> None:  # type: ignore[no-untyped-def]
    """The input tensor is made on self.device (the meta device here stands for a GPU this machine lacks)."""
    import torch

    handler = handler_and_dir[0]
    seen = []
    model, device = handler.model, handler.device
    handler.model = lambda x: (seen.append(x.device), torch.zeros(len(x), 10))[1]
    handler.device = torch.device("meta")
    try:
        run_batch(handler_and_dir, [{"instances": [[0.0] * 64]}])
    finally:
        handler.model, handler.device = model, device
    assert seen == [torch.device("meta")]


def test_initialize_reads_the_signature_the_device_and_the_thread_count(  # type: ignore[no-untyped-def]
    handler_and_dir, tmp_path, monkeypatch, caplog
) -> None:
    """A .mar whose signature.json says 8 features: the handler reads it from the model_dir TorchServe gives; the
    device is the one choose_device picks for the worker's gpu_id; DIGITS_TORCH_THREADS sets torch's threads."""
    import shutil

    import torch

    from export import handler as handler_module

    _, manifest, model_dir = handler_and_dir
    shutil.copytree(model_dir, tmp_path / "m")
    (tmp_path / "m" / "signature.json").write_text(json.dumps({"n_features": 8, "n_classes": 10}))
    asked = []

    def pick(gpu_id):  # type: ignore[no-untyped-def]
        asked.append(gpu_id)
        return torch.device("meta")

    moved = []

    def to(module, device):  # type: ignore[no-untyped-def]
        moved.append(device)  # TorchScript can't go to the meta device; what was asked is the point
        return module

    monkeypatch.setattr(handler_module, "choose_device", pick)
    monkeypatch.setattr(torch.jit.RecursiveScriptModule, "to", to)
    monkeypatch.setenv("DIGITS_TORCH_THREADS", "2")
    threads = torch.get_num_threads()
    context = Context(CFG.model_name, str(tmp_path / "m"), manifest, 1, 3, "0.12.0", model_yaml_config={})
    fresh = DigitsHandler()
    assert fresh.n_features == 64  # the default when a .mar has no signature.json
    try:
        with caplog.at_level("INFO", logger="export.handler"):
            fresh.initialize(context)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert asked == [3] and fresh.device == torch.device("meta")
    assert moved == [torch.device("meta")]
    assert "digits model on meta" in [r.getMessage() for r in caplog.records]
    assert fresh.n_features == 8 and fresh.initialized is True
    with pytest.raises(ValueError, match="instance 0 has 64 values; expected 8"):
        parse_instances({"instances": [[0.0] * 64]}, fresh.n_features)
