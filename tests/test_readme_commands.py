"""The commands in README.md and docs/*.md work as written, in a fresh shell after the README's set-up
(`source .venv/bin/activate`), so the documents can't drift from the code.

Each line of a ```bash block that runs a project command is run exactly as written, in its harmless form:
- `servecompare ...`, `python -m ...` and the virtualenv's tools: the line with ` --help` appended, exit status 0;
  a `servecompare` line is also parsed for real (its entry point's parser reads every option, then stops), so an
  unknown option or a bad value fails here too.
- `make TARGET ...`: `make -n TARGET ...` (the target exists, the variables are accepted), then every
  `.venv/bin/servecompare` command it would run gets the same two checks.
Lines that need Docker, a cluster, a running stack or root are not run; each is reported as skipped with why.
Inline `servecompare`, `make` and `python -m` spans in the prose must name a command, target or module that exists.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from servecompare_cli import __main__ as cli
from servecompare_cli.commands import BY_NAME
from stack.config import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV_BIN = ROOT / ".venv" / "bin"
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
NOT_RUN = {
    "docker": "needs a Docker engine",
    "kind": "needs Docker and kind",
    "kubectl": "needs a Kubernetes cluster",
    "kustomize": "edits a production overlay for a registry",
    "cd": "part of a registry/cluster step",
    "curl": "needs a running stack",
    "sudo": "changes the system as root (apt)",
    "echo": "changes the system as root (apt)",
}


@dataclass(frozen=True)
class Line:
    where: str  # file:line
    text: str  # the command as written, without its comment

    @property
    def words(self) -> list[str]:
        return shlex.split(self.text)

    @property
    def program(self) -> str:
        words = self.words
        while words and ASSIGNMENT.match(words[0]):
            words = words[1:]
        return words[0] if words else ""


def _strip_comment(line: str) -> str:
    """The line up to an unquoted `#` that starts a word (bash's rule)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def bash_lines(path: Path) -> list[Line]:
    lines, in_bash, indent, pending, start = [], False, "", "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        fence = FENCE.match(raw)
        if fence:
            in_bash = not in_bash and fence.group(2) == "bash"
            indent = fence.group(1)
            continue
        if not in_bash:
            continue
        text = raw.removeprefix(indent)
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1]
            continue
        command = _strip_comment(pending + text)
        pending = ""
        if command:
            lines.append(Line(f"{path.relative_to(ROOT)}:{start}", command))
    return lines


ALL_LINES = [line for doc in DOCUMENTS for line in bash_lines(doc)]


def _shell(command: str) -> subprocess.CompletedProcess[str]:
    """`command` in a fresh bash after the README's set-up: the virtualenv activated, in the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "MAKEFLAGS", "MAKELEVEL")}
    script = f"cd {shlex.quote(str(ROOT))} && source .venv/bin/activate && {command}"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120)


class _Parsed(Exception):
    pass


def _parses(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry point's own parser reads argv completely (SystemExit 2 on an unknown option or a bad value), then
    the command stops before doing anything."""
    parse_args = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        parse_args(self, args, namespace)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    if argv in (["--help"], ["-h"], ["--version"]):
        assert cli.main(argv) == 0
        return
    command = BY_NAME.get(argv[0]) if argv else None
    assert command is not None, f"servecompare has no command {argv[:1]}"
    if not command.takes_options:
        assert argv[1:] == [], f"servecompare {argv[0]} takes no arguments"
        return
    try:
        cli.main(argv)
    except _Parsed:
        return
    except SystemExit as stop:
        assert stop.code == 0, f"servecompare {' '.join(argv)}: the parser refused it"
        return
    pytest.fail(f"servecompare {' '.join(argv)}: no parser read the arguments")


def _check_servecompare(text: str, argv: list[str], where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _shell(f"{text} --help")
    assert result.returncode == 0, f"{where}: `{text} --help` failed:\n{result.stdout}{result.stderr}"
    assert result.stdout.startswith("usage:"), f"{where}: `{text} --help` printed no usage:\n{result.stdout}"
    _parses(argv, monkeypatch)


@pytest.mark.parametrize("line", ALL_LINES, ids=[f"{line.where} {line.text[:40]}" for line in ALL_LINES])
def test_command_works_as_written(line: Line, monkeypatch: pytest.MonkeyPatch) -> None:
    program, words = line.program, line.words
    if program in NOT_RUN:
        why = "changes the system as root (apt)" if "sudo" in words else NOT_RUN[program]
        pytest.skip(f"{line.where}: not run, {why}: {line.text[:70]}")
    if not program and all(ASSIGNMENT.match(w) for w in words):
        pytest.skip(f"{line.where}: not run, sets a shell variable for the next lines: {line.text[:60]}")
    assert not re.search(r"&&|\|\||[;|]", line.text), f"{line.where}: one project command a line: {line.text}"
    assert program != "source" or line.text == "source .venv/bin/activate", line.text
    if program == "source":
        return
    args = words[words.index(program) + 1 :]
    if program in ("servecompare", ".venv/bin/servecompare"):
        _check_servecompare(line.text, args, line.where, monkeypatch)
    elif program == "make":
        dry = _shell(line.text.replace("make", "make -n", 1))
        assert dry.returncode == 0, f"{line.where}: `make -n` of `{line.text}` failed:\n{dry.stderr}"
        calls = [c for c in dry.stdout.splitlines() if c.startswith(".venv/bin/servecompare")]
        for call in calls:
            _check_servecompare(call, shlex.split(call)[1:], line.where, monkeypatch)
    elif program == "python" or (VENV_BIN / Path(program).name).exists():
        result = _shell(f"{line.text} --help")
        assert result.returncode == 0, f"{line.where}: `{line.text} --help` failed:\n{result.stdout}{result.stderr}"
    else:
        pytest.fail(f"{line.where}: `{program}` is neither a project command nor in the list of commands not run")


INLINE = re.compile(r"`((?:\.venv/bin/)?servecompare [^`]+|make [a-z][^`]*|python -m [^`]+)`")


def inline_commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCUMENTS:
        text = doc.read_text()
        for match in INLINE.finditer(text):
            number = text.count("\n", 0, match.start()) + 1
            found.append((f"{doc.relative_to(ROOT)}:{number}", " ".join(match.group(1).split())))
    return found


def test_inline_commands_name_what_exists() -> None:
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.M))
    wrong = []
    for where, command in inline_commands():
        words = command.split()
        if words[0].endswith("servecompare"):
            if words[1] not in BY_NAME and words[1] not in ("--help", "-h", "COMMAND"):
                wrong.append(f"{where}: {command}")
        elif words[0] == "make":
            if not words[1].startswith("-") and words[1] not in targets:
                wrong.append(f"{where}: {command}")
        elif importlib.util.find_spec(words[2]) is None:
            wrong.append(f"{where}: {command}")
    assert not wrong, "commands in the prose that don't exist:\n" + "\n".join(wrong)
    assert len(inline_commands()) > 20  # the pattern still finds the prose's commands


def test_every_document_is_read() -> None:
    """The README and each docs page have commands this test runs (a broken fence would silently hide them)."""
    runs = {line.where.split(":")[0] for line in ALL_LINES if line.program not in NOT_RUN}
    assert {str(doc.relative_to(ROOT)) for doc in DOCUMENTS if doc.name != "gateway.md"} <= runs
    assert any(line.text.startswith("source .venv/bin/activate") for line in bash_lines(ROOT / "README.md"))
