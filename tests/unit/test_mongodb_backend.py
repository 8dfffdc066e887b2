"""The MongoDB backend on mongomock (and on a real server with DAMAS_TEST_MONGODB_URL)."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from damas_core.backends.base import Patch
from damas_core.backends.mongodb import MongoStorage, regex_superset

from damas_core.errors import NotImplementedByBackend, StorageError
from damas_core.ordering import MISSING
from damas_core.query.ast import All, And, Cmp, Eq, In, Not, Or, Regex

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


def test_insert_reports_duplicates_and_stores_copies(store):
    element = {"_id": "/a", "tags": ["x"]}
    assert store.insert_many([element, {"_id": "/a", "n": 2}, {"_id": "/b"}]) == [True, False, True]
    element["tags"].append("y")
    assert store.get("/a") == {"_id": "/a", "tags": ["x"]}
    assert store.insert_many([{"_id": "/b"}]) == [False]
    first, second = store.get_many(["/a", "/a"])
    first["n"] = 1
    assert second == {"_id": "/a", "tags": ["x"]}


def test_guard_is_a_compare_and_set(store):
    store.insert_many(
        [{"_id": "/f"}, {"_id": "/g", "lock": ["al", "bob"]}, {"_id": "/h", "k": None}]
    )
    take = Patch("/f", set={"lock": "bob"}, expect={"lock": MISSING})
    assert store.patch_many([take, take]) == [True, False]
    assert store.patch_many([Patch("/f", unset=("lock",), expect={"lock": "al"})]) == [False]
    assert store.patch_many([Patch("/f", unset=("lock",), expect={"lock": "bob"})]) == [True]
    # An array holding the value is not the value itself.
    assert store.patch_many([Patch("/g", set={"x": 1}, expect={"lock": "al"})]) == [False]
    # null is not missing, and missing is not null.
    assert store.patch_many([Patch("/h", set={"x": 1}, expect={"k": MISSING})]) == [False]
    assert store.patch_many([Patch("/f", set={"x": 1}, expect={"k": None})]) == [False]
    assert store.patch_many([Patch("/h", set={"x": 1}, expect={"k": None})]) == [True]
    assert store.patch_many([Patch("/nope", set={"x": 1})]) == [False]


def test_set_wins_over_unset_and_empty_patch(store):
    store.insert_many([{"_id": "/a", "k": 1, "j": 2}])
    assert store.patch_many([Patch("/a", set={"k": 3}, unset=("k", "j", "absent"))]) == [True]
    assert store.get("/a") == {"_id": "/a", "k": 3}
    assert store.patch_many([Patch("/a"), Patch("/nope")]) == [True, False]


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


def test_find_count_sort_skip_limit(store):
    store.insert_many(
        [
            {"_id": "/1", "v": 3},
            {"_id": "/2", "v": "b"},
            {"_id": "/3", "v": 1.5},
            {"_id": "/4"},
            {"_id": "/5", "v": None},
            {"_id": "/6", "v": 3, "w": "x"},
        ]
    )
    assert store.find(All(), sort=(("v", 1),)) == ["/4", "/5", "/3", "/1", "/6", "/2"]
    assert store.find(All(), sort=(("v", -1),), skip=1, limit=2) == ["/1", "/6"]
    assert store.find(Cmp(("v",), ">", 1)) == ["/1", "/3", "/6"]
    assert store.count(Or((Eq(("w",), "x"), Eq(("v",), "b")))) == 2
    assert store.find(Not(Eq(("v",), 3))) == ["/2", "/3", "/4", "/5"]
    assert store.find(In(("v",), (3, "3")), limit=1) == ["/1"]
    assert [e["_id"] for e in store.find_elements(Eq(("w",), "x"))] == ["/6"]


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
