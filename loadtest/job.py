"""The comparison benchmark as a Kubernetes Job (k8s/components/bench), and how its report leaves the pod.

`python -m loadtest.job run [bench options]` runs `python -m loadtest bench --deployment endpoints` with the given
options (the Services' URLs, --quick, ...) into a fresh folder, then prints that folder to stdout as a gzipped tar in
base64 between two marker lines. The report so lives in the Job's log: it outlives the pod's exit, needs no volume,
no `kubectl exec`/`cp` (a completed pod can't be exec'd) and no permission beyond reading the log:

    kubectl -n servecompare logs job/servecompare-bench | python -m loadtest.job extract      # or, without Python:
    kubectl -n servecompare logs job/servecompare-bench \\
      | awk '/^-----END SERVECOMPARE REPORT/{p=0} p; /^-----BEGIN SERVECOMPARE REPORT/{p=1}' | base64 -d | tar xzf -

Settings from the environment (the Job's): BENCH_PROMETHEUS_URL adds `--prometheus` (each pod's CPU and memory from
cAdvisor's series), POD_NAMESPACE (the downward API) adds `--namespace`, BENCH_WAIT_S is how long to wait for the
three URLs to answer first (default 0: once), BENCH_REPORTS is where the folder is made (default /reports),
BENCH_SERVER_CORES adds `--server-cores` (the cores each backend's pods may use together, for the capacity plan).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

BEGIN = "-----BEGIN SERVECOMPARE REPORT-----"
END = "-----END SERVECOMPARE REPORT"  # + " sha256=<hex of the .tar.gz> bytes=<n>-----"
LINE = 76  # base64 line length: short lines survive any log pipeline (CRI splits lines over 16 KiB)
# kubelet rotates a container's log at 10 MiB by default (containerLogMaxSize) and `kubectl logs` reads only the
# current file: a block near that size could be cut. The report folder is well under 1 MiB (Markdown, JSON, PNGs).
MAX_ENCODED = 8 * 2**20


class ReportNotFound(ValueError):
    """The log holds no complete report block, or the block is damaged; the message says which."""


def pack(folder: Path) -> str:
    """`folder` as a .tar.gz (its files under the folder's name), in base64 lines between the markers."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        tar.add(str(folder), arcname=folder.name)
    data = raw.getvalue()
    text = base64.b64encode(data).decode()
    if len(text) > MAX_ENCODED:
        raise ValueError(f"{folder}: {len(text)} bytes in base64, over the {MAX_ENCODED} a container log keeps safely")
    lines = [text[i : i + LINE] for i in range(0, len(text), LINE)]
    digest = hashlib.sha256(data).hexdigest()
    return "\n".join([BEGIN, *lines, f"{END} sha256={digest} bytes={len(data)}-----"]) + "\n"


def unpack(log: str) -> bytes:
    """The .tar.gz of the last complete block in `log` (a Job's log), its checksum verified."""
    lines = [line.rstrip("\r") for line in log.splitlines()]
    begins = [i for i, line in enumerate(lines) if line == BEGIN]
    if not begins:
        raise ReportNotFound("no report in this log (no BEGIN line): did the benchmark finish? see the log above it")
    start = begins[-1]
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(END)), None)
    if end is None:
        raise ReportNotFound("the report block is cut off (no END line): the log was truncated or rotated")
    fields = dict(f.split("=", 1) for f in lines[end][len(END) :].strip(" -").split() if "=" in f)
    data = base64.b64decode("".join(lines[start + 1 : end]))
    if hashlib.sha256(data).hexdigest() != fields.get("sha256"):
        raise ReportNotFound(f"the report block is damaged: its sha256 is not {fields.get('sha256')}")
    return data


