"""Opt-in (`make vendor-torch`, ~5 GB and ~2 minutes the first time): each `.mar` under the TorchServe image's
runtime — Python 3.9, torch 2.4.0, TorchServe 0.12.0's `ts` package — loads with TorchServe's BaseHandler and a real
Context, and answers a batch of requests of different sizes with the reference file's labels. The models are saved
by torch 2.13 here: this is the never-run pair the vendor image would load."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from stack.registry import load_registry
from stack.vendor_runtime import python39_rootfs, run_python39, torch24_site

pytestmark = pytest.mark.skipif(
    os.environ.get("SERVECOMPARE_VENDOR_TORCH") != "1", reason="opt-in: make vendor-torch (about 5 GB of CUDA wheels)"
)


def test_every_mar_answers_right_under_torch_24_and_torchserve_012() -> None:
    rootfs = python39_rootfs()
    site = torch24_site(rootfs)
    files: dict[str, bytes] = {"check.py": (Path(__file__).parent / "vendor_torch24_check.py").read_bytes()}
    args = []
    for spec in load_registry():
        with zipfile.ZipFile(spec.mar) as mar:
            for name in mar.namelist():
                files[f"{spec.name}/{name}"] = mar.read(name)
        files[f"{spec.name}.reference.json"] = spec.reference.read_bytes()
        args += [spec.name, f"{spec.name}.reference.json"]
    inside = "/" + str(site.relative_to(rootfs))
    done = run_python39(rootfs, files, "check.py", *args, timeout=600, env={"PYTHONPATH": inside})
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.count("ok   ") == len(load_registry()) and "torch 2.4.0" in done.stdout, done.stdout
