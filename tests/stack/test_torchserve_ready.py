"""`torchserve_entrypoint.py --ready`, the health check compose and k8s run: every loaded model needs a READY
worker. A stub management API gives the known answers (a real TorchServe runs it in `make compose-e2e`)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stack.config import ROOT

STATE: dict[str, list[str]] = {}


class Management(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/models":
            body = {"models": [{"modelName": n, "modelUrl": f"{n}.mar"} for n in STATE]}
        else:
            name = self.path.rsplit("/", 1)[-1]
            body = [{"modelName": name, "workers": [{"id": "9000", "status": s} for s in STATE[name]]}]
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def management() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Management)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def check(url: str) -> subprocess.CompletedProcess[str]:
    script = ROOT / "stack" / "torchserve_entrypoint.py"
    return subprocess.run([sys.executable, str(script), "--ready", url], capture_output=True, text=True, timeout=30)


def test_ready_only_when_every_model_has_a_ready_worker(management: str) -> None:
    STATE.clear()
    STATE.update({"digits": ["READY"], "digits_wide": ["UNLOADING", "STARTING"]})
    done = check(management)
    assert done.returncode == 1 and "digits_wide" in done.stdout
    STATE["digits_wide"] = ["STARTING", "READY"]
    done = check(management)
    assert done.returncode == 0 and "digits, digits_wide" in done.stdout
    STATE.clear()
    assert check(management).returncode == 1  # nothing loaded is not ready


def test_not_ready_when_the_management_api_does_not_answer() -> None:
    done = check("http://127.0.0.1:9")
    assert done.returncode == 1 and "Error" in done.stdout
