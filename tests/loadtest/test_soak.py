"""The soak report's p99 drift, computed from locust's full-history CSV."""

from __future__ import annotations

import csv
from pathlib import Path

from loadtest.soak import p99_drift


def write_history(path: Path, p99s: list[str]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["Name", "99%"])
        w.writeheader()
        for v in p99s:
            w.writerow({"Name": "Aggregated", "99%": v})
            w.writerow({"Name": "gateway-tf", "99%": "999"})


def test_p99_drift(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    write_history(path, ["N/A", "50", "50"] + ["10"] * 5 + ["12"] * 10 + ["20"] * 5)
    drift = p99_drift(path)
    assert drift == {"start_p99_ms": 10.0, "end_p99_ms": 20.0, "drift_ms": 10.0}


def test_p99_drift_needs_enough_rows(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    write_history(path, ["10", "10", "10"])
    assert p99_drift(path)["drift_ms"] is None
