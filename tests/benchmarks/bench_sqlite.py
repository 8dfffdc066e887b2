"""SQLite backend against raw ``sqlite3`` doing the same work in the same run.

- ``indexed search``: ``tracker.search("#parent:X")`` returning the 10 children of one
  parent among N elements, against raw primary-key gets of the same 10 ids (goal ≤ 25×);
- ``bulk insert``: ``insert_many`` of N elements in one call (one transaction, index
  rows and change feed rows written in the same transaction), against encoding the same
  dicts with orjson and one ``executemany`` into a table of the same shape plus one into
  a change feed table of the same shape (goal ≤ 2×).

Run on its own: ``python -m tests.benchmarks.bench_sqlite [--quick]``.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson
from damas_core.backends.sqlite import SQLiteStorage

import damas_core
from tests.benchmarks.harness import best, figure, once, print_table

SCALES = {"full": 200_000, "quick": 20_000}
SEARCHES = 200  # distinct parents searched, to time more than one cache-warm query


def elements(n: int) -> list[dict]:
    """``n`` file-like elements, ten children per parent."""
    return [
        {
            "_id": f"/project/shots/s{i // 10:06d}/take{i % 10}.exr",
            "#parent": f"/project/shots/s{i // 10:06d}",
            "type": "take",
            "file_size": 1000 + i,
            "file_mtime": 1_700_000_000 + i,
            "author": "alice",
            "time": 1_700_000_000_000 + i,
        }
        for i in range(n)
    ]


def raw_connection(path: Path) -> sqlite3.Connection:
    """A bare sqlite3 database shaped and tuned like the backend's."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE elements (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID")
    conn.execute(
        "CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
        " deleted INTEGER NOT NULL, time INTEGER NOT NULL)"
    )
    return conn


def bulk_insert(n: int, tmp: Path) -> dict:
    docs = elements(n)

    def ours(path: Path) -> None:
        store = SQLiteStorage(f"sqlite://{path}")
        try:
            store.insert_many(docs)
        finally:
            store.close()

    def raw(path: Path) -> None:
        conn = raw_connection(path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO elements (id, doc) VALUES (?, ?)",
                [(d["_id"], orjson.dumps(d).decode()) for d in docs],
            )
            conn.executemany(
                "INSERT INTO changes (id, deleted, time) VALUES (?, 0, 0)",
                [(d["_id"],) for d in docs],
            )
            conn.execute("COMMIT")
        finally:
            conn.close()

    # Alternate the two, on fresh files removed after each run, so that neither pays
    # for the other's disk writeback.
    times: dict[str, list[float]] = {"ours": [], "raw": []}
    for run in range(3):
        for name, fn in (("ours", ours), ("raw", raw)):
            path = tmp / f"bulk-{name}-{run}.db"
            times[name].append(once(lambda fn=fn, path=path: fn(path)))
            for f in tmp.glob(f"{path.name}*"):
                f.unlink()
    return figure(
        "sqlite", "bulk insert", n, ours_s=min(times["ours"]), raw_s=min(times["raw"]), goal=2
    )


def indexed_search(n: int, tmp: Path) -> dict:
    docs = elements(n)
    parents = [f"/project/shots/s{p:06d}" for p in range(0, n // 10, max(1, n // 10 // SEARCHES))]
    children = {p: [f"{p}/take{k}.exr" for k in range(10)] for p in parents}
    url = f"sqlite://{tmp}/search.db"
    store = SQLiteStorage(url)
    store.insert_many(docs)
    store.close()
    conn = raw_connection(tmp / "search-raw.db")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO elements (id, doc) VALUES (?, ?)",
        [(d["_id"], orjson.dumps(d).decode()) for d in docs],
    )
    conn.execute("COMMIT")

    with damas_core.open(url) as tracker:
        assert tracker.search(f"#parent:{parents[0]}") == children[parents[0]]

        def ours() -> None:
            for p in parents:
                tracker.search(f"#parent:{p}")

        def raw() -> None:
            for p in parents:
                for i in children[p]:
                    conn.execute("SELECT doc FROM elements WHERE id = ?", (i,)).fetchone()

        result = figure(
            "sqlite",
            "indexed search (10 hits)",
            n,
            ours_s=best(ours, 3),
            raw_s=best(raw, 3),
            goal=25,
        )
    conn.close()
    return result


def prefix_page(n: int, tmp: Path) -> dict:
    """An ``_id`` prefix page of 100 ids on SQLite against the same on LMDB (whose keys
    are the ids in order): both read a key range (goal ≤ 2×)."""
    from damas_core.query.parser import parse

    docs = elements(n)
    query = parse(r"_id:/^\/project\/shots\/s0001/")
    stores = [damas_core.open(f"sqlite://{tmp}/prefix.db"), damas_core.open(f"lmdb://{tmp}/prefix")]
    try:
        for t in stores:
            t.storage.insert_many(docs)
            assert len(t.storage.find(query, limit=100)) == 100
        sqlite_s, lmdb_s = (
            best(lambda t=t: [t.storage.find(query, limit=100) for _ in range(20)], 5) / 20
            for t in stores
        )
    finally:
        for t in stores:
            t.close()
    return figure(
        "sqlite", "_id prefix page (100) vs LMDB", n, ours_s=sqlite_s, raw_s=lmdb_s, goal=2
    )


def figures(scale: str) -> Iterator[dict]:
    """The SQLite figures at ``scale`` (``"full"``: 200k elements, ``"quick"``: 20k)."""
    n = SCALES[scale]
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as tmp:
        yield indexed_search(n, Path(tmp))
        yield prefix_page(n, Path(tmp))
        yield bulk_insert(n, Path(tmp))


if __name__ == "__main__":
    print_table(list(figures("quick" if "--quick" in sys.argv else "full")))