def extract(data: bytes, into: Path) -> Path:
    """Unpack a report .tar.gz under `into`: plain files and folders only, all inside one top folder."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
        tops = {Path(m.name).parts[0] for m in members}
        for m in members:
            if not (m.isfile() or m.isdir()) or Path(m.name).is_absolute() or ".." in Path(m.name).parts:
                raise ReportNotFound(f"refusing tar member {m.name!r} (not a plain file inside the report folder)")
        if len(tops) != 1:
            raise ReportNotFound(f"the report has {len(tops)} top folders, not 1")
        into.mkdir(parents=True, exist_ok=True)
        for m in members:
            target = into / m.name
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(m)
                assert source is not None
                target.write_bytes(source.read())
    return into / tops.pop()


def bench_command(bench_args: list[str], out: Path, env: dict[str, str]) -> list[str]:
    """`python -m loadtest bench --deployment endpoints --out <out>`, the Job's options, and the environment's."""
    cmd = [sys.executable, "-m", "loadtest", "bench", "--deployment", "endpoints", "--out", str(out), *bench_args]
    given = {a.split("=", 1)[0] for a in bench_args}
    if env.get("BENCH_PROMETHEUS_URL") and "--prometheus" not in given:
        cmd += ["--prometheus", env["BENCH_PROMETHEUS_URL"]]
    if env.get("POD_NAMESPACE") and "--namespace" not in given:
        cmd += ["--namespace", env["POD_NAMESPACE"]]
    if env.get("BENCH_SERVER_CORES") and "--server-cores" not in given:
        cmd += ["--server-cores", env["BENCH_SERVER_CORES"]]
    return cmd


def wait_for_targets(bench_args: list[str], timeout_s: float, log: Callable[[str], None] = print) -> None:
    """Until the three URLs in `bench_args` answer as the bench's attach wants (the Job may be applied together
    with the stack, before its pods are ready); ConnectionError with the last reason after `timeout_s`."""
    from stack.config import StackConfig
    from stack.deployments import Endpoints
    from stack.deployments.endpoints import EndpointsDeployment

    p = argparse.ArgumentParser(add_help=False)
    for name in ("--tf-url", "--torch-url", "--gateway-url"):
        p.add_argument(name, default="")
    known, _ = p.parse_known_args(bench_args)
    if not (known.tf_url and known.torch_url and known.gateway_url):
        return  # the bench itself says what is missing
    urls = Endpoints(StackConfig.load().model_name, known.tf_url.rstrip("/"), known.torch_url.rstrip("/"),
                     known.gateway_url.rstrip("/"))  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            EndpointsDeployment(urls).up(log)
            return
        except ConnectionError as exc:
            if time.monotonic() > deadline:
                raise ConnectionError(f"not ready within {timeout_s:.0f} s: {exc}") from exc
            log(f"waiting: {exc}")
            time.sleep(5)


def run(bench_args: list[str], reports: Path) -> int:
    """The bench into reports/servecompare-bench-<UTC time>, then the folder in the log; the bench's exit status
    (a failed bench still prints what it wrote, so its log and partial report can be read)."""
    out = reports / time.strftime("servecompare-bench-%Y%m%d-%H%M%S", time.gmtime())
    cmd = bench_command(bench_args, out, dict(os.environ))
    try:
        wait_for_targets(bench_args, float(os.environ.get("BENCH_WAIT_S", "0")))
    except ConnectionError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"== {' '.join(cmd[1:])}", flush=True)
    code = subprocess.run(cmd, check=False).returncode
    if not out.is_dir():
        print(f"error: the benchmark exited {code} and wrote no report folder", file=sys.stderr, flush=True)
        return code or 1
    try:
        block = pack(out)
    except ValueError as exc:  # too big for a container log
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return code or 1
    print(f"== report folder {out.name} (exit {code}) follows as .tar.gz in base64; take it with:", flush=True)
    print("   kubectl logs job/servecompare-bench | python -m loadtest.job extract", flush=True)
    sys.stdout.write(block)
    sys.stdout.flush()
    return code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.job", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="the bench on --deployment endpoints, then its report folder in the log; every "
                   "option after `run` goes to `python -m loadtest bench`")  # fmt: skip
    x = sub.add_parser("extract", help="unpack the report from a Job's log on stdin (or --log)")
    x.add_argument("--log", type=Path, default=None, help="a saved log (default: stdin)")
    x.add_argument("--into", type=Path, default=Path("."), help="folder to unpack into (default .)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"] and not {"-h", "--help"} & set(argv[1:2]):  # the bench's options, as they are
        return run(argv[1:], Path(os.environ.get("BENCH_REPORTS", "/reports")))
    args = p.parse_args(argv)
    text = args.log.read_text(errors="replace") if args.log else sys.stdin.read()
    try:
        folder = extract(unpack(text), args.into)
    except (ReportNotFound, ValueError, tarfile.TarError, gzip.BadGzipFile) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(folder / "report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
