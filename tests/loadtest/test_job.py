"""loadtest/job.py: the bench Job's report leaves the pod in its log, and comes back out of it both ways a user
takes it (`python -m loadtest.job extract`, and the awk | base64 -d | tar pipeline of the docs) byte for byte."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest import job
from stack.config import ROOT
from stack.launcher import free_port

PIPELINE = (
    "awk '/^-----END SERVECOMPARE REPORT/{p=0} p; /^-----BEGIN SERVECOMPARE REPORT/{p=1}' | base64 -d | tar xzf -"
)


@pytest.fixture
def report(tmp_path: Path) -> Path:
    folder = tmp_path / "made" / "servecompare-bench-20250101-000000"
    folder.mkdir(parents=True)
    (folder / "report.md").write_text("# Report\n\n## Verdict\n")
    (folder / "summary.json").write_text('{"points": []}\n' * 500)
    (folder / "plot.png").write_bytes(bytes(range(256)) * 300)  # binary, and more than one base64 line
    return folder


def a_log(block: str) -> str:
    """A Job's log as `kubectl logs` gives it: the bench's own lines before the block, stderr after it."""
    return "== benchmark -> /reports/x\n   [off rows 1 users 1 trial 1] tf-direct 900 req/s\n" + block + "error: late\n"


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_report_comes_back_byte_for_byte_through_extract(report: Path, tmp_path: Path) -> None:
    block = job.pack(report)
    lines = block.splitlines()
    assert lines[0] == job.BEGIN and lines[-1].startswith(job.END) and len(lines) > 3
    assert max(len(line) for line in lines[1:-1]) <= job.LINE
    got = job.extract(job.unpack(a_log(block)), tmp_path / "out")
    assert got == tmp_path / "out" / report.name
    assert files(got) == files(report)


@pytest.mark.skipif(not (shutil.which("awk") and shutil.which("base64") and shutil.which("tar")), reason="no tools")
def test_the_documented_shell_pipeline_extracts_it(report: Path, tmp_path: Path) -> None:
    out = tmp_path / "shell"
    out.mkdir()
    done = subprocess.run(["sh", "-c", PIPELINE], input=a_log(job.pack(report)), cwd=out, text=True,
                          capture_output=True, timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert files(out / report.name) == files(report)
    # the docs and the component's comments give the same pipeline
    kustomization = (ROOT / "k8s" / "components" / "bench" / "kustomization.yaml").read_text()
    assert "awk '/^-----END SERVECOMPARE REPORT/{p=0} p; /^-----BEGIN SERVECOMPARE REPORT/{p=1}'" in kustomization


def test_extract_from_the_command_line(report: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "loadtest.job", "extract", "--into", str(tmp_path / "cli")]
    done = subprocess.run(cmd, input=a_log(job.pack(report)), text=True, capture_output=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "cli" / report.name / "report.md")
    refused = subprocess.run(cmd, input="== benchmark\nerror: stage failed\n", text=True, capture_output=True,
                             env=env, timeout=60)  # fmt: skip
    assert refused.returncode == 1 and "no report in this log" in refused.stderr


def test_a_damaged_cut_or_missing_block_is_refused(report: Path) -> None:
    block = job.pack(report)
    lines = block.splitlines()
    damaged = lines[:]
    damaged[2] = ("B" if damaged[2][0] != "B" else "C") + damaged[2][1:]
    with pytest.raises(job.ReportNotFound, match="damaged"):
        job.unpack(a_log("\n".join(damaged) + "\n"))
    with pytest.raises(job.ReportNotFound, match="cut off"):
        job.unpack("\n".join(lines[:-1]))
    with pytest.raises(job.ReportNotFound, match="no report"):
        job.unpack("== benchmark\n")
    # a log with a first, cut block and a later complete one: the later one
    assert job.unpack("\n".join(lines[:3]) + "\n" + block) == job.unpack(block)


def test_a_tar_with_a_path_outside_its_folder_is_refused(tmp_path: Path) -> None:
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped.md")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(job.ReportNotFound, match="refusing"):
        job.extract(raw.getvalue(), tmp_path / "out")
    assert not (tmp_path / "escaped.md").exists()


def test_the_bench_command_takes_the_jobs_environment() -> None:
    args = ["--tf-url=http://tf-serving:8501", "--quick"]
    env = {"BENCH_PROMETHEUS_URL": "http://prom:9090", "POD_NAMESPACE": "bench-ns"}
    cmd = job.bench_command(args, Path("/reports/r"), env)
    assert cmd[1:8] == ["-m", "loadtest", "bench", "--deployment", "endpoints", "--out", "/reports/r"]
    assert cmd[8:] == [*args, "--prometheus", "http://prom:9090", "--namespace", "bench-ns"]
    given = job.bench_command([*args, "--prometheus=http://other:9090"], Path("/r"), env)
    assert given.count("--prometheus") == 0 and "--prometheus=http://other:9090" in given
    assert job.bench_command(args, Path("/r"), {"BENCH_PROMETHEUS_URL": ""})[8:] == args
    cores = job.bench_command(args, Path("/r"), {"BENCH_SERVER_CORES": "tf=4,torch=2"})
    assert cores[8:] == [*args, "--server-cores", "tf=4,torch=2"]
    assert job.bench_command([*args, "--server-cores=1"], Path("/r"), {"BENCH_SERVER_CORES": "4"}).count("4") == 0


def test_nothing_answering_fails_the_job_without_a_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    os.environ.pop("BENCH_WAIT_S", None)
    os.environ["BENCH_REPORTS"] = str(tmp_path)
    try:
        code = job.main(["run", f"--tf-url={url}", f"--torch-url={url}", "--gateway-url", url, "--quick"])
    finally:
        del os.environ["BENCH_REPORTS"]
    out = capsys.readouterr()
    assert code == 1 and "does not answer" in out.err and job.BEGIN not in out.out
    assert list(tmp_path.iterdir()) == []


def test_a_report_too_big_for_a_container_log_is_refused(report: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job, "MAX_ENCODED", 1000)
    with pytest.raises(ValueError, match="over the 1000 a container log keeps"):
        job.pack(report)
