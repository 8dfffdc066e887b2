"""The core on the LMDB backend, through the public API, against raw py-lmdb.

Each figure times a ``Tracker`` method on ``lmdb://`` and raw py-lmdb doing the same
work on an environment of the same shape in the same run (``orjson`` for the JSON):

- ``bulk create``: ``tracker.create(N elements)`` in one call, against one raw write
  transaction doing the same writes: each element as the tracker stores it (with its
  ``author`` and ``time``), its ``#parent`` index entry and its two change feed
  entries (seq → id, appended, and id → seq), in the backend's layout (goal ≤ 2×);
  best of three, on fresh stores. Also reported: the same call against a raw
  transaction putting the input elements alone (no stamp, no index, no feed entry);
- ``changes(since=last)``, nothing new: one ``storage.changes(last_seq, 1000)`` call,
  the poll of an idle reader, against the 50 µs budget (goal ≤ 1×), and flat from the
  smallest size to the largest (goal ≤ 1.5×);
- ``read one id``: ``tracker.read(id)`` per id, against a read transaction, ``get``
  and decode per id (goal ≤ 3×);
- ``read 1000 ids``: ``tracker.read([1000 ids])``, against 1000 gets in one read
  transaction (goal ≤ 1.5×);
- ``indexed search``: ``tracker.search('#parent:"X"')`` (10 hits), against 10 raw gets
  of those children (goal ≤ 25×, and flat from 200k to 1M elements);
- ``full-scan search``: ``tracker.search("file_size>X")``, against a raw cursor scan,
  decode and a hand-written filter (goal ≤ 2×);
- ``graph depth 3``: ``tracker.graph(root, depth=3)`` on trees of 40 nodes and 39
  links, against raw gets of the same 79 elements (goal ≤ 3×).

One store per size is reused by every figure. Run on its own:
``python -m tests.benchmarks.bench_core [--quick]``.
"""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import lmdb
import orjson

import damas_core
from tests.benchmarks.harness import best, figure, once, print_table

AREA = "core"
SCALES = {"full": (200_000, 1_000_000), "quick": (20_000,)}
CREATE_RUNS = 3  # bulk creates timed, each on fresh stores
READ_ONE = 2000  # ids read one call each
READ_BATCHES = 20  # calls of 1000 ids
SEARCHES = 200  # parents searched
TREES = 50  # graph roots
BRANCHING = 3
FLAT_GOAL = 1.5  # indexed search time at the largest size / at the smallest
IDLE_POLLS = 5000  # changes(since=last) calls timed
IDLE_BUDGET_S = 50e-6  # what one idle poll may cost

loads, dumps = orjson.loads, orjson.dumps


def elements(n: int) -> list[dict]:
    """``n`` file-like elements, ten children per parent."""
    return [
        {
            "_id": f"/project/shots/s{i // 10:06d}/take{i % 10}.exr",
            "#parent": f"/project/shots/s{i // 10:06d}",
            "type": "take",
            "file_size": 1000 + i,
            "file_mtime": 1_700_000_000 + i,
            "origin": "paris",
            "comment": "scanned at paris",
        }
        for i in range(n)
    ]


def elements_time() -> int:
    """A ``time`` as create stamps it (milliseconds since the epoch)."""
    return time.time_ns() // 1_000_000


def trees(count: int) -> tuple[list[str], list[dict], dict[str, list[str]]]:
    """Graph fixtures: roots, every node and link, and the ids a depth-3 walk reaches."""
    roots, out, reached = [], [], {}
    for t in range(count):
        root = f"/graph/t{t}"
        roots.append(root)
        out.append({"_id": root, "type": "asset"})
        ids = [root]
        level = [root]
        for depth in range(3):
            nxt = []
            for parent in level:
                for b in range(BRANCHING):
                    node = f"{parent}/{depth}{b}"
                    link = f"/links{node}"
                    out.append({"_id": node, "type": "asset"})
                    out.append({"_id": link, "src_id": node, "tgt_id": parent})
                    ids += [node, link]
                    nxt.append(node)
            level = nxt
        reached[root] = ids
    return roots, out, reached


