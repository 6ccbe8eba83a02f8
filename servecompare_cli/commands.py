"""The table behind `servecompare`: each subcommand is an existing entry point's `main(argv)` and the arguments put
before the user's. The modules are imported only when their command runs, so `servecompare --help` is instant and
this package imports nothing of the project at load time (no cycles)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str
    module: str  # the module `python -m` runs; its `main(argv)` is the command
    prefix: tuple[str, ...]  # arguments put before the user's
    summary: str
    takes_options: bool = True  # False: the entry point has no parser of its own, so --help is answered here

    @property
    def python_m(self) -> str:
        """The same command spelled `python -m ...` (the module's package for a `__main__`)."""
        module = self.module.removesuffix(".__main__")
        return " ".join(("python -m", module, *self.prefix))

    def entry_point(self) -> Callable[[list[str]], int]:
        main: Callable[[list[str]], int] = importlib.import_module(self.module).main
        return main


COMMANDS: tuple[Command, ...] = (
    Command("bench", "loadtest.__main__", ("bench",),
            "the comparison benchmark on the native stack; writes reports/<time>/report.md"),
    Command("overhead", "loadtest.__main__", ("overhead",),
            "the gateway as a hop: added latency and CPU against direct calls and a bare passthrough"),
    Command("soak", "loadtest.__main__", ("soak",), "constant load through the gateway to both backends for minutes"),
    Command("report", "loadtest.__main__", ("report",), "rewrite a report's report.md and plots from its summary.json"),
    Command("up", "stack.__main__", ("up",), "start TF Serving (or the compatible server), TorchServe and the gateway"),
    Command("down", "stack.__main__", ("down",), "stop every stack this checkout started"),
    Command("status", "stack.__main__", ("status",), "show what runs"),
    Command("export", "export.__main__", (), "train the models and export both servers' artifacts"),
    Command("check-model", "export.check", (), "is a registered model servable, and do both servers answer right?"),
    Command("scaling", "export.scaling.__main__", (), "training: PyTorch DDP vs TF MultiWorkerMirrored, N workers"),
    Command("compose-e2e", "stack.compose.__main__", ("e2e",), "docker compose for real: build, up, check, down"),
    Command("vendor-smoke", "stack.compose.__main__", ("smoke",),
            "docker compose up with the vendors' images: predict on both backends, read the logs, down"),
    Command("wheelhouse", "stack.compose.__main__", ("wheelhouse",),
            "download the images' wheels into .wheelhouse/ with the project's pins", takes_options=False),
)  # fmt: skip

BY_NAME = {command.name: command for command in COMMANDS}
