"""Shared helpers for benchmarks: a printed table and a flat JSON of figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from accelpool.flow.tables import print_table

__all__ = ["RESULTS", "print_table", "write_results"]

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(area: str, figures: Mapping[str, float]) -> Path:
    """Write flat ``name -> number`` figures to ``bench/results/<area>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{area}.json"
    bad = {k: v for k, v in figures.items() if not isinstance(v, (int, float))}
    if bad:
        raise TypeError(f"Benchmark figures must be numbers; not: {bad!r}")
    path.write_text(json.dumps(dict(sorted(figures.items())), indent=1) + "\n")
    print(f"wrote {path.relative_to(RESULTS.parent.parent)}")
    return path
