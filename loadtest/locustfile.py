"""Locust users for every target: TF Serving and TorchServe directly, the gateway per backend, and /compare.

Each target has its own base URL (env LOADTEST_TF_URL, LOADTEST_TS_URL, LOADTEST_GATEWAY_URL) and one class;
pick classes by name on the command line. Every answer is checked: status, shape and the label the model
must give for that row. `LOADTEST_RATE_PER_USER` > 0 paces each user (requests/s) for the SLO search.

Error answers: the TF REST targets are also sent, once per locust process before the load, a body with "instances"
twice (loadtest/payloads.py, DuplicateKey): TF Serving reads the first value, the gateway must answer 400. The check
is no load and no latency sample; a wrong answer is a failure of its own request name, "<target> duplicate key".

Exact latencies: locust rounds response times below 100 ms to whole ms for its own statistics; every good answer's
raw float also goes into an HDR histogram per request name here (1 µs resolution), workers ship theirs to the master
with their reports, and at the end the master (or a standalone run) prints exact percentiles and, with
LOADTEST_HDR_OUT set, writes them with the encoded histograms to that JSON file. Failures are locust's to count.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from locust import FastHttpUser, constant, constant_throughput, events, task
from locust.runners import WorkerRunner

from loadtest.measure import latency
from loadtest.payloads import Payload, check_predictions, duplicate_key, pick
from loadtest.targets import PATHS, TARGETS

MODEL = os.environ.get("LOADTEST_MODEL_NAME", "digits")
HEADERS = {"Content-Type": "application/json"}
_RATE = float(os.environ.get("LOADTEST_RATE_PER_USER", "0"))


_HDR: dict[str, Any] = {}


@events.request.add_listener
def _record(name: str, response_time: float, exception: Any = None, **_: Any) -> None:
    if exception is not None:  # a failure is counted by locust, never a latency sample
        return
    hist = _HDR.get(name)
    if hist is None:
        hist = _HDR[name] = latency.new_histogram()
    latency.record_ms(hist, response_time)


@events.report_to_master.add_listener
def _ship(client_id: str, data: dict[str, Any]) -> None:
    data["servecompare_hdr"] = {name: latency.encode(h) for name, h in _HDR.items()}
    _HDR.clear()  # the master keeps the sum: ship only what is new since the last report


@events.worker_report.add_listener
def _merge(client_id: str, data: dict[str, Any]) -> None:
    for name, encoded in data.get("servecompare_hdr", {}).items():
        if name not in _HDR:
            _HDR[name] = latency.new_histogram()
        _HDR[name].add(latency.decode(encoded))


@events.quitting.add_listener
def _write(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or not _HDR:
        return
    result = {name: {**latency.summary(h), "hdr": latency.encode(h)} for name, h in _HDR.items()}
    for name, r in result.items():
        print(
            f"exact latency (ms) {name}: p50 {r['p50']} p90 {r['p90']} p99 {r['p99']} max {r['max']} (n={r['count']})"
        )
    if os.environ.get("LOADTEST_HDR_OUT"):
        with open(os.environ["LOADTEST_HDR_OUT"], "w") as fh:
            json.dump(result, fh)


_CHECKED: set[str] = set()  # targets whose duplicate-key answer this process has checked


def duplicate_key_problem(url: str, expect: str) -> str | None:
    """Sends the duplicate-key body to `url`; None when answered as `expect` says (see DuplicateKey.check)."""
    case = duplicate_key()
    request = urllib.request.Request(url, data=case.body, headers=HEADERS, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            status, text = resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return f"duplicate key: no answer ({type(exc).__name__}: {exc})"
    return case.check(expect, status, text)


def _wait():  # type: ignore[no-untyped-def]
    return constant_throughput(_RATE) if _RATE > 0 else constant(0)


class _Target(FastHttpUser):
    abstract = True
    wait_time = _wait()
    path = ""
    name = ""
    key = "predictions"
    backend = "tf"  # whose model's labels the answers are checked against
    connection_timeout = 5.0
    network_timeout = 10.0
    duplicate_key = ""  # TF REST targets: how a body with "instances" twice must be answered ('first-wins', 'rejected')

    def on_start(self) -> None:
        if not self.duplicate_key or self.name in _CHECKED:
            return
        _CHECKED.add(self.name)
        problem = duplicate_key_problem(f"{self.host}{self.path}", self.duplicate_key)
        if problem:  # only a wrong answer is recorded: the check adds no request to the load's figures
            self.environment.events.request.fire(
                request_type="POST", name=f"{self.name} duplicate key", response_time=0.0, response_length=0,
                response=None, context={}, exception=AssertionError(problem),
            )  # fmt: skip

    def check(self, body: dict, payload: Payload) -> str | None:  # type: ignore[type-arg]
        return check_predictions(body.get(self.key), payload.expected_for(self.backend))

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
            try:
                problem = self.check(body, payload) if isinstance(body, dict) else "response is not an object"
            except Exception as exc:
                problem = f"answer could not be checked: {type(exc).__name__}: {exc}"
            if problem:
                resp.failure(problem)
            else:
                resp.success()


class TFServingDirect(_Target):
    host = os.environ.get("LOADTEST_TF_URL", "http://127.0.0.1:8501")
    path = PATHS["tf-direct"].format(model=MODEL)
    name = "tf-direct"
    duplicate_key = "first-wins"


class TorchServeDirect(_Target):
    host = os.environ.get("LOADTEST_TS_URL", "http://127.0.0.1:8080")
    path = PATHS["torch-direct"].format(model=MODEL)
    name = "torch-direct"
    backend = "torch"


class GatewayTF(_Target):
    host = os.environ.get("LOADTEST_GATEWAY_URL", "http://127.0.0.1:8000")
    path = PATHS["gateway-tf"].format(model=MODEL)
    name = "gateway-tf"
    duplicate_key = "rejected"


class GatewayTorch(_Target):
    host = os.environ.get("LOADTEST_GATEWAY_URL", "http://127.0.0.1:8000")
    path = PATHS["gateway-torch"].format(model=MODEL)
    name = "gateway-torch"
    backend = "torch"


class GatewayCompare(_Target):
    host = os.environ.get("LOADTEST_GATEWAY_URL", "http://127.0.0.1:8000")
    path = PATHS["gateway-compare"].format(model=MODEL)
    name = "gateway-compare"

    def check(self, body: dict, payload: Payload) -> str | None:  # type: ignore[type-arg]
        for side in ("tf", "torch"):
            problem = check_predictions((body.get(side) or {}).get("predictions"), payload.expected_for(side))
            if problem:
                return f"{side}: {problem}"
        models_agree = payload.expected == payload.expected_torch
        if body.get("labels_agree") is not models_agree:
            return f"labels_agree is {body.get('labels_agree')!r}, the models {'' if models_agree else 'dis'}agree"
        return None


# Each class's report name must be the one the runner asks for.
assert {cls.name: cls.__name__ for cls in _Target.__subclasses__()} == TARGETS