class Raw:
    """A bare py-lmdb environment shaped like the backend's: an ``elements`` database
    and a ``#parent`` index (index key ``s`` + value → element keys, sorted duplicates)."""

    def __init__(self, path: str) -> None:
        self.env = lmdb.open(path, map_size=16 << 30, max_dbs=6, readahead=False)
        self.db = self.env.open_db(b"elements")
        self.parents = self.env.open_db(b"#parent", dupsort=True)
        self.by_seq = self.env.open_db(b"feed:seq")
        self.by_id = self.env.open_db(b"feed:id")
        self.seq = 0

    def put_all(self, items: list[dict], *, index: bool = True) -> None:
        """Put ``items`` in one write transaction, with their ``#parent`` entries and
        change feed entries when ``index``."""
        db, parents, by_seq, by_id = self.db, self.parents, self.by_seq, self.by_id
        with self.env.begin(write=True) as txn:
            put = txn.put
            for e in items:
                key = e["_id"].encode()
                put(key, dumps(e), db=db, overwrite=False)
                if index:
                    if "#parent" in e:
                        put(b"s" + e["#parent"].encode(), key, db=parents)
                    self.seq += 1
                    seq = self.seq.to_bytes(8, "big")
                    put(seq, key, db=by_seq, append=True)
                    put(key, seq, db=by_id)

    def read_each(self, ids: list[str]) -> list[dict]:
        db, begin = self.db, self.env.begin
        out = []
        for i in ids:
            with begin() as txn:
                out.append(loads(txn.get(i.encode(), db=db)))
        return out

    def read_many(self, ids: list[str]) -> list[dict]:
        db = self.db
        with self.env.begin() as txn:
            get = txn.get
            return [loads(get(i.encode(), db=db)) for i in ids]

    def scan_larger(self, x: int) -> list[str]:
        with self.env.begin(buffers=True) as txn:
            hits = []
            for raw in txn.cursor(db=self.db).iternext(keys=False):
                e = loads(raw)
                v = e.get("file_size")
                if type(v) in (int, float) and v > x:
                    hits.append(e["_id"])
            return hits

    def close(self) -> None:
        self.env.close()


def figures(scale: str) -> Iterator[dict]:
    """The core figures at every size of ``scale`` ("full" or "quick")."""
    indexed: dict[int, float] = {}
    idle: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="damas-bench-") as tmp:
        for n in SCALES[scale]:
            yield from _figures_at(n, Path(tmp), indexed, idle)
    sizes = SCALES[scale]
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        row = figure(
            AREA, f"indexed search, {large:,} vs {small:,} elements", large,
            ours_s=indexed[large], raw_s=indexed[small], goal=FLAT_GOAL,
        )  # fmt: skip
        yield row
        yield figure(
            AREA, f"changes(since=last), {large:,} vs {small:,} elements", large,
            ours_s=idle[large], raw_s=idle[small], goal=FLAT_GOAL,
        )  # fmt: skip


