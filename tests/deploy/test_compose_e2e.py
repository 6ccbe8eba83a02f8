"""The compose e2e's own parts (the run itself is `make compose-e2e`, which `make test` runs after pytest)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stack.compose import e2e, engine
from tests.deploy.test_deploy import run, tool


def test_without_an_engine_it_says_why_and_skips_only_when_asked(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", "/nonexistent")
    assert engine.why_no_engine() == "the docker CLI is not installed"
    assert e2e.main(["--if-available"]) == 0
    assert "compose e2e: SKIPPED: the docker CLI is not installed" in capsys.readouterr().out
    assert e2e.main([]) == 2


def test_loadtest_override_is_headless_bounded_and_never_restarts(tmp_path: Path) -> None:
    override = e2e.loadtest_override(tmp_path / "lt.json")
    args = [tool("docker-compose"), "--project-directory", str(e2e.ROOT)]
    for f in (*e2e.FILES, override):
        args += ["-f", str(f)]
    result = run(*args, "--profile", "loadtest", "config")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    master = services["locust-master"]
    cmd = master["command"]
    assert "--headless" in cmd and cmd[cmd.index("--run-time") + 1] == f"{e2e.LOCUST_SECONDS}s"
    assert cmd[cmd.index("--expect-workers") + 1] == "2" and "--exit-code-on-error" in cmd
    assert master["restart"] == "no" and services["locust-worker"]["restart"] == "no"
    assert master["read_only"] is True and master["cap_drop"] == ["ALL"]  # the hardening stays


@pytest.mark.parametrize(
    ("log", "totals"),
    [
        ("master_1 |   Aggregated    12940     0(0.00%) |  11  0  484  7 |  644.09  0.00\n", ("12940", "0")),
        ("Aggregated  10  3(30.00%) | 1 1 1 1 | 1 1\nAggregated  20  4(20.00%) | 1 1 1 1 | 1 1\n", ("20", "4")),
    ],
)
def test_the_locust_summary_is_read_from_the_last_table(log: str, totals: tuple[str, str]) -> None:
    assert e2e.last_totals(log) == totals
