"""Fixtures of the gateway's tests: a scripted loopback backend answering for TF Serving and TorchServe."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.stub_http import StubBackend
from tests.gateway.test_error_paths import GOOD, TF_PREDICT, TS_PREDICT, _json


@pytest.fixture
def stub() -> Iterator[StubBackend]:
    backend = StubBackend()
    backend.answers = {
        ("GET", "/v1/models/digits"): _json(200, {"model_version_status": [{"version": "1", "state": "AVAILABLE"}]}),
        ("GET", "/models/digits"): _json(200, [{"modelVersion": "1.0", "workers": [{"status": "READY"}]}]),
        TF_PREDICT: GOOD,
        TS_PREDICT: GOOD,
    }
    with backend.running():
        yield backend
