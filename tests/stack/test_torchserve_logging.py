"""TorchServe's log config (models/torch/log4j2.xml), run with the real TorchServe as a container runs it: its
start, a handler's traceback and a refused request reach stdout (what `docker compose logs` and `kubectl logs`
show), and nothing is logged per request. The native launcher's setting sends the same lines to a file instead."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stack.config import ROOT
from stack.launcher import NativeStack, short_temp_dir
from tests.conftest import free_ports_config, stop_process

pytestmark = pytest.mark.integration

FAILING_HANDLER = '''
def handle(data, context):
    if data is None:  # TorchServe's initialize call for a module-level handler
        return None
    raise RuntimeError("boom from the failing handler")
'''


def _failing_mar(store: Path, work: Path) -> None:
    handler = work / "failing_handler.py"
    handler.write_text(FAILING_HANDLER)
    archiver = Path(sys.executable).parent / "torch-model-archiver"
    cmd = [str(archiver), "--model-name", "failing", "--version", "1.0", "--handler", str(handler),
           "--export-path", str(store), "--force"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)


def _start(tmp: Path, target: str | None) -> tuple[subprocess.Popen[bytes], str, Path]:
    """TorchServe serving the default model and a model whose handler raises; stdout to a file."""
    cfg = free_ports_config()
    stack = NativeStack(cfg, run_dir=tmp)
    (tmp / "conf").mkdir(parents=True, exist_ok=True)
    svc = stack._torchserve_service()
    store = tmp / "torchserve" / "model-store"
    _failing_mar(store, tmp)
    config = tmp / "conf" / "config.properties"
    config.write_text(
        "\n".join(
            f"{line},failing.mar" if line.startswith("load_models=") else line
            for line in config.read_text().splitlines()
        )
    )
    env = {**os.environ, **svc.env}
    env.pop("TORCHSERVE_LOG_TARGET", None)
    if target:
        env["TORCHSERVE_LOG_TARGET"] = target
    stdout = tmp / "stdout.log"
    # As the containers run it: under stack/torchserve_entrypoint.py, whose stdout is the container's log.
    cmd = [sys.executable, str(ROOT / "stack" / "torchserve_entrypoint.py"), "--", *svc.cmd[svc.cmd.index("--") + 1 :]]
    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp, stdout=open(stdout, "wb"), stderr=subprocess.STDOUT, start_new_session=True  # noqa: SIM115
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, stdout.read_text()[-3000:]
        try:
            states = [
                w["status"]
                for name in (cfg.model_name, "failing")
                for m in httpx.get(f"{cfg.ts_management_url}/models/{name}", timeout=1).json()
                for w in m.get("workers", [])
            ]
        except (httpx.HTTPError, ValueError, TypeError):
            states = []
        if states.count("READY") == 2:
            return proc, cfg.ts_inference_url, stdout
        time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"TorchServe did not become ready:\n{stdout.read_text()[-3000:]}")


@pytest.fixture
def torchserve(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path, Path]]:
    proc, url, stdout = _start(tmp_path, request.param)
    try:
        yield url, stdout, tmp_path / "torchserve" / "logs"
    finally:
        stop_process(proc)
        subprocess.run(["pkill", "-f", str(tmp_path)], check=False)
        subprocess.run(["rm", "-rf", str(short_temp_dir(tmp_path))], check=False)


def _traffic(url: str, model: str) -> None:
    assert httpx.post(f"{url}/predictions/failing", content=b"{}", timeout=30).status_code >= 500
    bad = httpx.post(f"{url}/predictions/{model}", content=b"not json", timeout=30)
    assert bad.status_code == 400, bad.text
    good = {"instances": [[0.0] * 64]}
    for _ in range(20):
        assert httpx.post(f"{url}/predictions/{model}", json=good, timeout=30).status_code == 200


def _settled(path: Path, needle: str) -> str:
    deadline = time.monotonic() + 10
    text = path.read_text(errors="replace") if path.exists() else ""
    while needle not in text and time.monotonic() < deadline:
        time.sleep(0.2)
        text = path.read_text(errors="replace") if path.exists() else ""
    return text


@pytest.mark.parametrize("torchserve", [None], indirect=True)
def test_container_logs_show_start_tracebacks_and_refusals_on_stdout(torchserve: tuple[str, Path, Path]) -> None:
    url, stdout, _ = torchserve
    _traffic(url, free_ports_config().model_name)
    text = _settled(stdout, "refused (400)")
    assert "Torch worker started." in text  # TorchServe's own start, through MODEL_LOG
    assert "org.pytorch.serve" in text  # the frontend's INFO lines
    assert "boom from the failing handler" in text and "Traceback" in text, text[-3000:]
    assert "refused (400): request body is not valid JSON" in text, text[-3000:]
    # Nothing per request: 20 good requests leave no line of their own.
    assert "Backend received inference" not in text
    assert "Backend response time" not in text


@pytest.mark.parametrize("torchserve", ["ts_log"], indirect=True)
def test_native_setting_sends_the_same_lines_to_a_file(torchserve: tuple[str, Path, Path]) -> None:
    url, stdout, logs = torchserve
    _traffic(url, free_ports_config().model_name)
    text = _settled(logs / "ts_log.log", "boom from the failing handler")
    assert "boom from the failing handler" in text
    assert "boom from the failing handler" not in stdout.read_text(errors="replace")
