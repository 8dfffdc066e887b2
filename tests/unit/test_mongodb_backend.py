"""What is particular to the MongoDB backend, on mongomock (and on a real server with
DAMAS_TEST_MONGODB_URL): string ids, indexes, the undo log, regexes on RE2, the feed's
reservations. The storage contract itself is checked on every backend by
tests/conformance/test_storage.py."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from damas_core.backends.base import Patch, now_ms
from damas_core.backends.mongodb import MongoStorage, regex_superset

from damas_core.errors import NotImplementedByBackend, StorageError
from damas_core.query.ast import All, And, Eq, Not, Or, Regex

URLS = ["mongomock:///t?collection=node"]
if os.environ.get("DAMAS_TEST_MONGODB_URL"):
    URLS.append(os.environ["DAMAS_TEST_MONGODB_URL"].rstrip("/") + "/damas_unit")


@pytest.fixture(params=URLS, ids=lambda u: u.split(":", 1)[0])
def store(request):
    # A fresh collection per test, on a named server that outlives one open.
    url = request.param.replace("collection=node", "") + ("&" if "?" in request.param else "?")
    s = MongoStorage(f"{url}collection=c{uuid.uuid4().hex[:8]}")
    yield s
    s._collection.drop()
    s.close()


def test_string_ids_never_object_ids(store):
    store.insert_many([{"_id": "/a", "n": 1}, {"_id": "@bob"}])
    raw = list(store._collection.find({}))
    assert {type(d["_id"]) for d in raw} == {str}
    assert store.get("/a") == {"_id": "/a", "n": 1}


def test_indexes_created_at_open_and_on_demand(tmp_path):
    s = MongoStorage("mongomock://", indexes=["file_size"])
    keys = {tuple(v["key"]) for v in s._collection.index_information().values()}
    assert {(("#parent", 1),), (("src_id", 1),), (("tgt_id", 1),), (("file_size", 1),)} <= keys
    s.ensure_index("time")
    keys = {tuple(v["key"]) for v in s._collection.index_information().values()}
    assert (("time", 1),) in keys


def test_bare_mockmock_url_is_private_a_named_one_is_shared():
    a, b = MongoStorage("mongomock://"), MongoStorage("mongomock://")
    a.insert_many([{"_id": "/a"}])
    assert b.get("/a") is None
    name = f"mongomock://srv{uuid.uuid4().hex[:6]}/db"
    c, d = MongoStorage(name), MongoStorage(name)
    c.insert_many([{"_id": "/a"}])
    assert d.get("/a") == {"_id": "/a"}


def test_dotted_or_dollar_keys_are_refused_before_writing(store):
    with pytest.raises(NotImplementedByBackend, match=r"a\.b"):
        store.insert_many([{"_id": "/ok"}, {"_id": "/a", "a.b": 1}])
    assert store.get("/ok") is None
    store.insert_many([{"_id": "/a"}])
    with pytest.raises(NotImplementedByBackend, match=r"\$x"):
        store.patch_many([Patch("/a", set={"$x": 1})])


def test_undo_log_restores_every_touched_element(store):
    store.insert_many([{"_id": "/a", "n": 1}, {"_id": "/b", "n": 2}])
    with pytest.raises(RuntimeError), store.transaction():
        store.insert_many([{"_id": "/c"}])
        store.patch_many([Patch("/a", set={"n": 10}), Patch("/a", set={"n": 11})])
        store.delete_many(["/b"])
        with store.transaction():  # nested: joins the outer block
            store.insert_many([{"_id": "/d"}])
        raise RuntimeError("boom")
    assert list(store.scan()) == [{"_id": "/a", "n": 1}, {"_id": "/b", "n": 2}]


def test_a_failing_primitive_undoes_its_own_partial_work(store, monkeypatch):
    store.insert_many([{"_id": "/a", "n": 1}, {"_id": "/b", "n": 1}])
    calls = []
    real = store._collection.find_one_and_update

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionError("server went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(store._collection, "find_one_and_update", flaky)
    with pytest.raises(StorageError, match="server went away"):
        store.patch_many([Patch("/a", set={"n": 2}), Patch("/b", set={"n": 2})])
    monkeypatch.undo()
    assert [e["n"] for e in store.scan()] == [1, 1]


def test_arrays_and_objects_on_a_sort_key_sort_as_everywhere(store):
    # MongoDB sorts [1, 9] as 1; the common order puts arrays after objects.
    store.insert_many(
        [{"_id": "/a", "v": [1, 9]}, {"_id": "/b", "v": 5}, {"_id": "/c", "v": {"x": 1}}]
    )
    assert store.find(All(), sort=(("v", 1),)) == ["/b", "/c", "/a"]
    assert store.find(All(), sort=(("v", -1),), limit=1) == ["/a"]


def test_regexes_run_on_re2_not_on_the_server(store):
    store.insert_many([{"_id": "/x", "name": "a" * 30_000 + "!"}, {"_id": "/y", "name": "aa"}])
    assert store.find(Regex(("name",), "(a+)+$")) == ["/y"]
    assert store.find(Not(Regex(("name",), "^A", "i"))) == []
    assert store.count(And((Regex(("name",), "a$"), Eq(("_id",), "/y")))) == 1


def test_regex_superset():
    q = Or((Regex(("a",), "x"), Not(And((Regex(("b",), "y"), Eq(("c",), 1))))))
    assert regex_superset(q) == Or((All(), Not(And((Not(All()), Eq(("c",), 1))))))


def test_unreachable_server_is_a_quick_storage_error_naming_it():
    start = time.monotonic()
    with pytest.raises(StorageError, match=r"127\.0\.0\.1:1") as info:
        MongoStorage("mongodb://127.0.0.1:1/x", timeout_ms=300)
    assert time.monotonic() - start < 30  # bounded, not a timing claim
    assert info.value.__cause__ is not None


def test_mongomock_has_no_transactions_and_says_so():
    s = MongoStorage("mongomock://")
    assert s.atomic is False


def _writer_in_flight(store) -> int:
    """Reserve the next seq as a writer does, and stop there (not yet written)."""
    state = store._state
    value = state.find_one({"_id": "seq"})["value"]
    token = {"first": value + 1, "last": value + 1, "t": now_ms()}
    state.update_one({"_id": "seq"}, {"$set": {"value": value + 1}, "$push": {"pending": token}})
    return value + 1


def test_a_reader_stops_below_a_write_not_yet_visible():
    url = f"mongomock://feed-{uuid.uuid4().hex}/db"
    writer, reader = MongoStorage(url), MongoStorage(url)
    writer.insert_many([{"_id": "/a"}])
    slow = _writer_in_flight(writer)
    writer.insert_many([{"_id": "/b"}])  # a later seq, visible first
    assert reader.changes(0, 10) == (1, [(1, "/a", False)])
    assert reader.last_seq() == 1
    # The slow writer ends: its entry is written, its reservation released.
    writer._changes_coll.insert_one({"_id": "/slow", "seq": slow, "deleted": False, "time": 0})
    writer._state.update_one({"_id": "seq"}, {"$pull": {"pending": {"first": slow}}})
    assert [i for _, i, _ in reader.changes(1, 10)[1]] == ["/slow", "/b"]


def test_a_reservation_older_than_the_grace_period_is_dropped():
    url = f"mongomock://feed-{uuid.uuid4().hex}/db"
    writer = MongoStorage(url)
    reader = MongoStorage(url, feed_grace_ms=50)
    writer.insert_many([{"_id": "/a"}])
    _writer_in_flight(writer)  # a writer that died there
    writer.insert_many([{"_id": "/b"}])
    assert reader.last_seq() == 1
    time.sleep(0.1)
    assert reader.changes(0, 10) == (3, [(1, "/a", False), (3, "/b", False)])
    assert writer._state.find_one({"_id": "seq"})["pending"] == []
