"""The vendor images' runtimes, for checking what this project hands them without pulling the images.

`pytorch/torchserve:0.12.0-cpu` is built by pytorch/serve's docker/build_image.sh on ubuntu 20.04 with
PYTHON_VERSION=3.9 (torch 2.4.0): every Python file this project ships into it (each `.mar`'s handler and extra
files, the container entrypoint) must run there. Debian bullseye's python3 is 3.9 too: a minimal bullseye made with
debootstrap (~50 s once, then cached) runs those files under chroot (root only). `tensorflow/serving:2.19.0` runs
TF 2.19: the compatible server's image pins tensorflow-cpu 2.19 (stack/images/tfserving-compat.requirements.txt).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from stack.config import ROOT
from stack.registry import ModelSpec

TORCHSERVE_IMAGE_PYTHON = "3.9"
BULLSEYE = "bullseye"  # python3 is 3.9.2 there
ENTRYPOINT = ROOT / "stack" / "torchserve_entrypoint.py"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "servecompare" / "bullseye-py39"


def shipped_python(models: list[ModelSpec]) -> dict[str, bytes]:
    """Every Python file that goes into the TorchServe image: `<model>.mar/<file>` and the entrypoint."""
    files = {f"stack/{ENTRYPOINT.name}": ENTRYPOINT.read_bytes()}
    for spec in models:
        with zipfile.ZipFile(spec.mar) as mar:
            for name in mar.namelist():
                if name.endswith(".py"):
                    files[f"{spec.mar.name}/{name}"] = mar.read(name)
    return files


def python39_rootfs(cache: Path = CACHE) -> Path:
    """A bullseye rootfs with python3.9 (made once; later calls reuse it)."""
    from stack.compose.images import debootstrap_rootfs

    if (cache / "usr" / "bin" / "python3.9").exists():
        return cache
    if os.geteuid() != 0:
        raise PermissionError("debootstrap and chroot need root")
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bullseye-", dir=cache.parent) as tmp:
        rootfs = debootstrap_rootfs(BULLSEYE, ("python3",), Path(tmp) / "rootfs")
        shutil.rmtree(cache, ignore_errors=True)
        rootfs.rename(cache)
    return cache


# pytorch/torchserve:0.12.0-cpu's (TorchServe imports yaml without declaring it; the image has it)
TORCH_IMAGE_PACKAGES = ("torch==2.4.0", "numpy==1.26.4", "torchserve==0.12.0", "pyyaml==6.0.2")


def torch24_site(rootfs: Path) -> Path:
    """torch 2.4.0 and TorchServe 0.12.0 for Python 3.9 in the rootfs (`/opt/torch-2.4.0`), installed once by this
    interpreter's pip for the cp39 platform. PyPI serves torch 2.4.0 for Linux only as the CUDA build: with its
    nvidia-* wheels about 5 GB and 100 s here, so this is opt-in (`make vendor-torch`), never part of `make test`."""
    import sys

    site = rootfs / "opt" / "torch-2.4.0"
    stamp = site / ".packages"
    if stamp.exists() and stamp.read_text() == " ".join(TORCH_IMAGE_PACKAGES):
        return site
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--target", str(site),
           "--python-version", TORCHSERVE_IMAGE_PYTHON, "--implementation", "cp",
           "--platform", "manylinux2014_x86_64", "--only-binary=:all:", *TORCH_IMAGE_PACKAGES]  # fmt: skip
    subprocess.run(cmd, check=True)
    stamp.write_text(" ".join(TORCH_IMAGE_PACKAGES))
    return site


def run_python39(
    rootfs: Path, files: dict[str, bytes], *argv: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python3.9 argv...` in the rootfs with `files` laid out under its working directory (/tmp/work-*)."""
    work = Path(tempfile.mkdtemp(prefix="work-", dir=rootfs / "tmp"))
    try:
        for rel, data in files.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_bytes(data)
        inside = f"/tmp/{work.name}"
        cmd = [
            shutil.which("chroot") or "/usr/sbin/chroot",
            str(rootfs),
            "/bin/sh",
            "-c",
            f'cd {inside} && exec "$@"',
            "sh",
            "/usr/bin/python3.9",
            *argv,
        ]
        run_env = {"PATH": "/usr/bin:/bin", **(env or {})}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=run_env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
