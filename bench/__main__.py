"""Run every benchmark (``python -m bench [AREA ...]``): each ``bench/bench_<area>.py`` has ``main()``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    areas = sorted(p.stem[len("bench_"):] for p in here.glob("bench_*.py"))
    chosen = argv or areas
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
