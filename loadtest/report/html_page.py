"""report.html: the same lines as report.md, as one self-contained page (plots embedded as PNG data URIs).

No markdown library is a dependency, and the report's lines use a small fixed part of markdown, written by this
package's own helpers (tables.py, capacity.py, __init__.py): headings, `>` notes, `- ` lists, pipe tables with an
alignment row, `![name](file.png)` plots alone on a line, and inline `code`, **bold** and *emphasis*. That part is
rendered here; every piece of text is escaped with html.escape before any tag is added. Each `##` heading opens a
<section>, so the page's order is the report's: the summary and verdict first, then the plots, then the tables.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)$")
INLINE = [
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])"), r"<em>\1</em>"),
]
STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330; margin: 0 auto;
       max-width: 1180px; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.7rem; margin-bottom: .4rem; } h2 { margin-top: 2.4rem; border-bottom: 1px solid #d6dae3; }
h3 { margin-top: 1.8rem; } h4 { margin: 1.2rem 0 .4rem; }
section#summary, section#verdict { background: #f5f7fb; border: 1px solid #d6dae3; border-radius: 6px;
       padding: 0 1.2rem .6rem; margin-top: 1rem; }
section#summary h2, section#verdict h2 { border: 0; margin-top: 1rem; }
blockquote { margin: 1rem 0; padding: .4rem 1rem; border-left: 4px solid #d9a400; background: #fff8e1; }
.table { overflow-x: auto; margin: .6rem 0 1.2rem; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d6dae3; padding: 3px 7px; vertical-align: top; }
th { background: #eef1f7; text-align: left; } td.num, th.num { text-align: right; white-space: nowrap; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; height: auto; border: 1px solid #e3e6ec; }
figcaption { font-size: 13px; color: #5a6275; } code { font-size: 90%; background: #eef1f7; padding: 0 3px; }
"""


def inline(text: str) -> str:
    out = html.escape(text, quote=False)
    for pattern, tag in INLINE:
        out = pattern.sub(tag, out)
    return out


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip()[1:-1].split("|")]


def _table(rows: list[str]) -> list[str]:
    head, align, body = _cells(rows[0]), _cells(rows[1]), [_cells(r) for r in rows[2:]]
    num = [a.endswith(":") for a in align]

    def row(cells: list[str], tag: str) -> str:
        return "<tr>" + "".join(
            f'<{tag}{" class=num" if i < len(num) and num[i] else ""}>{inline(c)}</{tag}>' for i, c in enumerate(cells)
        ) + "</tr>"  # fmt: skip

    return ['<div class="table"><table>', "<thead>" + row(head, "th") + "</thead>", "<tbody>"] + [
        row(cells, "td") for cells in body
    ] + ["</tbody></table></div>"]  # fmt: skip


def _image(alt: str, src: str, folder: Path) -> str:
    data = base64.b64encode((folder / src).read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
        f"<figcaption>{html.escape(src)}</figcaption></figure>"
    )


def render(lines: list[str], folder: Path) -> str:
    """The page for report.md's `lines`; plots are read from `folder` and embedded."""
    title = next((line[2:] for line in lines if line.startswith("# ")), "servecompare report")
    body: list[str] = []
    paragraph: list[str] = []
    listing: list[str] = []
    quote: list[str] = []
    table: list[str] = []
    in_section = False

    def flush() -> None:
        if paragraph:
            body.append(f"<p>{inline(' '.join(paragraph))}</p>")
        if listing:
            body.append("<ul>" + "".join(f"<li>{inline(item)}</li>" for item in listing) + "</ul>")
        if quote:
            body.append(f"<blockquote><p>{inline(' '.join(quote))}</p></blockquote>")
        if table:
            body.extend(_table(table) if len(table) >= 2 else [f"<p>{inline(' '.join(table))}</p>"])
        for block in (paragraph, listing, quote, table):
            block.clear()

    for line in lines:
        text = line.rstrip()
        heading = re.match(r"^(#{1,4}) (.*)$", text)
        image = IMAGE.match(text.strip())
        if not text.strip() or heading or image:
            flush()
        if heading:
            level, words = len(heading[1]), heading[2]
            if level == 2:
                body.append(("</section>" if in_section else "") + f'<section id="{slug(words)}">')
                in_section = True
            body.append(f'<h{level} id="{slug(words)}">{inline(words)}</h{level}>')
        elif image:
            body.append(_image(image[1], image[2], folder))
        elif text.startswith("|"):
            if paragraph or listing or quote:
                flush()
            table.append(text)
        elif text.startswith("- "):
            listing.append(text[2:])
        elif text.startswith(">"):
            quote.append(text.lstrip("> "))
        elif text.strip():
            if listing and text.startswith("  "):  # a list item's continuation
                listing[-1] += " " + text.strip()
            else:
                paragraph.append(text.strip())
    flush()
    if in_section:
        body.append("</section>")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{STYLE}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )


def write_page(lines: list[str], folder: Path) -> Path:
    path = folder / "report.html"
    path.write_text(render(lines, folder), encoding="utf-8")
    return path
