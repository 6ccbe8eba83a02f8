"""Every registered model through the gateway: /models/{name}/..., its own row width, 404 for an unknown name,
readiness over every model. Fakes (respx) for the backends; a registry made in the test (a 16-feature model)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from gateway.main import create_app
from gateway.settings import Settings

TF, TS, TSM = "http://tf.test", "http://ts.test", "http://tsm.test"
WIDTHS = {"digits": 64, "mine": 16}
CLASSES = {"digits": 10, "mine": 3}


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    entries = "".join(
        f'[[models]]\nname = "{n}"\nversion = 1\nwidth = {w}\nclasses = {CLASSES[n]}\n'
        f'tf_base = "tf/{n}"\nmar = "torch/{n}.mar"\nreference = "ref/{n}.json"\n\n'
        for n, w in WIDTHS.items()
    )
    path = tmp_path / "models.toml"
    path.write_text(entries)
    monkeypatch.setenv("SERVECOMPARE_MODELS", str(path))
    return path


def answer(rows: int, classes: int) -> dict[str, object]:
    return {"predictions": [[1.0] + [0.0] * (classes - 1) for _ in range(rows)]}


@pytest.fixture
def upstreams() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        for name in WIDTHS:

            def tf_predict(request: httpx.Request, name: str = name) -> httpx.Response:
                rows = len(json.loads(request.content)["instances"])
                return httpx.Response(200, json=answer(rows, CLASSES[name]))

            mock.post(f"{TF}/v1/models/{name}:predict").mock(side_effect=tf_predict)
            mock.post(f"{TS}/predictions/{name}").mock(side_effect=tf_predict)
            mock.get(f"{TF}/v1/models/{name}").respond(
                json={"model_version_status": [{"version": "1", "state": "AVAILABLE"}]}
            )
            mock.get(f"{TSM}/models/{name}").respond(json=[{"modelVersion": "1", "workers": [{"status": "READY"}]}])
        yield mock


@pytest.fixture
def client(registry: Path, upstreams: respx.MockRouter) -> Iterator[TestClient]:
    settings = Settings(tf_url=TF, torch_url=TS, torch_management_url=TSM, model_name="digits",
                        upstream_transport="httpcore")  # fmt: skip
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def body(width: int, rows: int = 2) -> dict[str, object]:
    return {"instances": [[0.5] * width for _ in range(rows)]}


def test_every_registered_model_is_served_on_both_backends(client: TestClient) -> None:
    listed = client.get("/models").json()
    assert listed["default"] == "digits" and [m["name"] for m in listed["models"]] == ["digits", "mine"]
    for backend in ("tf", "torch"):
        r = client.post(f"/models/mine/predict/{backend}", json=body(16, 3))
        assert r.status_code == 200, r.text
        assert r.json()["model_name"] == "mine" and r.json()["labels"] == [0, 0, 0]
        assert len(r.json()["predictions"][0]) == 3
    r = client.post("/models/mine/compare", json=body(16))
    assert r.status_code == 200 and r.json()["labels_agree"] is True
    assert client.post("/models/mine/predict", json=body(16)).status_code == 200
    # today's URLs: the default model
    r = client.post("/predict/tf", json=body(64))
    assert r.status_code == 200 and r.json()["model_name"] == "digits"


def test_rows_are_checked_against_the_models_own_width(client: TestClient) -> None:
    r = client.post("/models/mine/predict/tf", json=body(64))
    assert r.status_code == 422 and "at most 16" in r.text
    r = client.post("/models/digits/predict/tf", json=body(16))
    assert r.status_code == 422 and "at least 64" in r.text


def test_an_unknown_model_is_a_404_naming_the_served_ones(client: TestClient) -> None:
    r = client.post("/models/nope/predict/tf", json=body(64))
    assert r.status_code == 404
    assert "unknown model 'nope'" in r.json()["error"] and "digits, mine" in r.json()["error"]


def test_readiness_covers_every_model(client: TestClient, upstreams: respx.MockRouter) -> None:
    assert client.get("/readyz").status_code == 200
    upstreams.get(f"{TF}/v1/models/mine").respond(json={"model_version_status": [{"version": "1", "state": "LOADING"}]})
    r = client.get("/readyz")
    assert r.status_code == 503 and "mine" in r.json()["backends"]["tf"] and r.json()["ready"] == ["torch"]
    assert client.get("/readyz?require=torch").status_code == 200