def _figures_at(
    n: int, tmp: Path, indexed: dict[int, float], idle: dict[int, float]
) -> Iterator[dict]:
    rng = random.Random(n)
    data = elements(n)
    roots, graph_elements, reached = trees(TREES)
    # Bulk create: best of CREATE_RUNS, each on fresh stores (the last ones are kept
    # for the other figures), alternating raw and ours so that neither pays for the
    # other's writeback. The raw same-work transaction writes what create stores.
    stamp = {"author": "damas", "time": elements_time()}
    stored = [e | stamp for e in data]
    raw_times, plain_times, our_times = [], [], []
    for run in range(CREATE_RUNS):
        raw = Raw(str(tmp / f"raw-{n}-{run}"))
        plain = Raw(str(tmp / f"plain-{n}-{run}"))
        tracker = damas_core.open(f"lmdb://{tmp}/ours-{n}-{run}")
        raw_times.append(once(lambda raw=raw: raw.put_all(stored)))
        plain_times.append(once(lambda plain=plain: plain.put_all(data, index=False)))
        our_times.append(once(lambda tracker=tracker: tracker.create(data)))
        plain.close()
        shutil.rmtree(tmp / f"plain-{n}-{run}")
        if run < CREATE_RUNS - 1:
            raw.close()
            tracker.close()
            shutil.rmtree(tmp / f"raw-{n}-{run}")
            shutil.rmtree(tmp / f"ours-{n}-{run}")
    stored.clear()
    try:
        ours_s = min(our_times)
        yield figure(
            AREA, "bulk create (one call)", n, ours_s=ours_s, raw_s=min(raw_times), goal=2.0
        )
        yield figure(
            AREA, "bulk create vs puts of the input alone", n,
            ours_s=ours_s, raw_s=min(plain_times), goal=None,
        )  # fmt: skip
        raw.put_all(graph_elements)
        tracker.create(graph_elements)
        data.clear()  # free the memory before the read figures

        storage, last = tracker.storage, tracker.storage.last_seq()
        assert storage.changes(last, 1000) == (last, [])

        def polls() -> None:
            for _ in range(IDLE_POLLS):
                storage.changes(last, 1000)

        idle[n] = best(polls) / IDLE_POLLS
        yield figure(
            AREA, "changes(since=last), nothing new (per call, vs 50 µs)", n,
            ours_s=idle[n], raw_s=IDLE_BUDGET_S, goal=1.0,
        )  # fmt: skip

        ids = [f"/project/shots/s{i // 10:06d}/take{i % 10}.exr" for i in range(n)]
        one = rng.sample(ids, min(READ_ONE, n))
        raw_s = best(lambda: raw.read_each(one))
        ours_s = best(lambda: [tracker.read(i) for i in one])
        yield figure(AREA, "read one id (per call)", len(one), ours_s=ours_s, raw_s=raw_s, goal=3.0)

        batches = [rng.sample(ids, 1000) for _ in range(READ_BATCHES)]
        raw_s = best(lambda: [raw.read_many(b) for b in batches])
        ours_s = best(lambda: [tracker.read(b) for b in batches])
        yield figure(AREA, "read 1000 ids (one call)", 1000, ours_s=ours_s, raw_s=raw_s, goal=1.5)

        parents = [f"/project/shots/s{p:06d}" for p in rng.sample(range(n // 10), SEARCHES)]
        children = {p: [f"{p}/take{t}.exr" for t in range(10)] for p in parents}
        queries = [f'#parent:"{p}"' for p in parents]
        assert tracker.search(queries[0]) == children[parents[0]]
        raw_s = best(lambda: [raw.read_many(children[p]) for p in parents])
        ours_s = best(lambda: [tracker.search(q) for q in queries])
        indexed[n] = ours_s
        yield figure(
            AREA, "indexed search #parent (10 hits)", n, ours_s=ours_s, raw_s=raw_s, goal=25.0
        )

        x = 1000 + n - n // 100  # the last 1% of the elements
        assert tracker.search(f"file_size>{x}") == raw.scan_larger(x)
        raw_s = best(lambda: raw.scan_larger(x))
        ours_s = best(lambda: tracker.search(f"file_size>{x}"))
        yield figure(AREA, "full-scan search file_size>X", n, ours_s=ours_s, raw_s=raw_s, goal=2.0)

        assert len(tracker.graph(roots[0], depth=3)) == len(reached[roots[0]])
        raw_s = best(lambda: [raw.read_many(reached[r]) for r in roots])
        ours_s = best(lambda: [tracker.graph(r, depth=3) for r in roots])
        yield figure(AREA, "graph depth 3 (79 elements)", n, ours_s=ours_s, raw_s=raw_s, goal=3.0)
    finally:
        tracker.close()
        raw.close()


if __name__ == "__main__":
    print_table(list(figures("quick" if "--quick" in sys.argv else "full")))
