"""Mutation score of the decision and protocol modules (`make mutation`), with mutmut.

For each module in scripts/mutation.toml: copy the working tree (tracked and untracked files git does not ignore)
into a scratch directory, so the checkout is never mutated and a run can't disturb anyone working in it; write a
setup.cfg telling mutmut to mutate only that module and to run only its test files; `mutmut run`; then print the
score (killed / all mutants, a timeout counts as killed) and every survivor's diff. Mutants named in the module's
`equivalent` table are reported apart with their reason and left out of the score.

    python scripts/mutation.py                 # every module
    python scripts/mutation.py handler flags   # some
    python scripts/mutation.py --no-diffs      # survivors by name only

Each run starts from a fresh copy; the copies stay under --scratch for `python -m mutmut show NAME` run there.

Exit status 1 when a module scores under --goal (80 %).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "scripts" / "mutation.toml"
PACKAGES = ("export", "gateway", "stack", "loadtest")  # imported from mutmut's copy, never from the checkout
KILLED = {1, 3, 36, 37, -24, 24, 152, 255}  # mutmut's exit codes for killed, pytest error, timeouts, type check


@dataclass
class Score:
    name: str
    killed: int
    total: int
    survivors: list[str]
    equivalent: dict[str, str]
    seconds: float

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / self.total if self.total else 100.0


def copy_worktree(dest: Path) -> None:
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():  # a file deleted in the worktree is still in the index
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def write_setup_cfg(work: Path, module: str, tests: list[str]) -> None:
    top = sorted({p.name for p in work.iterdir()} - {*PACKAGES, "mutants", "setup.cfg", "tests"})

    def lines(values: list[str] | tuple[str, ...]) -> str:
        return "".join(f"\n    {v}" for v in values)

    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        f"source_paths ={lines(PACKAGES)}\n"
        f"only_mutate ={lines([module])}\n"
        f"also_copy ={lines(top)}\n"
        f"pytest_add_cli_args_test_selection ={lines(tests)}\n"
        f"pytest_add_cli_args ={lines(['-p', 'no:cacheprovider', '-q'])}\n"
        # torch, grpc and asyncio loops are not fork-safe once a test has used them: fork from a clean server
        "process_isolation = forkserver\n"
        "use_git_change_detection = false\n"
    )


def run_module(name: str, spec: dict, scratch: Path, jobs: int) -> Score:  # type: ignore[type-arg]
    work = scratch / name
    if work.exists():
        shutil.rmtree(work)
    copy_worktree(work)
    write_setup_cfg(work, spec["path"], spec["tests"])
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    with open(work / "mutmut.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs)],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its fork server and workers go with it when this run is stopped
        )
        try:
            proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    seconds = time.monotonic() - started
    meta = work / "mutants" / (spec["path"] + ".meta")
    if not meta.exists():
        sys.exit(f"{name}: mutmut produced no results; see {work / 'mutmut.log'}")
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    equivalent = {k: v for k, v in spec.get("equivalent", {}).items() if k in codes}
    counted = {k: c for k, c in codes.items() if k not in equivalent}
    killed = sum(1 for c in counted.values() if c in KILLED)
    survivors = sorted(k for k, c in counted.items() if c not in KILLED)
    return Score(name, killed, len(counted), survivors, equivalent, seconds)


def show(work: Path, mutant: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", mutant], cwd=work, capture_output=True, text=True, check=False
    ).stdout
    return "\n".join("        " + line for line in out.strip().splitlines()[2:])  # drop the ---/+++ header


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("modules", nargs="*", help="names from scripts/mutation.toml (default: all)")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "servecompare-mutation")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--goal", type=float, default=80.0)
    parser.add_argument("--no-diffs", action="store_true", help="survivors by name only")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped (make, CI): clean up mutmut's processes
    modules: dict = tomllib.loads(CONFIG.read_text())["modules"]  # type: ignore[type-arg]
    names = args.modules or list(modules)
    unknown = [n for n in names if n not in modules]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {sorted(modules)}")
    scores = []
    for name in names:
        score = run_module(name, modules[name], args.scratch, args.jobs)
        scores.append(score)
        print(
            f"{name:10} {modules[name]['path']:38} {score.killed:4}/{score.total:<4} killed"
            f"  {score.percent:5.1f} %  ({score.seconds:.0f} s)",
            flush=True,
        )
        for mutant in score.survivors:
            print(f"    survived: {mutant}")
            if not args.no_diffs:
                print(show(args.scratch / name, mutant))
        for mutant, why in score.equivalent.items():
            print(f"    equivalent (not counted): {mutant}: {why}")
    failing = [s.name for s in scores if s.percent < args.goal]
    total = sum(s.seconds for s in scores)
    print(f"total {total:.0f} s; under {args.goal:g} %: {', '.join(failing) or 'none'}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
