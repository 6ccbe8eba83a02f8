"""Two runs' verdicts side by side: the same, or why not (`servecompare report RUN --against OTHER`).

A verdict line is one of: a side named, "no clear difference" (an interval that does not clear the margin) or "no
verdict" (refused, with reasons). Two runs agree on a dimension when they reach the same one of these; where they
do not, the line says which kind of disagreement it is, from the lines themselves:
- one run refused: its reasons (a point that did not settle, failures, the generator, too few values);
- one named a side, the other saw no clear difference: the difference sits near the margin, and both intervals
  are shown (the named one clears the margin, the other straddles it);
- the runs named opposite sides: a contradiction, which intervals over trials cannot explain (the machine or the
  servers changed between the runs).
"""

from __future__ import annotations

from typing import Any

from loadtest.report.verdict import SIDES, verdict


def dimension_of(line: dict[str, Any]) -> str:
    """The dimension without the run's own details in brackets ("max throughput (best concurrency: ...)")."""
    return str(line["dimension"]).split(" (", 1)[0]


def outcome(line: dict[str, Any]) -> str:
    if line.get("ahead"):
        return f"{SIDES[line['ahead']]} ahead"
    return "no verdict" if line.get("reasons") else "no clear difference"


def _interval(line: dict[str, Any]) -> str:
    if line.get("ratio_interval"):
        low, high = line["ratio_interval"]
        return f"{line['ratio']:.2f}× [{low:.2f}–{high:.2f}]"
    if line.get("interval"):
        low, high = line["interval"]
        return f"TorchServe ÷ TF side [{low:.2f}–{high:.2f}]"
    return str(line.get("text", ""))


def why_not(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str]) -> str:
    """Why two lines of the same dimension differ (a and b from runs names[0] and names[1])."""
    oa, ob = outcome(a), outcome(b)
    refused = [(n, line) for n, line in zip(names, (a, b), strict=True) if outcome(line) == "no verdict"]
    if refused:
        return "; ".join(f"{n} refused: {'; '.join(line['reasons'])}" for n, line in refused)
    if a.get("ahead") and b.get("ahead"):
        return (
            f"contradiction: {names[0]} {oa} {_interval(a)}, {names[1]} {ob} {_interval(b)}: the intervals over "
            "trials do not cover the change between the runs (the machine or the servers changed)"
        )
    named, other = (names[0], a), (names[1], b)
    if not a.get("ahead"):
        named, other = other, named
    return (f"near the margin ({(named[1].get('margin') or 0) * 100:g} %): {named[0]} {outcome(named[1])} "
            f"{_interval(named[1])}, {other[0]} {_interval(other[1])}, which does not clear it")  # fmt: skip


def compare(first: dict[str, Any], second: dict[str, Any], names: tuple[str, str] = ("run 1", "run 2")) -> list[
    dict[str, Any]
]:  # fmt: skip
    """One row per dimension of the first run's verdict: both outcomes, whether they agree, and why not."""
    theirs = {dimension_of(line): line for line in verdict(second)}
    rows = []
    for a in verdict(first):
        dim = dimension_of(a)
        b = theirs.get(dim, {"dimension": dim, "ahead": None, "reasons": [f"not in {names[1]}"]})
        same = outcome(a) == outcome(b)
        why = "" if same and outcome(a) != "no verdict" else why_not(a, b, names)
        rows.append({"dimension": dim, "first": outcome(a), "second": outcome(b), "same": same, "why": why})
    return rows


def markdown(rows: list[dict[str, Any]], names: tuple[str, str] = ("run 1", "run 2")) -> str:
    head = [f"| dimension | {names[0]} | {names[1]} | same | why not (or why neither decided) |", "|---" * 5 + "|"]
    body = [f"| {r['dimension']} | {r['first']} | {r['second']} | {'yes' if r['same'] else 'no'} | {r['why']} |"
            for r in rows]  # fmt: skip
    agree = sum(r["same"] for r in rows)
    decided = sum(r["same"] and r["first"] != "no verdict" for r in rows)
    tail = f"{agree} of {len(rows)} verdict lines agree"
    tail += f" ({decided} reached by both runs, {agree - decided} refused by both)." if agree > decided else "."
    return "\n".join([*head, *body, "", tail])
