"""The rendered overlays, shared by the deployment checks (one kustomize run per overlay per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.config import ROOT
from tests.deploy.test_deploy import OVERLAYS, render


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("rendered")
    paths = {}
    for overlay in OVERLAYS:
        paths[overlay] = out / f"{overlay}.yaml"
        paths[overlay].write_text(render(ROOT / "k8s" / "overlays" / overlay))
    return paths
