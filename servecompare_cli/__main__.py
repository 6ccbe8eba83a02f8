"""`servecompare COMMAND [options]`: see commands.py for the table. `servecompare COMMAND --help` is the
command's own help (its usage line names the `python -m` form, which is the same function)."""

from __future__ import annotations

import sys
from importlib import metadata

from servecompare_cli.commands import BY_NAME, COMMANDS, Command


def usage() -> str:
    width = max(len(c.name) for c in COMMANDS)
    lines = [
        "usage: servecompare COMMAND [options]    (servecompare COMMAND --help for a command's options)",
        "",
        "The same model behind TensorFlow Serving and TorchServe, one gateway, an honest comparison.",
        "Each command is the `python -m` entry point named on its right, called with the same arguments.",
        "",
        "commands:",
    ]
    for c in COMMANDS:
        lines.append(f"  {c.name:<{width}}  {c.summary}")
        lines.append(f"  {'':<{width}}  (= {c.python_m})")
    return "\n".join(lines)


def _no_options(command: Command, args: list[str]) -> int | None:
    """A command without a parser of its own: answer --help, refuse anything else; None means run it."""
    if args in (["-h"], ["--help"]):
        print(f"usage: servecompare {command.name}\n\n{command.summary} (= {command.python_m}). It takes no options.")
        return 0
    if args:
        print(f"servecompare {command.name}: takes no arguments, got {' '.join(args)!r}", file=sys.stderr)
        return 2
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:
        print(usage(), file=sys.stderr)
        return 2
    name, rest = args[0], args[1:]
    if name in ("-h", "--help"):
        print(usage())
        return 0
    if name == "--version":
        print(f"servecompare {metadata.version('servecompare')}")
        return 0
    command = BY_NAME.get(name)
    if command is None:
        print(f"servecompare: unknown command {name!r}; one of: {', '.join(BY_NAME)}", file=sys.stderr)
        return 2
    if not command.takes_options and (answer := _no_options(command, rest)) is not None:
        return answer
    return command.entry_point()([*command.prefix, *rest])


if __name__ == "__main__":
    raise SystemExit(main())
