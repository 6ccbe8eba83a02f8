"""The real gateway in front of real TorchServe and the TF-Serving-compatible server (the native stack)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway.main import create_app
from gateway.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gw(native_stack):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=native_stack.cfg.gateway_url, timeout=10) as c:
        yield c


def test_tf_through_gateway_equals_direct_call(native_stack, gw, test_rows) -> None:  # type: ignore[no-untyped-def]
    cfg = native_stack.cfg
    direct = httpx.post(f"{cfg.tf_rest_url}/v1/models/{cfg.model_name}:predict", json={"instances": test_rows}).json()
    via = gw.post("/predict/tf", json={"instances": test_rows}).json()
    assert via["predictions"] == direct["predictions"]
    assert via["labels"] == list(np.argmax(direct["predictions"], axis=1))
    assert via["model_version"] == str(cfg.model_version)


def test_torch_through_gateway_equals_direct_call(native_stack, gw, test_rows) -> None:  # type: ignore[no-untyped-def]
    cfg = native_stack.cfg
    direct = httpx.post(f"{cfg.ts_inference_url}/predictions/{cfg.model_name}", json={"instances": test_rows}).json()
    via = gw.post("/predict/torch", json={"instances": test_rows}).json()
    assert via["predictions"] == direct["predictions"]
    assert via["model_version"] == str(cfg.model_version)


def test_compare_reports_agreement(gw, test_rows, digits) -> None:  # type: ignore[no-untyped-def]
    body = gw.post("/compare", json={"instances": test_rows}).json()
    assert body["labels_agree"] is True
    assert body["max_abs_diff"] < 1e-5
    assert (
        body["tf"]["labels"] == list(digits.y_test[: len(test_rows)])
        or np.mean(np.asarray(body["tf"]["labels"]) == digits.y_test[: len(test_rows)]) > 0.9
    )


def test_readiness_and_metrics(gw) -> None:  # type: ignore[no-untyped-def]
    from stack.registry import load_registry

    names = [m.name for m in load_registry()]
    r = gw.get("/readyz")
    assert r.status_code == 200
    assert r.json()["backends"] == {
        "tf": "; ".join(f"{n}: AVAILABLE" for n in names),
        "torch": "; ".join(f"{n}: READY" for n in names),
    }
    assert "gateway_requests_total" in gw.get("/metrics").text


def test_every_registered_model_answers_through_the_real_stack(gw) -> None:  # type: ignore[no-untyped-def]
    """The wide model too: exported, served by both real servers, routed by name, labels as its reference says."""
    import json

    from stack.registry import load_registry

    for spec in load_registry():
        ref = json.loads(spec.reference.read_text())
        rows = ref["rows"][:8]
        for backend, key in (("tf", "expected"), ("torch", "expected_torch")):
            r = gw.post(f"/models/{spec.name}/predict/{backend}", json={"instances": rows})
            assert r.status_code == 200, (spec.name, backend, r.text)
            assert r.json()["labels"] == ref[key][:8] and r.json()["model_name"] == spec.name


def test_torchserve_refuses_bad_rows_of_a_request_on_its_own(native_stack, test_rows) -> None:  # type: ignore[no-untyped-def]
    cfg = native_stack.cfg
    r = httpx.post(f"{cfg.ts_inference_url}/predictions/{cfg.model_name}", json={"instances": [[1.0, 2.0]]})
    assert r.status_code == 400 and "expected 64" in r.json()["error"]
    ok = httpx.post(f"{cfg.ts_inference_url}/predictions/{cfg.model_name}", json={"instances": test_rows[:1]})
    assert ok.status_code == 200


def test_grpc_upstream_gives_the_same_answer_as_rest(native_stack, test_rows) -> None:  # type: ignore[no-untyped-def]
    cfg = native_stack.cfg
    common = dict(
        tf_url=cfg.tf_rest_url,
        tf_grpc_target=f"127.0.0.1:{cfg.tf_grpc_port}",
        torch_url=cfg.ts_inference_url,
        torch_management_url=cfg.ts_management_url,
    )
    with (
        TestClient(create_app(Settings(**common, tf_protocol="rest"))) as rest,
        TestClient(create_app(Settings(**common, tf_protocol="grpc"))) as grpc_client,
    ):
        a = rest.post("/predict/tf", json={"instances": test_rows}).json()
        b = grpc_client.post("/predict/tf", json={"instances": test_rows}).json()
    assert b["model_version"] == "1"
    assert np.array_equal(
        np.asarray(a["predictions"], dtype=np.float32), np.asarray(b["predictions"], dtype=np.float32)
    )
    assert a["labels"] == b["labels"]
