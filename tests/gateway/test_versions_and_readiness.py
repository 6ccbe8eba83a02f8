"""Model versions never on the prediction path; readiness in the sense asked; k8s service links don't break it."""

from __future__ import annotations

import time

import httpx
import respx

from tests.conftest import gateway_process
from tests.gateway.test_routes import PROBS, ROW, TF, TF_PREDICT, TS_PREDICT, TSM, make_client


def _status(*versions: str) -> dict[str, object]:
    return {"model_version_status": [{"version": v, "state": "AVAILABLE"} for v in versions]}


def test_a_torchserve_prediction_makes_no_management_call() -> None:
    with respx.mock(assert_all_called=False) as mock:
        management = mock.get(f"{TSM}/models/digits").respond(500)
        mock.get(f"{TF}/v1/models/digits").respond(json=_status("1"))
        mock.post(TS_PREDICT).respond(json={"predictions": [PROBS]})
        for readiness, expected_calls in (("ping", 0), ("workers", 1)):
            management.calls.reset()
            with make_client(torch_readiness=readiness, torch_model_version="7") as c:
                before = management.call_count  # workers mode: the one background read at start-up
                for _ in range(5):
                    r = c.post("/predict/torch", json={"instances": [ROW]})
                    assert r.status_code == 200 and r.json()["model_version"] == "7", r.text
                assert management.call_count == before == expected_calls, readiness


def test_the_tf_version_is_refreshed_and_never_fails_a_good_prediction() -> None:
    with respx.mock(assert_all_called=False) as mock:
        status = mock.get(f"{TF}/v1/models/digits").respond(json=_status("1"))
        mock.post(TF_PREDICT).respond(json={"predictions": [PROBS]})
        with make_client(version_refresh_s=0.05) as c:
            assert c.post("/predict/tf", json={"instances": [ROW]}).json()["model_version"] == "1"
            status.respond(json=_status("1", "2"))  # TF Serving loaded a newer version
            deadline = time.monotonic() + 5
            while c.post("/predict/tf", json={"instances": [ROW]}).json()["model_version"] != "2":
                assert time.monotonic() < deadline, "the newer version was never reported"
                time.sleep(0.05)
            status.respond(503)  # the status API fails: predictions still succeed, with the last known version
            failed_from = status.call_count
            deadline = time.monotonic() + 5
            while status.call_count < failed_from + 2:  # two refreshes have met the 503: a count, not a sleep
                assert time.monotonic() < deadline, "the version was not refreshed"
                time.sleep(0.05)
            r = c.post("/predict/tf", json={"instances": [ROW]})
            assert r.status_code == 200 and r.json()["model_version"] == "2"


def test_readiness_in_the_sense_asked() -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{TF}/v1/models/digits").respond(json=_status("1"))
        mock.get(f"{TSM}/models/digits").mock(side_effect=httpx.ConnectError("refused"))
        with make_client() as c:
            everything = c.get("/readyz")
            assert everything.status_code == 503 and "torch" in everything.json()["error"]
            assert everything.json()["ready"] == ["tf"] and "AVAILABLE" in everything.json()["backends"]["tf"]
            assert c.get("/readyz?require=any").status_code == 200  # this gateway can serve: stay in the Service
            assert c.get("/readyz?require=tf").status_code == 200
            assert c.get("/readyz?require=torch").status_code == 503
            bad = c.get("/readyz?require=onnx")
            assert bad.status_code == 422 and "error" in bad.json()
        mock.get(f"{TF}/v1/models/digits").mock(side_effect=httpx.ConnectError("refused"))
        with make_client() as c:
            assert c.get("/readyz?require=any").status_code == 503


def test_the_gateway_starts_with_kubernetes_service_link_variables() -> None:
    """What the kubelet injects for Services named gateway, tf-serving and torchserve (enableServiceLinks)."""
    links = {}
    for service, svc_port in (("GATEWAY", 8000), ("TF_SERVING", 8501), ("TORCHSERVE", 8080)):
        addr = f"tcp://10.96.12.34:{svc_port}"
        links |= {
            f"{service}_PORT": addr,
            f"{service}_SERVICE_HOST": "10.96.12.34",
            f"{service}_SERVICE_PORT": str(svc_port),
            f"{service}_PORT_{svc_port}_TCP": addr,
            f"{service}_PORT_{svc_port}_TCP_ADDR": "10.96.12.34",
            f"{service}_PORT_{svc_port}_TCP_PORT": str(svc_port),
            f"{service}_PORT_{svc_port}_TCP_PROTO": "tcp",
        }
    env = {**links, "GATEWAY_TF_URL": "http://127.0.0.1:9", "GATEWAY_TORCH_URL": "http://127.0.0.1:9"}
    with gateway_process(env) as (_, base):  # it serves: /healthz answered
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
