"""Kubernetes resource quantities as numbers: what the capacity plan reads from k8s/base and what the e2e's pods
under Docker get as `--cpus` / `--memory` (one parser for both)."""

from __future__ import annotations

MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}


def cpu_quantity(text: str | int | float) -> float:
    """Kubernetes CPU quantity in cores: '500m' -> 0.5, '1' -> 1.0, 2 -> 2.0."""
    s = str(text).strip()
    return float(s[:-1]) / 1000 if s.endswith("m") else float(s)


def memory_quantity(text: str | int | float) -> int:
    """Kubernetes memory quantity in bytes: '2Gi' -> 2147483648, '500M' -> 500000000, 1024 -> 1024."""
    s = str(text).strip()
    unit = next((u for u in sorted(MEMORY_UNITS, key=len, reverse=True) if s.endswith(u)), "")
    return int(float(s.removesuffix(unit) or 0) * MEMORY_UNITS.get(unit, 1))
