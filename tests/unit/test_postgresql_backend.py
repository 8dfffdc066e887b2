"""What only the PostgreSQL backend has: URLs, a server restart under a store, and
wake-ups through LISTEN/NOTIFY. The conformance, property, process and crash suites
run on it too (``postgresql`` in ``tests/conftest.py``)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import damas_core
from damas_core.errors import BadRequest, NotImplementedByBackend, StorageError
from damas_core.query.ast import And, Cmp, Not
from damas_core.query.parser import parse as parse_query
from tests import postgres_server

psycopg = pytest.importorskip("psycopg", reason="the postgresql extra is not installed")
from damas_core.backends.postgresql import PostgreSQLStorage, connection_info  # noqa: E402

WRITER = """
import sys, time
from damas_core.registry import open_storage
time.sleep(float(sys.argv[2]))
store = open_storage(sys.argv[1])
store.insert_many([{"_id": "/from-another-process"}])
store.close()
"""


@pytest.fixture(scope="module")
def server():
    """A server of this module's own: these tests stop it and cut its connections."""
    bin_dir = postgres_server.server_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb) here: run scripts/system-deps.sh")
    s = postgres_server.Server(bin_dir)
    yield s
    s.remove()


def test_urls_and_options():
    assert connection_info("postgres://u:p@h:1/d?schema=s&sslmode=disable") == (
        "postgresql://u:p@h:1/d?sslmode=disable",
        {"schema": "s"},
    )
    with pytest.raises(BadRequest, match="schema must be a lower-case SQL name"):
        PostgreSQLStorage("postgresql://u@127.0.0.1:1/d?schema=a;drop")
    with pytest.raises(BadRequest, match="looks like 'postgresql://"):
        connection_info("mysql://u@h/d")


def test_an_unreachable_server_is_a_storage_error():
    with pytest.raises(StorageError, match="PostgreSQLStorage open failed"):
        damas_core.open("postgresql://u@127.0.0.1:1/d?connect_timeout=2")


def test_the_registry_names_the_extra(monkeypatch):
    from damas_core.registry import storage_class

    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "damas_core.backends.postgresql", raising=False)
    with pytest.raises(NotImplementedByBackend, match=r"damas-core\[postgresql\]"):
        storage_class("postgres://u@h/d")


def test_a_server_restart_is_a_storage_error_then_the_store_connects_again(server):
    store = PostgreSQLStorage(server.url())
    try:
        store.insert_many([{"_id": "/a"}, {"_id": "/b"}])
        store.delete_many(["/a"])
        before = store.changes(0, 10)
        server.restart()
        with pytest.raises(StorageError) as info:
            store.get_many(["/b"])
        assert isinstance(info.value.__cause__, psycopg.OperationalError)
        assert store.get_many(["/b"]) == [{"_id": "/b"}]
        assert store.changes(0, 10) == before
        assert store.insert_many([{"_id": "/c"}]) == [True]
        assert store.changes(before[0], 10) == (before[0] + 1, [(before[0] + 1, "/c", False)])
    finally:
        store.close()


