"""`make vendor-smoke`: `docker compose up` as a user runs it, with the vendors' images pinned in .env.

Steps: pull TF_SERVING_IMAGE and TORCHSERVE_IMAGE; build the gateway; `up` (docker-compose.yml alone); predict
every registered model on both backends through the gateway; a bad request straight to TorchServe is a 400 whose
reason, and TorchServe's start, are in `docker compose logs torchserve`; `down`, nothing left. Where the vendor
images can't be pulled (no registry, as on the machine this was written on) it says so and runs the same steps on
the self-built images (docker-compose.selfbuilt.yml), so the script itself is exercised by `make test`; its last
line then says which images it ran.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from stack.compose.e2e import (
    FILES,
    build,
    engine_or_reason,
    new_run,
    predict,
    run_steps,
    skipped,
    torchserve_logs,
    up,
)
from stack.compose.images import image_exists, pull
from stack.config import ROOT, StackConfig

VENDOR_FILES = (ROOT / "docker-compose.yml",)


def vendor_images(cfg: StackConfig) -> tuple[bool, str]:
    """(True, note) when both vendor images are here or could be pulled; else (False, which could not)."""
    missing = [ref for ref in (cfg.tf_serving_image, cfg.torchserve_image) if not (image_exists(ref) or pull(ref))]
    if missing:
        return False, f"can't pull {', '.join(missing)}: the same steps on the self-built images"
    return True, f"vendor images {cfg.tf_serving_image}, {cfg.torchserve_image}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stack.compose smoke", description=__doc__.split("\n")[0])
    p.add_argument("--if-available", action="store_true", help="skip (exit 0) where no engine can be had (not in CI)")
    p.add_argument("--keep", action="store_true", help="leave the stack up at the end")
    args = p.parse_args(argv)
    cli, reason = engine_or_reason()
    if cli is None:
        return skipped("vendor smoke", reason, args.if_available)

    cfg = StackConfig.load()
    compose, ports, run = new_run(cli)
    chosen: dict[str, str] = {}

    def images() -> str:
        vendor, note = vendor_images(cfg)
        print(f"   {note}", flush=True)
        compose.files = VENDOR_FILES if vendor else FILES
        chosen["tf"] = "TensorFlow Serving" if vendor else "compatible server, NOT TF Serving"
        return f"{note}; {build(compose, cfg, profiles=())}"

    steps: list[tuple[str, Callable[[], str]]] = [
        ("images", images),
        ("up", lambda: up(compose, chosen["tf"])),
        ("predict", lambda: predict(run)),
        ("logs", lambda: torchserve_logs(compose, ports["TS_INFERENCE_PORT"], cfg.model_name)),
    ]
    return run_steps("vendor smoke", compose, steps, args.keep)
