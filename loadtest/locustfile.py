"""Locust users for every target: TF Serving and TorchServe directly, the gateway per backend, and /compare.

Each target has its own base URL (env LOADTEST_TF_URL, LOADTEST_TS_URL, LOADTEST_GATEWAY_URL) and one class;
pick classes by name on the command line. Every answer is checked: status, shape and the label the model
must give for that row. `LOADTEST_RATE_PER_USER` > 0 paces each user (requests/s) for the SLO search.
"""

from __future__ import annotations

import os

from locust import FastHttpUser, constant, constant_throughput, task

from loadtest.payloads import check_predictions, pick
from loadtest.targets import PATHS, TARGETS

MODEL = os.environ.get("LOADTEST_MODEL_NAME", "digits")
HEADERS = {"Content-Type": "application/json"}
_RATE = float(os.environ.get("LOADTEST_RATE_PER_USER", "0"))


def _wait():  # type: ignore[no-untyped-def]
    return constant_throughput(_RATE) if _RATE > 0 else constant(0)


class _Target(FastHttpUser):
    abstract = True
    wait_time = _wait()
    path = ""
    name = ""
    key = "predictions"
    connection_timeout = 5.0
    network_timeout = 10.0

    def check(self, body: dict, expected: tuple[int, ...]) -> str | None:  # type: ignore[type-arg]
        return check_predictions(body.get(self.key), expected)

    @task
    def predict(self) -> None:
        payload = pick()
        # FastHttpSession sends bytes as they are (its annotation says str).
        with self.client.post(
            self.path,
            data=payload.body,  # type: ignore[arg-type]
            headers=HEADERS,
            name=self.name,
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
                return
            try:
                body = resp.json()
            except ValueError:
                resp.failure("response is not JSON")
                return
            problem = self.check(body, payload.expected) if isinstance(body, dict) else "response is not an object"
            if problem:
                resp.failure(problem)
            else:
                resp.success()


class TFServingDirect(_Target):
    host = os.environ.get("LOADTEST_TF_URL", "http://127.0.0.1:8501")
    path = PATHS["tf-direct"].format(model=MODEL)
    name = "tf-direct"


class TorchServeDirect(_Target):
    host = os.environ.get("LOADTEST_TS_URL", "http://127.0.0.1:8080")
    path = PATHS["torch-direct"].format(model=MODEL)
    name = "torch-direct"


class GatewayTF(_Target):
    host = os.environ.get("LOADTEST_GATEWAY_URL", "http://127.0.0.1:8000")
    path = PATHS["gateway-tf"].format(model=MODEL)
    name = "gateway-tf"


class GatewayTorch(_Target):
    host = os.environ.get("LOADTEST_GATEWAY_URL", "http://127.0.0.1:8000")
    path = PATHS["gateway-torch"].format(model=MODEL)
    name = "gateway-torch"


class GatewayCompare(_Target):
    host = os.environ.get("LOADTEST_GATEWAY_URL", "http://127.0.0.1:8000")
    path = PATHS["gateway-compare"].format(model=MODEL)
    name = "gateway-compare"

    def check(self, body: dict, expected: tuple[int, ...]) -> str | None:  # type: ignore[type-arg]
        for side in ("tf", "torch"):
            problem = check_predictions((body.get(side) or {}).get("predictions"), expected)
            if problem:
                return f"{side}: {problem}"
        if body.get("labels_agree") is not True:
            return "backends disagree"
        return None


# Each class's report name must be the one the runner asks for.
assert {cls.name: cls.__name__ for cls in _Target.__subclasses__()} == TARGETS
