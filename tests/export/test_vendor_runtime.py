"""What ships into the vendor's TorchServe image (pytorch/torchserve:0.12.0-cpu: Python 3.9, torch 2.4) runs there:
every Python file of each `.mar` and the container entrypoint pass a minimum-version check for 3.9 (vermin), and run
under a real Python 3.9 (Debian bullseye's, in a debootstrap rootfs under chroot: stack/vendor_runtime.py).

Under CI=true a missing prerequisite (root, debootstrap) is a failure, not a skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.registry import load_registry
from stack.vendor_runtime import TORCHSERVE_IMAGE_PYTHON, python39_rootfs, run_python39, shipped_python
from tests.stack.test_torchserve_ready import STATE, Management

HERE = Path(__file__).parent
VERMIN = [str(Path(sys.executable).parent / "vermin"), f"-t={TORCHSERVE_IMAGE_PYTHON}-", "--violations", "--no-tips",
          "--feature", "union-types"]  # fmt: skip


def vermin(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VERMIN, *map(str, paths)], capture_output=True, text=True, timeout=120)


def lay_out(files: dict[str, bytes], where: Path) -> list[Path]:
    out = []
    for rel, data in files.items():
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_bytes(data)
        out.append(where / rel)
    return out


def test_shipped_python_needs_nothing_newer_than_the_images(tmp_path: Path) -> None:
    files = shipped_python(load_registry())
    assert {"handler.py" in name for name in files} == {True, False}  # the handlers and the entrypoint
    done = vermin(lay_out(files, tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_version_check_refuses_what_python_39_cannot_run(tmp_path: Path) -> None:
    # Yesterday's handler line: isinstance with a union type is a TypeError on 3.9 (every prediction was a 503).
    snippet = tmp_path / "handler.py"
    snippet.write_text("from __future__ import annotations\n\ndef f(x: int | None) -> bool:\n"
                       "    return isinstance(x, bytes | bytearray)\n")  # fmt: skip
    done = vermin([snippet])
    assert done.returncode != 0 and "union types" in done.stdout, done.stdout


@pytest.fixture(scope="module")
def rootfs() -> Path:
    why = None
    if os.geteuid() != 0:
        why = "needs root (debootstrap, chroot)"
    elif not (shutil.which("debootstrap") or shutil.which("apt-get")):
        why = "no debootstrap and no apt-get to install it"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Python 3.9 check can't run in CI: {why}")
        pytest.skip(why)
    return python39_rootfs()


@pytest.fixture
def management() -> Iterator[str]:
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Management)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    STATE.clear()
    STATE.update({m.name: ["READY"] for m in load_registry()})
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_handlers_and_entrypoint_run_under_python_39(rootfs: Path, management: str) -> None:
    models = load_registry()
    files = {**shipped_python(models), "check.py": (HERE / "vendor_py39_check.py").read_bytes()}
    for spec in models:
        with __import__("zipfile").ZipFile(spec.mar) as mar:
            files[f"{spec.mar.name}/signature.json"] = mar.read("signature.json")
    done = run_python39(rootfs, files, "check.py", management, *(m.mar.name for m in models))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"python {TORCHSERVE_IMAGE_PYTHON}."), done.stdout
    assert "FAIL" not in done.stdout and done.stdout.count("ok ") >= 2 + 15 * len(models), done.stdout


def test_compat_image_runs_the_tensorflow_of_the_pinned_tf_serving_image() -> None:
    """tensorflow/serving:X.Y.Z runs TF X.Y: the stand-in's image pins tensorflow-cpu X.Y (requirements, its own
    constraints, the wheelhouse), and its tensorflow-serving-api is the same in the Dockerfile and the wheelhouse."""
    import re

    from stack.compose.images import IMAGE_WHEELS
    from stack.config import ROOT, StackConfig

    tag = StackConfig.load().tf_serving_image.rsplit(":", 1)[1]
    major_minor = ".".join(tag.split(".")[:2])
    images = ROOT / "stack" / "images"
    for name in ("tfserving-compat.requirements.txt", "tfserving-compat.constraints.txt"):
        pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (images / name).read_text(), re.M))
        tf = pins.get("tensorflow-cpu") or pins.get("tensorflow_cpu")
        assert tf is not None and tf.startswith(major_minor + "."), (name, tf, tag)
    (compat,) = [w for w in IMAGE_WHEELS if w.name == "tfserving-compat"]
    assert compat.constraints.name == "tfserving-compat.constraints.txt"
    (api,) = compat.no_deps
    assert api.startswith(f"tensorflow-serving-api=={major_minor}.")
    assert f"--no-deps {api}" in (images / "tfserving-compat.Dockerfile").read_text()
