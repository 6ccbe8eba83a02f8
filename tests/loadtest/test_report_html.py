"""report.md's order (summary and verdict, then plots, then tables) and report.html beside it: well-formed, the
verdict before the first table, every plot embedded as a PNG data URI that decodes, every table row of report.md
a row of the page, text escaped. The report is written from a summary.json alone (a whole bench on fakes at its
instruments makes one here, tests/loadtest/test_progress.py; no server is started)."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from loadtest.report import write_report
from loadtest.report.html_page import inline, render
from tests.loadtest.test_progress import run_fake_bench, small_options

VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr", "area", "base", "embed", "track"}


class Page(HTMLParser):
    """The page's elements in document order, each start tag checked against its end tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.events: list[tuple[str, str, dict[str, str | None]]] = []  # (start, tag, attrs) / (text, data, {})
        self.errors: list[str] = []
        self.doctype = ""

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.events.append(("start", tag, dict(attrs)))
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.open[-1] if self.open else 'nothing'}>")
        else:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.events.append(("text", data, {}))

    def first(self, tag: str) -> int:
        return next(i for i, (kind, t, _) in enumerate(self.events) if kind == "start" and t == tag)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        run_fake_bench(out, mp, small_options())
    return out


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def test_report_md_opens_with_the_summary_then_the_plots_then_the_tables(report: Path) -> None:
    text = (report / "report.md").read_text()
    order = [text.index(s) for s in ("## Summary", "### Verdict", "## Plots", "![throughput.png]", "| ")]
    assert order == sorted(order), order
    summary = text[text.index("## Summary") : text.index("### Verdict")]
    env = json.loads((report / "summary.json").read_text())["environment"]
    for what in (
        f"TorchServe {env['versions']['torchserve']} on torch {env['versions']['torch']}",
        f"tensorflow-cpu {env['versions']['tensorflow-cpu']}",
        f"Machine: {env['cpu_count']} cores, {env['machine']}",
        "model `digits` (8,970 weights)",
        "Run: 20",
    ):
        assert what in summary, what
    assert "|" not in text[: text.index("## Plots")]  # no table before the plots


def test_report_html_is_well_formed_with_the_verdict_before_the_first_table(report: Path) -> None:
    page = parse(report / "report.html")
    assert page.doctype.lower() == "doctype html" and not page.errors and not page.open, page.errors[:5]
    sections = [(i, a.get("id")) for i, (kind, t, a) in enumerate(page.events) if kind == "start" and t == "section"]
    assert [s for _, s in sections][:2] == ["summary", "plots"], sections
    verdict = next(i for i, (kind, t, _) in enumerate(page.events) if kind == "text" and t == "Verdict")
    assert verdict < page.first("img") < page.first("table")
    items = [d for kind, d, _ in page.events[verdict : page.first("img")] if kind == "text"]
    assert sum(d.startswith(("latency at low load", "rate within the SLO")) for d in items) == 2  # the lines' bold
    md_rows = [line for line in (report / "report.md").read_text().splitlines() if line.startswith("|")]
    rows = sum(1 for kind, t, _ in page.events if kind == "start" and t == "tr")
    assert rows == len(md_rows) - sum(1 for line in md_rows if re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line))


def test_every_plot_is_embedded_as_a_png_that_decodes(report: Path) -> None:
    page = parse(report / "report.html")
    images = [a for kind, t, a in page.events if kind == "start" and t == "img"]
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert len(images) == len(pngs) == 5
    for img in images:
        src = img["src"] or ""
        assert src.startswith("data:image/png;base64,"), src[:40]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data == (report / (img["alt"] or "")).read_bytes()
    assert (
        'src="http' not in (report / "report.html").read_text()
        and "<script" not in (report / "report.html").read_text()
    )


def test_the_report_is_rewritten_from_summary_json_alone(report: Path, tmp_path: Path) -> None:
    summary: dict[str, Any] = json.loads((report / "summary.json").read_text())
    summary["environment"]["platform"] = "Linux <script>alert(1)</script> & co"
    write_report(summary, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "<script>" not in page and "Linux &lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert not parse(tmp_path / "report.html").errors


def test_inline_markup_and_escaping() -> None:
    assert inline("**TF side** ahead, `p99` *interval* <b> & x*2*3") == (
        "<strong>TF side</strong> ahead, <code>p99</code> <em>interval</em> &lt;b&gt; &amp; x*2*3"
    )
    page = render(["# T", "", "| a | n |", "|---|---:|", "| x | 1 |", "", "- one", "  more"], Path("."))
    assert "<td>x</td><td class=num>1</td>" in page and "<li>one more</li>" in page
