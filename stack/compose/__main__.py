"""`python -m stack.compose e2e|smoke [--if-available] [--keep]`, `python -m stack.compose wheelhouse`."""

from __future__ import annotations

import sys

USAGE = "usage: python -m stack.compose {e2e,smoke,wheelhouse} [options]"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"e2e", "smoke", "wheelhouse"}:
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] == "wheelhouse":
        from stack.compose.images import wheelhouse

        print(wheelhouse())
        return 0
    if argv[0] == "smoke":
        from stack.compose.smoke import main as smoke

        return smoke(argv[1:])
    from stack.compose.e2e import main as e2e

    return e2e(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
