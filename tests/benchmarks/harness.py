"""Shared helpers for the benchmarks: timing, figure rows, the table and the JSON file.

A figure compares our code with the raw library doing the same work in the same run:

>>> row = figure("core", "read one id", 1000, ours_s=0.02, raw_s=0.01, goal=3.0)
>>> row["ratio"], row["goal"], row["ok"]
(2.0, '≤ 3.0×', True)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson


def best(fn: Callable[[], object], repeat: int = 5) -> float:
    """The best wall time, in seconds, of ``repeat`` runs of ``fn`` (the least disturbed)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def once(fn: Callable[[], object]) -> float:
    """The wall time of one run of ``fn``."""
    return best(fn, 1)


def figure(
    area: str, name: str, n: int, *, ours_s: float, raw_s: float, goal: float | None
) -> dict:
    """One row: ``ratio = ours_s / raw_s``, ``ok`` when the ratio meets ``goal``
    (``None`` when there is no goal)."""
    ratio = ours_s / raw_s if raw_s > 0 else float("inf")
    return {
        "area": area,
        "figure": name,
        "n": n,
        "ours_s": ours_s,
        "raw_s": raw_s,
        "ratio": round(ratio, 3),
        "goal": "" if goal is None else f"≤ {goal:.1f}×",
        "ok": None if goal is None else ratio <= goal,
    }


def print_table(rows: Iterable[dict], title: str = "damas-core benchmarks") -> None:
    """The rows as a table on the terminal."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column, justify in (
        ("area", "left"), ("figure", "left"), ("n", "right"), ("ours", "right"),
        ("raw", "right"), ("ratio", "right"), ("goal", "right"), ("ok", "center"),
    ):  # fmt: skip
        table.add_column(column, justify=justify, no_wrap=True)
    for r in rows:
        ok = {True: "[green]yes[/]", False: "[red]NO[/]", None: "-"}[r["ok"]]
        table.add_row(
            r["area"], r["figure"], f"{r['n']:,}", _seconds(r["ours_s"]), _seconds(r["raw_s"]),
            f"{r['ratio']:.2f}×", r["goal"], ok,
        )  # fmt: skip
    console = Console()
    if not console.is_terminal:  # a log or a pipe: every column in full
        console = Console(width=140)
    console.print(table)


def write_json(rows: list[dict], path: Path) -> None:
    """Write the rows to ``path`` (directories created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))


def progress(row: dict) -> None:
    """One line per figure on stderr while a long run goes on."""
    print(
        f"  {row['area']:<8} {row['figure']:<40} n={row['n']:<9,} ratio {row['ratio']:.2f}",
        file=sys.stderr,
        flush=True,
    )


def _seconds(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} µs"
