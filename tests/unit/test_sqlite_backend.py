"""What is particular to the SQLite backend, on real database files: JSON text round
trips, the side-table index (checked with EXPLAIN QUERY PLAN), the feed table, several
threads and processes. The storage contract itself is checked on every backend by
tests/conformance/test_storage.py."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest
from damas_core.backends.base import Patch
from damas_core.backends.sqlite import SQLiteStorage, database_path, index_rows

from damas_core.errors import BadRequest, StorageError
from damas_core.query.ast import All, Eq, In
from damas_core.registry import open_storage


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path}/store.db"


@pytest.fixture
def store(url: str):
    s = SQLiteStorage(url)
    yield s
    s.close()


def rows(store: SQLiteStorage, sql: str, params=()) -> list[tuple]:
    return store._conn.execute(sql, params).fetchall()


# -- URLs and opening --------------------------------------------------------------------


def test_urls_name_absolute_relative_and_memory_databases(tmp_path, monkeypatch) -> None:
    assert database_path("sqlite:///srv/x.db") == ("/srv/x.db", {})
    assert database_path("sqlite://rel/x.db?timeout=2") == ("rel/x.db", {"timeout": "2"})
    assert database_path("sqlite://:memory:") == (":memory:", {})
    assert database_path("sqlite:///a%20b.db") == ("/a b.db", {})
    monkeypatch.chdir(tmp_path)
    with open_storage("sqlite://sub/dir/rel.db") as s:
        s.insert_many([{"_id": "/a"}])
    assert (tmp_path / "sub" / "dir" / "rel.db").is_file()
    with open_storage("sqlite://:memory:") as s:
        assert s.insert_many([{"_id": "/a"}]) == [True]
        assert s.get("/a") == {"_id": "/a"}


def test_options_in_the_query_string(tmp_path) -> None:
    with SQLiteStorage(f"sqlite://{tmp_path}/q.db?indexes=type,origin&timeout=2") as s:
        assert s.indexes == ("#parent", "src_id", "tgt_id", "type", "origin")
        assert rows(s, "PRAGMA busy_timeout") == [(2000,)]
        assert (tmp_path / "q.db").is_file()
    with SQLiteStorage(f"sqlite://{tmp_path}/q.db?timeout=2", timeout=3) as s:
        assert rows(s, "PRAGMA busy_timeout") == [(3000,)]


def test_bad_options_are_refused(tmp_path) -> None:
    with pytest.raises(BadRequest, match="timeout"):
        SQLiteStorage(f"sqlite://{tmp_path}/x.db", timeout="soon")


def test_a_file_that_is_not_a_database_is_a_storage_error(tmp_path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError):
        SQLiteStorage(f"sqlite://{bad}")


def test_wal_mode_and_busy_timeout(store) -> None:
    assert rows(store, "PRAGMA journal_mode") == [("wal",)]
    assert rows(store, "PRAGMA busy_timeout") == [(10000,)]


# -- round trips and primitives --------------------------------------------------------


def test_round_trip_keeps_every_json_type(store) -> None:
    e = {
        "_id": "/ü/ß.exr",
        "#parent": "/ü",
        "n": 1,
        "f": 1.5,
        "big": 2**62,
        "t": True,
        "z": None,
        "s": "'); DROP TABLE elements; --",
        "nested": {"a": [1, {"b": "c"}], "e": {}},
        'q"k': "\u0000\n",
    }
    assert store.insert_many([e]) == [True]
    got = store.get("/ü/ß.exr")
    assert got == e and list(got) == list(e)
    got["n"] = 2
    assert store.get("/ü/ß.exr")["n"] == 1


def test_bad_element_changes_nothing(store) -> None:
    with pytest.raises((StorageError, BadRequest)):
        store.insert_many([{"_id": "/ok"}, {"_id": "/bad", "v": {1, 2}}])
    with pytest.raises(BadRequest):
        store.insert_many([{"_id": "/ok"}, {"_id": ""}])
    assert store.count(All()) == 0
    assert rows(store, "SELECT count(*) FROM element_index") == [(0,)]


def test_delete_reports_each_id_once(store) -> None:
    store.insert_many([{"_id": "/a", "#parent": "/"}, {"_id": "/b"}])
    assert store.delete_many(["/a", "/a", "/x", "/b"]) == [True, False, False, True]
    assert store.count(All()) == 0
    assert rows(store, "SELECT count(*) FROM element_index") == [(0,)]


# -- transactions ----------------------------------------------------------------------


def test_a_transaction_commits_once_at_the_end(url) -> None:
    a, b = SQLiteStorage(url), SQLiteStorage(url)
    try:
        with a.transaction():
            a.insert_many([{"_id": "/x"}])
            with a.transaction():
                a.insert_many([{"_id": "/y"}])
            assert a.count(All()) == 2
            assert b.count(All()) == 0  # not committed yet
        assert b.find(All()) == ["/x", "/y"]
    finally:
        a.close()
        b.close()


def test_a_locked_database_after_the_timeout_is_a_storage_error(url) -> None:
    a, b = SQLiteStorage(url), SQLiteStorage(url, timeout=0.2)
    try:
        with a.transaction():
            a.insert_many([{"_id": "/a"}])
            with pytest.raises(StorageError, match="locked"):
                b.insert_many([{"_id": "/b"}])
            assert b.get("/a") is None  # WAL: readers do not wait
        assert b.insert_many([{"_id": "/b"}]) == [True]
    finally:
        a.close()
        b.close()


def test_reopen_keeps_elements_and_index(url) -> None:
    with SQLiteStorage(url) as s:
        s.insert_many([{"_id": "/a", "#parent": "/"}])
    with SQLiteStorage(url) as s:
        assert s.get("/a") == {"_id": "/a", "#parent": "/"}
        assert s.find(Eq(("#parent",), "/")) == ["/a"]


def test_using_a_closed_store_is_a_storage_error(url) -> None:
    s = SQLiteStorage(url)
    s.close()
    with pytest.raises(StorageError):
        s.get("/a")


# -- the index -------------------------------------------------------------------------


def test_indexed_equality_uses_the_index(store) -> None:
    store.insert_many([{"_id": f"/{i}", "#parent": f"/p{i % 10}"} for i in range(200)])
    plan = " | ".join(store.query_plan(Eq(("#parent",), "/p3")))
    assert "element_index USING PRIMARY KEY (key=? AND value=?)" in plan
    assert "elements USING PRIMARY KEY (id=?)" in plan
    assert "SCAN elements" not in plan
    assert len(store.find(Eq(("#parent",), "/p3"))) == 20
    # An unindexed key scans.
    assert any("SCAN elements" in line for line in store.query_plan(Eq(("type",), "x")))


def test_an_id_prefix_reads_a_range_of_the_primary_key(store) -> None:
    from damas_core.query.parser import parse

    store.insert_many([{"_id": f"/s{i % 3}/{i:03d}"} for i in range(60)] + [{"_id": "/s1"}])
    query = parse(r"_id:/^\/s1\//")
    plan = " | ".join(store.query_plan(query))
    assert "elements USING PRIMARY KEY (id>? AND id<?)" in plan
    assert "SCAN elements" not in plan
    assert store.find(query) == [f"/s1/{i:03d}" for i in range(1, 60, 3)]
    assert store.count(query) == 20
    assert [e["_id"] for e in store.find_elements(query, limit=2)] == ["/s1/001", "/s1/004"]
    # A prefix ending in the last code point: the bound moves to the character before.
    store.insert_many([{"_id": "/\U0010ffff/a"}, {"_id": "/\U0010ffff"}, {"_id": "0"}])
    assert store.find(parse("_id:/^\\/\U0010ffff/")) == ["/\U0010ffff", "/\U0010ffff/a"]


def test_index_holds_array_members_and_types(store) -> None:
    store.insert_many(
        [
            {"_id": "/a", "#parent": ["/x", "/y", 1]},
            {"_id": "/b", "#parent": True},
            {"_id": "/c", "#parent": 1.0},
            {"_id": "/d", "#parent": "1"},
            {"_id": "/e", "#parent": None},
            {"_id": "/f"},
        ]
    )
    assert store.find(Eq(("#parent",), "/y")) == ["/a"]
    assert store.find(Eq(("#parent",), 1)) == ["/a", "/c"]
    assert store.find(Eq(("#parent",), True)) == ["/b"]
    assert store.find(In(("#parent",), (1, "1"))) == ["/a", "/c", "/d"]
    assert store.find(Eq(("#parent",), None)) == ["/e", "/f"]  # not from the index


def test_index_follows_patches_and_deletes(store) -> None:
    store.insert_many([{"_id": "/a", "#parent": "/x"}])
    store.patch_many([Patch("/a", set={"#parent": ["/y", "/z"]})])
    assert store.find(Eq(("#parent",), "/x")) == []
    assert store.find(Eq(("#parent",), "/z")) == ["/a"]
    store.patch_many([Patch("/a", unset=("#parent",))])
    assert rows(store, "SELECT count(*) FROM element_index") == [(0,)]


def test_new_index_keys_are_filled_and_kept_by_every_opener(url) -> None:
    plain = SQLiteStorage(url)
    plain.insert_many([{"_id": "/a", "type": "shot"}, {"_id": "/b", "type": ["asset", "shot"]}])
    typed = SQLiteStorage(url, indexes=["type"])
    try:
        assert typed.find(Eq(("type",), "shot")) == ["/a", "/b"]
        assert "element_index" in " ".join(typed.query_plan(Eq(("type",), "shot")))
        # The store opened without the option still maintains the key.
        plain.insert_many([{"_id": "/c", "type": "shot"}])
        plain.patch_many([Patch("/a", set={"type": "asset"})])
        assert typed.find(Eq(("type",), "shot")) == ["/b", "/c"]
        plain.ensure_index("file_size")
        assert rows(plain, "SELECT key FROM indexed_keys ORDER BY key") == [
            ("#parent",),
            ("file_size",),
            ("src_id",),
            ("tgt_id",),
            ("type",),
        ]
    finally:
        plain.close()
        typed.close()


def test_large_writes_index_every_element(store) -> None:
    store.insert_many([{"_id": f"/{i:04d}", "#parent": f"/p{i % 7}"} for i in range(1000)])
    assert rows(store, "SELECT count(*) FROM element_index") == [(1000,)]
    store.patch_many([Patch(f"/{i:04d}", set={"#parent": "/q"}) for i in range(0, 1000, 2)])
    assert len(store.find(Eq(("#parent",), "/q"))) == 500
    assert store.find(Eq(("#parent",), "/p0")) == [
        f"/{i:04d}" for i in range(1, 1000, 2) if i % 7 == 0
    ]


def test_an_index_row_alone_never_makes_a_match(store) -> None:
    store.insert_many([{"_id": "/a", "#parent": "/x"}])
    store._conn.execute("INSERT INTO element_index VALUES ('#parent', '/other', '/a')")
    assert store.find(Eq(("#parent",), "/other")) == []


def test_index_rows_of_an_element() -> None:
    e = {"_id": "/a", "k": [1, True, None, {"x": 1}, [2], "s"], "n": None}
    assert index_rows(e, ["k", "n", "missing"]) == [
        ("k", 1, "/a"),
        ("k", b"t", "/a"),
        ("k", "s", "/a"),
    ]


# -- concurrency -------------------------------------------------------------------------


def _increment(url: str, worker: int, times: int) -> None:
    """Read-modify-write a counter and add one element per step, from another process."""
    store = SQLiteStorage(url, timeout=60)
    try:
        for i in range(times):
            with store.transaction():
                n = store.get("/counter")["n"]
                assert store.patch_many([Patch("/counter", set={"n": n + 1}, expect={"n": n})]) == [
                    True
                ]
                assert store.insert_many(
                    [{"_id": f"/w{worker}/{i}", "#parent": f"/w{worker}"}]
                ) == [True]
    finally:
        store.close()


def test_two_processes_writing_at_once_lose_nothing(url) -> None:
    with SQLiteStorage(url) as s:
        s.insert_many([{"_id": "/counter", "n": 0}])
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_increment, args=(url, w, 40)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    with SQLiteStorage(url) as s:
        assert s.get("/counter")["n"] == 80
        assert s.count(All()) == 81
        assert len(s.find(Eq(("#parent",), "/w1"))) == 40


def test_threads_sharing_a_store_lose_nothing(store) -> None:
    store.insert_many([{"_id": "/counter", "n": 0}])
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                with store.transaction():
                    n = store.get("/counter")["n"]
                    store.patch_many([Patch("/counter", set={"n": n + 1})])
                    store.insert_many([{"_id": f"/t{t}/{i}"}])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.get("/counter")["n"] == 100
    assert store.count(All()) == 101


def test_the_database_stays_readable_by_plain_sqlite3(url, store) -> None:
    store.insert_many([{"_id": "/a", "type": "shot"}])
    conn = sqlite3.connect(database_path(url)[0])
    try:
        assert conn.execute("SELECT json_extract(doc, '$.type') FROM elements").fetchall() == [
            ("shot",)
        ]
    finally:
        conn.close()


def test_the_feed_is_a_table_plain_sqlite3_reads(url) -> None:
    store = SQLiteStorage(url)
    store.insert_many([{"_id": "/a"}, {"_id": "/b"}])
    store.delete_many(["/a"])
    store.close()
    conn = sqlite3.connect(database_path(url)[0])
    assert conn.execute("SELECT seq, id, deleted FROM changes ORDER BY seq").fetchall() == [
        (2, "/b", 0),
        (3, "/a", 1),
    ]
    conn.close()


def test_a_store_made_before_the_feed_numbers_its_elements_once(url) -> None:
    store = SQLiteStorage(url)
    store.insert_many([{"_id": "/b"}, {"_id": "/a"}])
    store.close()
    conn = sqlite3.connect(database_path(url)[0])
    conn.execute("DROP TABLE changes")
    conn.commit()
    conn.close()
    again = SQLiteStorage(url)
    assert again.changes(0, 10) == (2, [(1, "/a", False), (2, "/b", False)])
    again.close()
    assert SQLiteStorage(url).last_seq() == 2
