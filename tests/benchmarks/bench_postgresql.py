"""PostgreSQL backend against raw psycopg doing the same work in the same run, on a
server started for the run (:mod:`tests.postgres_server`; ``DAMAS_TEST_POSTGRES_URL``
to use another).

- ``bulk create``: ``insert_many`` of N elements in one call against psycopg writing
  the same rows (JSON text and jsonb, one ``unnest`` insert per 5000) into tables of
  the same shape and indexes, plus the feed rows and the counter (goal ≤ 2×);
- ``read 1000 ids``: ``get_many`` against ``SELECT … WHERE id = ANY(%s)`` and
  ``orjson.loads`` of each (goal ≤ 2×);
- ``indexed search``: ``tracker.search("#parent:X")`` (10 hits) against a jsonb
  containment query ``doc @> %s`` on the same GIN index (goal ≤ 2×);
- ``_id prefix page``: ``find`` of an ``_id`` prefix, 100 ids, against the primary-key
  range ``id >= %s AND id < %s LIMIT 100`` (goal ≤ 2×);
- ``cross-instance wake``: the median time from a write in another process to a
  waiter here being woken (NOTIFY), against the 10 ms goal (goal ≤ 1×: ratio is the
  median over 10 ms).

Run on its own: ``python -m tests.benchmarks.bench_postgresql [--quick]``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import orjson
from damas_core.backends.postgresql import _SCHEMA, PostgreSQLStorage, connection_info

import damas_core
from damas_core.query.parser import parse
from tests import postgres_server
from tests.benchmarks.bench_sqlite import elements
from tests.benchmarks.harness import best, figure, once, print_table

SCALES = {"full": 200_000, "quick": 20_000}
WAKES = {"full": 50, "quick": 10}
SEARCHES = 200

WRITER = """
import sys, time
from damas_core.registry import open_storage
store = open_storage(sys.argv[1])
for n, line in enumerate(sys.stdin):
    t0 = time.time()
    store.insert_many([{"_id": f"/wake/{n}"}])
    print(t0, flush=True)
store.close()
"""


def raw_connection(url: str):
    import psycopg

    conninfo, own = connection_info(url)
    conn = psycopg.connect(conninfo, autocommit=True)
    schema = own["schema"]
    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    conn.execute(f'SET search_path TO "{schema}"')
    for statement in _SCHEMA:
        conn.execute(statement)
    return conn


def raw_insert(conn, docs: list[dict]) -> None:
    with conn.transaction():
        for i in range(0, len(docs), 5000):
            part = docs[i : i + 5000]
            ids = [d["_id"] for d in part]
            raws = [orjson.dumps(d).decode() for d in part]
            conn.execute(
                "INSERT INTO elements (id, raw, doc) SELECT i, r, r::jsonb"
                " FROM unnest(%s::text[], %s::text[]) AS t(i, r)",
                (ids, raws),
            )
        (top,) = conn.execute(
            "UPDATE feed_state SET value = value + %s WHERE key = 'seq' RETURNING value",
            (len(docs),),
        ).fetchone()
        first = top - len(docs) + 1
        for i in range(0, len(docs), 20000):
            part = docs[i : i + 20000]
            conn.execute(
                "INSERT INTO changes (seq, id, deleted, time) SELECT s, i, false, 0"
                " FROM unnest(%s::bigint[], %s::text[]) AS t(s, i)",
                (list(range(first + i, first + i + len(part))), [d["_id"] for d in part]),
            )


def best_pair(ours, raw, repeat: int) -> tuple[float, float]:
    """The best times of ``ours`` and ``raw``, run in turns: a burst of load from
    another process falls on both sides rather than on one side's runs only."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, found in zip((ours, raw), times, strict=True):
            found.append(best(fn, 1))
    return min(times[0]), min(times[1])


def fresh_url(base: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}schema=b{uuid.uuid4().hex[:12]}"


