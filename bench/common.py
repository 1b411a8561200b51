"""Shared helpers for benchmarks: a printed table and a flat JSON of figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

RESULTS = Path(__file__).resolve().parent / "results"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print ``rows`` under ``header`` as an aligned text table."""
    cells = [[str(h) for h in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, r in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


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


def _fmt(c: object) -> str:
    if isinstance(c, float):
        return f"{c:.3f}" if abs(c) < 1000 else f"{c:.0f}"
    return str(c)
