"""Run the benchmarks: ``python -m bench [AREA ...]`` (``--help`` lists the areas).

Each ``bench/bench_<area>.py`` has ``main()``; it prints its tables and writes flat figures
to ``bench/results/<area>.json``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def _areas() -> dict[str, str]:
    """Area -> the first line of its module's docstring."""
    here = Path(__file__).resolve().parent
    out = {}
    for p in sorted(here.glob("bench_*.py")):
        doc = ""
        for line in p.read_text().splitlines():
            line = line.strip().strip('"').strip()
            if line:
                doc = line
                break
        out[p.stem[len("bench_"):]] = doc
    return out


def main(argv: list[str]) -> int:
    if hasattr(sys.stdout, "reconfigure"):          # tables appear as they are made, piped too
        sys.stdout.reconfigure(line_buffering=True)
    areas = _areas()
    if any(a in ("-h", "--help") for a in argv):
        print("usage: python -m bench [AREA ...]   (all areas when none is given)\n\nareas:")
        width = max(map(len, areas))
        for name, doc in areas.items():
            print(f"  {name:{width}}  {doc}")
        return 0
    chosen = argv or list(areas)
    unknown = [a for a in chosen if a not in areas]
    if unknown:
        print(f"Unknown benchmark area(s) {', '.join(unknown)}; available: {', '.join(areas)}",
              file=sys.stderr)
        return 2
    for area in chosen:
        importlib.import_module(f"bench.bench_{area}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
