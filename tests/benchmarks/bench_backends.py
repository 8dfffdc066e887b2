"""TinyDB backend against raw TinyDB and the memory backend, in the same run.

- ``tinydb create one by one``: N ``tracker.create`` calls, one element each, through
  ``damas_core.open("tinydb://…")`` (each one a durable, fsynced, atomic file write),
  against a naive ``TinyDB.insert`` loop doing the same inserts (TinyDB reads and
  rewrites the whole file at each insert, without fsync). Goal ≤ 0.1×: ten times faster.
  Measured twice: durable (the default) and ``sync=False`` (no fsync, like TinyDB).
- ``tinydb read by id``: N reads of one id each through the storage, against the
  memory backend doing the same reads (goal ≤ 3×): a read costs one ``stat``.
- mongomock is checked for correctness only (a copy round trip), with no figure: it
  measures mongomock, not MongoDB.

Run on its own: ``python -m tests.benchmarks.bench_backends [--quick]``.
"""

from __future__ import annotations

import random
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from damas_core.backends.memory import MemoryStorage
from tinydb import TinyDB

import damas_core
from damas_core.registry import open_storage
from damas_core.transfer import copy_store
from tests.benchmarks.harness import figure, once, print_table

AREA = "backends"
SCALES = {"full": 10_000, "quick": 1_000}


def elements(n: int) -> list[dict]:
    """``n`` file-like elements."""
    return [
        {
            "_id": f"/project/shots/s{i // 10:05d}/take{i % 10}.exr",
            "#parent": f"/project/shots/s{i // 10:05d}",
            "file_size": 1000 + i,
            "comment": "scanned at paris",
        }
        for i in range(n)
    ]


def create_one_by_one(n: int, directory: Path) -> Iterator[dict]:
    items = elements(n)

    def ours(sync: bool) -> None:
        with damas_core.open(f"tinydb://{directory}/ours-{sync}.json", sync=sync) as tracker:
            for e in items:
                tracker.create(e)

    def raw() -> None:
        db = TinyDB(directory / "raw.json")
        for e in items:
            db.insert(dict(e))
        db.close()

    durable_s, unsynced_s, raw_s = once(lambda: ours(True)), once(lambda: ours(False)), once(raw)
    yield figure(AREA, "tinydb create one by one", n, ours_s=durable_s, raw_s=raw_s, goal=0.1)
    # TinyDB never fsyncs: sync=False is the same durability, still atomic writes.
    yield figure(
        AREA, "tinydb create one by one, sync=False", n, ours_s=unsynced_s, raw_s=raw_s, goal=0.1
    )


def read_by_id(n: int, directory: Path) -> Iterator[dict]:
    items = elements(n)
    ids = [e["_id"] for e in items]
    random.Random(7).shuffle(ids)
    tiny = open_storage(f"tinydb://{directory}/read.json")
    tiny.insert_many(items)
    memory = MemoryStorage()
    memory.insert_many(items)

    def reads(store) -> None:
        for i in ids:
            store.get_many([i])

    # Best of five: both are in memory, the least disturbed run is the fairest.
    ours_s = min(once(lambda: reads(tiny)) for _ in range(5))
    raw_s = min(once(lambda: reads(memory)) for _ in range(5))
    tiny.close()
    yield figure(AREA, "tinydb read by id vs memory", n, ours_s=ours_s, raw_s=raw_s, goal=3.0)


def check_mongomock(n: int, directory: Path) -> None:
    """Correctness only: a TinyDB store copied into mongomock and back is unchanged."""
    items = elements(min(n, 2000))
    with open_storage(f"tinydb://{directory}/m.json") as src:
        src.insert_many(items)
        with (
            open_storage("mongomock://") as mock,
            open_storage(f"tinydb://{directory}/back.json") as back,
        ):
            assert copy_store(src, mock).ok
            assert copy_store(mock, back).ok
            assert list(back.scan()) == list(src.scan())


def figures(scale: str) -> Iterator[dict]:
    """The rows of this area at ``scale`` (``"full"`` or ``"quick"``)."""
    n = SCALES[scale]
    with tempfile.TemporaryDirectory(prefix="damas-bench-") as tmp:
        directory = Path(tmp)
        check_mongomock(n, directory)
        yield from read_by_id(n, directory)
        yield from create_one_by_one(n, directory)


if __name__ == "__main__":
    print_table(list(figures("quick" if "--quick" in sys.argv else "full")))
