"""What the compose images are built from when the registry can't be reached: a local Debian base image made with
debootstrap (python 3.11 from Debian, on PATH as `python`) and a wheelhouse made on the host with the project's
pins (the CPU torch wheel, no certificate trouble inside containers), installed in the images with --no-index."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stack.config import ROOT

WHEELHOUSE = ROOT / ".wheelhouse"
LOCAL_BASE = "servecompare-base:bookworm-py311"
DEBIAN_SUITE = "bookworm"  # python3 is 3.11 there, like the official image's
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")


@dataclass(frozen=True)
class ImageWheels:
    """One image's wheels: `.wheelhouse/<name>/`, from these requirement files (and --no-deps extras)."""

    name: str
    requirements: Path
    no_deps: tuple[str, ...] = ()
    constraints: Path = ROOT / "constraints.txt"  # the project's pins, unless the image has its own


IMAGE_WHEELS = (
    ImageWheels("gateway", ROOT / "gateway" / "requirements.txt"),
    ImageWheels("loadtest", ROOT / "loadtest" / "requirements.txt"),
    ImageWheels(
        "tfserving-compat",
        ROOT / "stack" / "images" / "tfserving-compat.requirements.txt",
        no_deps=("tensorflow-serving-api==2.19.1",),  # the Dockerfile's (a test keeps them equal)
        # TF 2.19 as in tensorflow/serving:2.19.0, so its own pins (protobuf 5, numpy 2.1), not the host's.
        constraints=ROOT / "stack" / "images" / "tfserving-compat.constraints.txt",
    ),
    ImageWheels("torchserve", ROOT / "stack" / "images" / "torchserve.requirements.txt"),
)
# The training image's (export/scaling/Dockerfile): torch + tensorflow-cpu, ~580 MiB, made by the e2e's k8s training
# step (stack/compose/k8s_training.py), not with the stack's images.
TRAINING_WHEELS = ImageWheels("training", ROOT / "export" / "scaling" / "requirements.txt")


def _run(*cmd: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, capture_output=True, **kw)  # type: ignore[call-overload,no-any-return]


def image_exists(ref: str) -> bool:
    return _run("docker", "image", "inspect", ref).returncode == 0


def pull(ref: str, timeout_s: float = 600) -> bool:
    try:
        return _run("docker", "pull", ref, timeout=timeout_s).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def base_image(wanted: str) -> str:
    """`wanted` when it is here or can be pulled; else the local Debian base (made once, then reused)."""
    if image_exists(wanted) or pull(wanted):
        return wanted
    print(f"== {wanted} can't be pulled: building FROM a local Debian base ({LOCAL_BASE})", flush=True)
    if not image_exists(LOCAL_BASE):
        make_local_base()
    return LOCAL_BASE


def _ensure_debootstrap() -> str:
    found = shutil.which("debootstrap")
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("debootstrap is missing (apt-get install debootstrap) and this is not root")
    print("== apt: installing debootstrap", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "debootstrap"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    return shutil.which("debootstrap") or "/usr/sbin/debootstrap"


def debootstrap_rootfs(suite: str, packages: tuple[str, ...], rootfs: Path) -> Path:
    """A minimal Debian `suite` with `packages` in `rootfs`, apt's caches emptied (needs root)."""
    cmd = [
        _ensure_debootstrap(),
        "--variant=minbase",
        f"--include={','.join(packages)}",
        suite,
        str(rootfs),
        DEBIAN_MIRROR,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"debootstrap failed: {(done.stdout + done.stderr)[-2000:]}")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (rootfs / cache).glob("*"):
            if item.is_file():
                item.unlink()
    return rootfs


def make_local_base() -> None:
    """debootstrap a minimal bookworm with python 3.11 and import it as LOCAL_BASE (~40 s)."""
    with tempfile.TemporaryDirectory(prefix="servecompare-base-") as tmp:
        rootfs = debootstrap_rootfs(DEBIAN_SUITE, BASE_PACKAGES, Path(tmp) / "rootfs")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "-c", 'CMD ["python"]', "-", LOCAL_BASE], stdin=tar.stdout, capture_output=True
        )
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise RuntimeError(f"docker import failed: {imported.stderr.decode()[-2000:]}")


def _fingerprint(item: ImageWheels, constraints: Path) -> str:
    h = hashlib.sha256()
    for part in (item.requirements.read_bytes(), constraints.read_bytes(), repr(item.no_deps).encode()):
        h.update(part)
    return h.hexdigest()


def wheelhouse(images: tuple[ImageWheels, ...] = IMAGE_WHEELS) -> Path:
    """`.wheelhouse/<image>/` for each of `images`, downloaded with this interpreter's pip (same platform and Python
    as the images' 3.11) and the image's pins; a directory is reused while its inputs are unchanged."""
    for item in images:
        dest = WHEELHOUSE / item.name
        stamp = dest / ".inputs"
        constraints = item.constraints
        want = _fingerprint(item, constraints)
        if stamp.exists() and stamp.read_text() == want:
            continue
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        pip = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(dest)]
        steps = [[*pip, "-r", str(item.requirements), "-c", str(constraints)]]
        steps += [[*pip, "--no-deps", spec] for spec in item.no_deps]
        for cmd in steps:
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"wheelhouse for {item.name}: {' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        stamp.write_text(want)
        size = sum(f.stat().st_size for f in dest.glob("*.whl")) / 2**20
        print(f"== wheelhouse {item.name}: {len(list(dest.glob('*.whl')))} wheels, {size:.0f} MiB", flush=True)
    return WHEELHOUSE