def _listeners(server) -> list[int]:
    with psycopg.connect(server.base_url(), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%%'"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return [r[0] for r in rows]


def _listening(server) -> list[int]:
    """The listening connections, once there is one (within 10 s)."""
    deadline = time.monotonic() + 10
    while not (found := _listeners(server)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _cut(server, pids: list[int]) -> list[int]:
    """End the server processes ``pids`` (their clients see the connection drop)."""
    with psycopg.connect(server.base_url(), autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    return pids


def _woken_by_another_process(tracker, url) -> list:
    """The changes a wait was woken for by another process's write. The feed polls
    once an hour here: without a notification the wait ends at its timeout, having
    seen no new position, and nothing is returned."""
    mark = tracker.changes()["last_seq"]
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url, "0.3"])
    try:
        seen = tracker.feed.wait(mark, 20)
    finally:
        assert writer.wait(30) == 0
    return tracker.changes(since=mark)["changes"] if seen > mark else []


def test_a_write_in_another_process_wakes_a_waiter_through_notify(server):
    url = server.url()
    with damas_core.open(url) as tracker:
        tracker.feed.poll_interval = 3600
        tracker.create({"_id": "/a"})
        changes = _woken_by_another_process(tracker, url)
        assert [c["_id"] for c in changes] == ["/from-another-process"]


def test_the_listening_connection_comes_back_after_it_drops(server):
    url = server.url()
    with damas_core.open(url) as tracker:
        tracker.feed.poll_interval = 3600
        tracker.create({"_id": "/a"})
        dropped = _cut(server, _listening(server))
        deadline = time.monotonic() + 10
        while not (set(_listeners(server)) - set(dropped)) and time.monotonic() < deadline:
            time.sleep(0.05)
        changes = _woken_by_another_process(tracker, url)
        assert [c["_id"] for c in changes] == ["/from-another-process"]


def test_a_write_while_nobody_listened_is_heard_when_listening_again(server):
    """A waiter waits; the listening connection is cut and a write lands before it is
    back (it connects again after a second), its NOTIFY heard by nobody: the new
    LISTEN wakes the waiter, which finds the write, instead of sleeping until the next
    poll (an hour here)."""
    url = server.url()
    with damas_core.open(url) as tracker:
        tracker.feed.poll_interval = 3600
        tracker.create({"_id": "/a"})
        listening = _listening(server)
        mark = tracker.changes()["last_seq"]
        with ThreadPoolExecutor(1) as pool:
            seen = pool.submit(tracker.feed.wait, mark, 20)
            time.sleep(0.3)  # the waiter is waiting
            _cut(server, listening)
            # another store of this process: its NOTIFY is this process's own, which
            # the listener skips; only the new LISTEN can wake the waiter
            store = PostgreSQLStorage(url)
            try:
                store.insert_many([{"_id": "/while-nobody-listened"}])
            finally:
                store.close()
            assert seen.result(30) > mark
        changes = tracker.changes(since=mark)["changes"]
        assert [c["_id"] for c in changes] == ["/while-nobody-listened"]


def test_elements_read_back_exactly_nul_and_key_order_included(server):
    store = PostgreSQLStorage(server.url())
    try:
        element = {"_id": "/a", "zz": 1, "a": "x\x00y", "m": {"b": 1, "a": [None, "\x00"]}}
        store.insert_many([element])
        got = store.get("/a")
        assert got == element and list(got) == list(element)
        assert list(got["m"]) == ["b", "a"]
        from damas_core.query.parser import parse

        # A lossy row is checked in Python: exact answers, paging included.
        store.insert_many([{"_id": "/b", "a": "x\ufffdy"}, {"_id": "/c", "a": "x\x00y"}])
        assert store.find(parse('a:"x\ufffdy"')) == ["/b"]
        assert store.find(parse("a:/^x.y$/"), limit=1, skip=1) == ["/b"]
        assert store.count(parse("a:*")) == 3
    finally:
        store.close()


def test_a_reader_never_passes_a_number_that_commits_later(server):
    """Writer A writes first and commits last; writer B commits in between. A reader
    that read B's change and went on from there still gets A's: numbers are taken at
    commit, in commit order (a SEQUENCE taken at the write would give A the lower
    number, below the reader's position)."""
    url = server.url()
    a, b, reader = (PostgreSQLStorage(url) for _ in range(3))
    try:
        mark = reader.last_seq()
        inside, go = threading.Event(), threading.Event()

        def slow_writer() -> None:
            with a.transaction():
                a.insert_many([{"_id": "/a"}])
                inside.set()
                go.wait(10)

        thread = threading.Thread(target=slow_writer)
        thread.start()
        assert inside.wait(10)
        b.insert_many([{"_id": "/b"}])
        position, first = reader.changes(mark, 10)
        assert [i for _, i, _ in first] == ["/b"]
        go.set()
        thread.join(10)
        assert [i for _, i, _ in reader.changes(position, 10)[1]] == ["/a"]
    finally:
        for s in (a, b, reader):
            s.close()


def test_bulk_inserts_of_the_same_ids_in_opposite_orders_do_not_deadlock(server):
    url = server.url()
    stores = [PostgreSQLStorage(url) for _ in range(2)]
    ids = [f"/r/{n:04d}" for n in range(2000)]
    results: list[list[bool] | BaseException] = [[], []]

    def insert(k: int) -> None:
        order = ids if k == 0 else ids[::-1]
        try:
            results[k] = stores[k].insert_many([{"_id": i, "by": k} for i in order])
        except BaseException as e:  # a deadlock is a StorageError in one of them
            results[k] = e

    try:
        threads = [threading.Thread(target=insert, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        first, second = results
        assert isinstance(first, list) and isinstance(second, list), results
        # Every id stored once, by exactly one of the two calls.
        assert all(a != b for a, b in zip(first, second[::-1], strict=True))
        assert stores[0].count(parse_query("_id:*")) == len(ids)
    finally:
        for s in stores:
            s.close()


def test_equality_and_id_prefixes_are_answered_by_indexes(server):
    store = PostgreSQLStorage(server.url())
    try:
        store.insert_many(
            [
                {"_id": f"/{d}/{k:04d}", "#parent": f"/{d}/{k // 10}"}
                for d in "abc"
                for k in range(1000)
            ]
        )
        store._connection().execute("VACUUM ANALYZE elements")
        plan = " | ".join(store.query_plan(parse_query("#parent:/b/7")))
        assert "Bitmap Index Scan on elements_doc" in plan, plan
        assert len(store.find(parse_query("#parent:/b/7"))) == 10
        prefix = parse_query(r"_id:/^\/b\/01/")
        plan = " | ".join(store.query_plan(prefix, limit=100))
        assert "elements_pkey" in plan and "Seq Scan" not in plan, plan
        assert store.find(prefix, limit=3) == ["/b/0100", "/b/0101", "/b/0102"]
    finally:
        store.close()


def test_a_bulk_insert_larger_than_one_statement_stores_everything(server):
    store = PostgreSQLStorage(server.url())
    try:
        ids = [f"/bulk/{n:05d}" for n in range(12_001)][::-1]  # 3 statements, not in order
        assert store.insert_many([{"_id": i} for i in ids]) == [True] * len(ids)
        assert store.count(parse_query("_id:*")) == len(ids)
        last, changes = store.changes(0, 20_000)
        assert last == len(ids) and [i for _, i, _ in changes] == ids  # the call's order
    finally:
        store.close()


def test_threads_of_one_store_do_not_wait_for_each_others_transactions(server):
    store = PostgreSQLStorage(server.url())
    try:
        store.insert_many([{"_id": "/a"}])
        inside, go = threading.Event(), threading.Event()

        def writer() -> None:
            with store.transaction():
                store.insert_many([{"_id": "/b"}])
                inside.set()
                go.wait(10)

        thread = threading.Thread(target=writer)
        thread.start()
        assert inside.wait(10)
        # Another thread reads at once, on its own connection, without the uncommitted /b.
        assert store.get_many(["/a", "/b"]) == [{"_id": "/a"}, None]
        go.set()
        thread.join(10)
        assert store.get("/b") == {"_id": "/b"}
    finally:
        store.close()
    with pytest.raises(StorageError):
        store.get("/a")


def test_queries_equal_in_python_but_not_in_json_are_not_confused(server):
    store = PostgreSQLStorage(server.url())
    try:
        store.insert_many([{"_id": "/one", "a": 1}, {"_id": "/true", "a": True}])
        assert store.find(parse_query("a:1")) == ["/one"]
        assert store.find(parse_query("a:true")) == ["/true"]
        assert store.find(parse_query("a:1")) == ["/one"]
    finally:
        store.close()


def test_ranges_on_declared_keys_are_answered_by_expression_indexes(server):
    store = PostgreSQLStorage(server.url(), schema="declared", indexes="n,name")
    try:
        store.insert_many(
            [{"_id": f"/e/{k:05d}", "n": k, "name": f"x{k:05d}"} for k in range(3000)]
            + [{"_id": "/e/list", "n": [1, 2999.5]}, {"_id": "/e/text", "n": "2999.5"}]
        )
        store._connection().execute("VACUUM ANALYZE elements")
        plan = " | ".join(store.query_plan(parse_query("n>2998")))
        assert "elements_k" in plan and "Seq Scan" not in plan, plan
        # Typed as the predicate: numbers only, an array's members included.
        assert store.find(parse_query("n>2998")) == ["/e/02999", "/e/list"]
        plan = " | ".join(store.query_plan(parse_query("name>=x02998")))
        assert "elements_k" in plan and "Seq Scan" not in plan, plan
        assert store.find(parse_query("name>=x02998")) == ["/e/02998", "/e/02999"]
        # An ascending sort on a declared key walks its index (no sort of every match).
        plan = " | ".join(store.query_plan(parse_query("_id:*"), [("name", 1)], limit=3))
        assert "elements_k" in plan and "Sort" not in plan, plan
        assert store.find(parse_query("_id:*"), [("name", 1)], limit=3) == [
            "/e/list",  # no name: first
            "/e/text",
            "/e/00000",
        ]
        assert store.find(parse_query("_id:*"), [("n", -1)], limit=3) == [
            "/e/list",  # an array: sorted in Python, after the strings
            "/e/text",
            "/e/02999",
        ]
        # A key declared later, with a quote in it: a literal, not SQL; a negated
        # range goes through the path test.
        store.ensure_index("o'k")
        store.insert_many([{"_id": "/e/m", "o'k": 3}, {"_id": "/e/o", "o'k": "3"}])
        store._connection().execute("ANALYZE elements")
        ranges = And((Cmp(("o'k",), ">", 2), Not(Cmp(("o'k",), "<", 1))))
        assert store.find(ranges) == ["/e/m"]
        assert "elements_k" in " | ".join(store.query_plan(Cmp(("o'k",), ">", 2)))
    finally:
        store._connection().execute("DROP SCHEMA declared CASCADE")
        store.close()
