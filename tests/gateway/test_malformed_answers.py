"""A malformed upstream answer is a 502 everywhere: wrong class count, booleans, nulls, strings."""

from __future__ import annotations

import pytest
import respx

from tests.gateway.test_routes import PROBS, ROW, TF, TF_PREDICT, TS_PREDICT, TSM, make_client

BAD_ROWS = {
    "nine classes": [0.1] * 9,
    "booleans": [True] + [False] * 9,
    "a null": [None] + [0.1] * 9,
    "a string": ["0.1"] + [0.1] * 9,
}


@pytest.mark.parametrize("what", list(BAD_ROWS))
@pytest.mark.parametrize("route", ["/predict/torch", "/predict/tf", "/compare"])
def test_a_malformed_answer_is_a_bad_gateway(what: str, route: str) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{TF}/v1/models/digits").respond(json={"model_version_status": []})
        mock.get(f"{TSM}/models/digits").respond(json=[])
        bad, good = {"predictions": [BAD_ROWS[what]]}, {"predictions": [PROBS]}
        # /compare: the torch side is the malformed one (a strict zip used to make this a 500).
        mock.post(TS_PREDICT).respond(json=bad if route != "/predict/tf" else good)
        mock.post(TF_PREDICT).respond(json=bad if route == "/predict/tf" else good)
        with make_client() as c:
            r = c.post(route, json={"instances": [ROW]})
    assert r.status_code == 502, r.text
    assert "malformed predictions" in r.json()["error"]
