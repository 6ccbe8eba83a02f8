"""`python -m stack.compose e2e [--if-available] [--keep]`, `python -m stack.compose images` (build only)."""

from __future__ import annotations

import sys

USAGE = "usage: python -m stack.compose {e2e,wheelhouse} [options]"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"e2e", "wheelhouse"}:
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] == "wheelhouse":
        from stack.compose.images import wheelhouse

        print(wheelhouse())
        return 0
    from stack.compose.e2e import main as e2e

    return e2e(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
