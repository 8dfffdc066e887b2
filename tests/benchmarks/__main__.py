"""Run the benchmarks: ``python -m tests.benchmarks [--quick] [area ...]``.

Every ``bench_<area>.py`` module next to this file exposes ``figures(scale)``; each
figure it yields compares our code with the raw library doing the same work in the
same run. The rows are printed as a table and written to ``build/bench.json``.
The exit status is 1 when an area failed to run (a goal missed is reported, not fatal).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from pathlib import Path

from tests.benchmarks.harness import print_table, progress, write_json

HERE = Path(__file__).resolve().parent


def areas() -> list[str]:
    """The benchmark areas found next to this file, by name (``bench_core.py`` → core)."""
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    known = areas()
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--output", type=Path, default=Path("build/bench.json"))
    parser.add_argument("areas", nargs="*", metavar="area", help=f"any of: {', '.join(known)}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.areas) - set(known))
    if unknown:
        parser.error(f"unknown area {', '.join(unknown)} (known: {', '.join(known)})")
    scale = "quick" if args.quick else "full"
    rows: list[dict] = []
    failed: list[str] = []
    for area in args.areas or known:
        print(f"{area} ({scale})", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"tests.benchmarks.bench_{area}")
            for row in module.figures(scale):
                rows.append(row)
                progress(row)
        except Exception:
            traceback.print_exc()
            failed.append(area)
    print_table(rows)
    write_json(rows, args.output)
    print(f"wrote {args.output}", file=sys.stderr)
    if failed:
        print(f"failed to run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