def bulk_create(base: str, n: int) -> dict:
    docs = elements(n)
    times: dict[str, list[float]] = {"ours": [], "raw": []}
    for _ in range(2):
        store = PostgreSQLStorage(fresh_url(base))
        times["ours"].append(once(lambda store=store: store.insert_many(docs)))
        store.close()
        conn = raw_connection(fresh_url(base))
        times["raw"].append(once(lambda conn=conn: raw_insert(conn, docs)))
        conn.close()
    return figure(
        "postgresql", "bulk create", n, ours_s=min(times["ours"]), raw_s=min(times["raw"]), goal=2
    )


def reads(base: str, n: int) -> Iterator[dict]:
    docs = elements(n)
    url = fresh_url(base)
    store = PostgreSQLStorage(url)
    store.insert_many(docs)
    conn = raw_connection(url)
    # As autovacuum does soon after a load: statistics, and the GIN index's pending
    # list merged (until then every search reads that list through).
    conn.execute("VACUUM ANALYZE elements")
    ids = [docs[i]["_id"] for i in range(0, n, max(1, n // 1000))][:1000]

    def raw_read() -> None:
        rows = conn.execute("SELECT id, raw FROM elements WHERE id = ANY(%s)", (ids,)).fetchall()
        found = {i: orjson.loads(r) for i, r in rows}
        [found.get(i) for i in ids]

    assert store.get_many(ids)[0] == docs[0]
    yield figure(
        "postgresql",
        "read 1000 ids",
        n,
        ours_s=best(lambda: store.get_many(ids), 5),
        raw_s=best(raw_read, 5),
        goal=2,
    )

    parents = [f"/project/shots/s{p:06d}" for p in range(0, n // 10, max(1, n // 10 // SEARCHES))]
    with damas_core.open(url) as tracker:
        assert len(tracker.search(f"#parent:{parents[0]}")) == 10

        def ours_search() -> None:
            for p in parents:
                tracker.search(f"#parent:{p}")

        def raw_search() -> None:
            for p in parents:
                conn.execute(
                    "SELECT id FROM elements WHERE doc @> %s::jsonb ORDER BY id",
                    (orjson.dumps({"#parent": p}).decode(),),
                ).fetchall()

        yield figure(
            "postgresql",
            "indexed search (10 hits)",
            n,
            ours_s=best(ours_search, 3),
            raw_s=best(raw_search, 3),
            goal=2,
        )

    prefix = "/project/shots/s0001"
    query = parse(r"_id:/^\/project\/shots\/s0001/")
    assert len(store.find(query, limit=100)) == 100

    def raw_page() -> None:
        conn.execute(
            "SELECT id FROM elements WHERE id >= %s AND id < %s ORDER BY id LIMIT 100",
            (prefix, prefix[:-1] + "2"),
        ).fetchall()

    # Short batches, many turns: the least disturbed batch of each side.
    ours_s, raw_s = best_pair(
        lambda: [store.find(query, limit=100) for _ in range(5)],
        lambda: [raw_page() for _ in range(5)],
        40,
    )
    yield figure(
        "postgresql", "_id prefix page (100)", n, ours_s=ours_s / 5, raw_s=raw_s / 5, goal=2
    )
    conn.close()
    store.close()


def wake(base: str, trials: int) -> dict:
    url = fresh_url(base)
    latencies = []
    with damas_core.open(url) as tracker:
        tracker.create({"_id": "/a"})
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            for _ in range(trials):
                mark = tracker.feed.wait(0, 0)
                writer.stdin.write("go\n")
                writer.stdin.flush()
                tracker.feed.wait(mark, 5)
                woken = time.time()
                latencies.append(woken - float(writer.stdout.readline()))
        finally:
            writer.stdin.close()
            writer.wait(30)
    median = statistics.median(latencies)
    return figure(
        "postgresql", "cross-instance wake (median)", trials, ours_s=median, raw_s=0.010, goal=1
    )


def figures(scale: str) -> Iterator[dict]:
    """The PostgreSQL figures at ``scale`` (``"full"``: 200k elements, ``"quick"``: 20k)."""
    base = postgres_server.base_store_url()
    if base is None:
        raise RuntimeError(postgres_server.why_not())
    n = SCALES[scale]
    yield wake(base, WAKES[scale])
    yield from reads(base, n)
    yield bulk_create(base, n)


if __name__ == "__main__":
    print_table(list(figures("quick" if "--quick" in sys.argv else "full")))
