"""The `servecompare` console script: every subcommand is the `python -m` entry point the make targets ran before
(one path, not two), its arguments reach that function unchanged, and `--help` works at every level."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from servecompare_cli import __main__ as cli
from servecompare_cli.commands import BY_NAME, COMMANDS
from stack.config import ROOT

SCRIPT = Path(sys.executable).parent / "servecompare"
# `make -n` as a user runs it: not as a sub-make of `make test` (CI), whose MAKELEVEL adds "Leaving directory" lines.
MAKE_N = ["make", "--no-print-directory", "-n"]
MAKE_ENV = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}

# What each make target ran before it called the console script (the Makefile's `$(PY) -m ...` lines): the
# subcommand must reach exactly this module's main with these arguments first.
MAKE_TARGETS_BEFORE = {
    "bench": ("bench", "python -m loadtest bench"),
    "soak": ("soak", "python -m loadtest soak"),
    "export": ("export", "python -m export"),
    "check-model": ("check-model", "python -m export.check"),
    "scaling": ("scaling", "python -m export.scaling"),
    "up": ("up", "python -m stack up"),
    "down": ("down", "python -m stack down"),
    "status": ("status", "python -m stack status"),
    "compose-e2e": ("compose-e2e", "python -m stack.compose e2e"),
    "vendor-smoke": ("vendor-smoke", "python -m stack.compose smoke"),
}
# The entry points no make target calls, reachable as subcommands too.
OTHER_ENTRY_POINTS = {
    "overhead": "python -m loadtest overhead",
    "report": "python -m loadtest report",
    "wheelhouse": "python -m stack.compose wheelhouse",
}


def _module_run_by(python_m: str) -> str:
    """The module `python -m NAME` executes: NAME itself, or NAME.__main__ for a package."""
    name = python_m.split()[2]
    spec = importlib.util.find_spec(name)
    assert spec is not None, name
    return f"{name}.__main__" if spec.submodule_search_locations is not None else name


def test_the_table_is_the_python_m_entry_points() -> None:
    expected = {sub: python_m for sub, python_m in MAKE_TARGETS_BEFORE.values()} | OTHER_ENTRY_POINTS
    assert {c.name: c.python_m for c in COMMANDS} == expected
    for command in COMMANDS:
        module = importlib.import_module(_module_run_by(command.python_m))
        assert command.module == module.__name__
        assert command.entry_point() is module.main, command.name
        assert list(command.prefix) == command.python_m.split()[3:]


@pytest.mark.parametrize("target", sorted(MAKE_TARGETS_BEFORE))
def test_make_targets_call_the_console_script(target: str) -> None:
    """`make -n TARGET` (the commands it would run) calls .venv/bin/servecompare with the target's subcommand and
    the same arguments the `python -m` line had."""
    extra = {"check-model": ["MODEL=mine", "REGISTRY=my.toml"]}.get(target, ["ARGS=--users 1,16"])
    out = subprocess.run(
        [*MAKE_N, target, *extra], cwd=ROOT, capture_output=True, text=True, check=True, env=MAKE_ENV
    ).stdout.splitlines()
    calls = [line.split() for line in out if "servecompare" in line]
    subcommand = MAKE_TARGETS_BEFORE[target][0]
    takes_args = target in {"bench", "soak", "export", "scaling"}
    expected = [".venv/bin/servecompare", subcommand] + (["--users", "1,16"] if takes_args else [])
    if target == "check-model":
        expected += ["--model", "mine", "--registry", "my.toml"]
    assert calls == [expected], out
    assert not [line for line in out if " -m loadtest" in line or " -m stack" in line or " -m export" in line]


def test_make_test_runs_the_compose_checks_through_the_console_script() -> None:
    out = subprocess.run([*MAKE_N, "test"], cwd=ROOT, capture_output=True, text=True, check=True, env=MAKE_ENV).stdout
    lines = out.splitlines()
    assert lines[-2:] == [
        ".venv/bin/servecompare compose-e2e --if-available",
        ".venv/bin/servecompare vendor-smoke --if-available",
    ]
    assert ".venv/bin/python -m pytest tests" in lines


@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_arguments_reach_the_entry_point_unchanged(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    command = BY_NAME[name]
    calls: list[list[str]] = []

    def recorder(argv: list[str]) -> int:
        calls.append(argv)
        return 7

    monkeypatch.setattr(importlib.import_module(command.module), "main", recorder)
    args = [] if not command.takes_options else ["--users", "1,16", "positional"]
    assert cli.main([name, *args]) == 7
    assert calls == [[*command.prefix, *args]]


@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_every_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = cli.main([name, "--help"])
    except SystemExit as stop:  # argparse's --help
        code = stop.code  # type: ignore[assignment]
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: "), out
    if BY_NAME[name].takes_options:
        assert f"usage: {BY_NAME[name].python_m}" in out  # the entry point's own parser answered


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert f"  {command.name}  " in out and f"(= {command.python_m})" in out


def test_no_command_and_unknown_command_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: servecompare COMMAND" in capsys.readouterr().err
    assert cli.main(["benchmark"]) == 2
    assert "unknown command 'benchmark'" in capsys.readouterr().err


def test_a_command_without_options_refuses_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.import_module("stack.compose.__main__"), "main", lambda argv: pytest.fail("ran"))
    assert cli.main(["wheelhouse", "--force"]) == 2


def test_the_console_script_and_python_m_give_the_same_answer() -> None:
    """Through the installed script and through `python -m`, for real: the same output and exit status."""
    assert SCRIPT.exists(), f"{SCRIPT} missing: pip install -e ."
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    args = ["--model", "no-such-model", "--no-live"]
    script = subprocess.run([SCRIPT, "check-model", *args], cwd=ROOT, capture_output=True, text=True, env=env)
    module = subprocess.run(
        [sys.executable, "-m", "export.check", *args], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert (script.returncode, script.stdout) == (module.returncode, module.stdout)
    assert script.returncode == 1 and "check no-such-model: FAILED" in script.stdout
    top = subprocess.run([SCRIPT, "--help"], capture_output=True, text=True, env=env)
    assert top.returncode == 0 and "compose-e2e" in top.stdout
