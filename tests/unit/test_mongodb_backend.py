"""What is particular to the MongoDB backend, on mongomock (and on a real server with
DAMAS_TEST_MONGODB_URL): string ids, indexes, the undo log, regexes on RE2, the feed's
reservations. The storage contract itself is checked on every backend by
tests/conformance/test_storage.py."""

from __future__ import annotations

import functools
import os
import time
import uuid

import bson
import pymongo.errors
import pytest
from damas_core.backends.base import Patch, now_ms, select
from damas_core.backends.mongodb import MongoStorage, id_batches, server_query
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from damas_core.errors import BadRequest, NotImplementedByBackend, StorageError
from damas_core.query.ast import All, And, Cmp, Eq, Not, Or, Regex

URLS = ["mongomock:///t?collection=node"]
if os.environ.get("DAMAS_TEST_MONGODB_URL"):
    URLS.append(os.environ["DAMAS_TEST_MONGODB_URL"].rstrip("/") + "/damas_unit")


@pytest.fixture(params=URLS, ids=lambda u: u.split(":", 1)[0])
def store(request):
    # A fresh collection per test, on a named server that outlives one open.
    url = request.param.replace("collection=node", "") + ("&" if "?" in request.param else "?")
    s = MongoStorage(f"{url}collection=c{uuid.uuid4().hex[:8]}")
    yield s
    for collection in (s._collection, s._changes_coll, s._state):
        collection.drop()
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


def test_regexes_the_server_cannot_answer_as_re2_are_relaxed():
    q = Or((Regex(("a",), "x+"), Not(And((Regex(("b",), "y", "i"), Eq(("c",), 1))))))
    assert server_query(q) == (Or((All(), Not(And((Not(All()), Eq(("c",), 1)))))), False)


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


# -- id lists under the command limit ---------------------------------------------------


def test_id_batches_stay_under_the_limit_in_bson_and_keep_every_id_in_order():
    ids = [f"/shots/s{n:03}/{'é' * (n % 7)}{'x' * (n % 50)}" for n in range(700)]
    for limit in (64, 1000, 4096):
        batches = list(id_batches(ids, limit))
        assert [i for b in batches for i in b] == ids
        assert len(batches) > 1
        for b in batches:
            array = len(bson.encode({"": b})) - len(bson.encode({"": []})) + 5
            assert array <= limit or len(b) == 1


@pytest.fixture
def command_limit(monkeypatch):
    """mongomock refusing, as a server does over 16 MiB, a filter over 2 KiB."""
    import mongomock.collection

    def limited(name):
        real = getattr(mongomock.collection.Collection, name)

        def call(self, filter=None, *args, **kwargs):
            if len(bson.encode(filter or {})) > 2048:
                raise pymongo.errors.DocumentTooLarge(f"{name}: command too large")
            return real(self, filter, *args, **kwargs)

        monkeypatch.setattr(mongomock.collection.Collection, name, call)

    for name in ("find", "delete_many", "count_documents"):
        limited(name)


def test_a_command_over_the_limit_is_refused_by_the_server(command_limit):
    store = MongoStorage("mongomock://", batch_bytes=1 << 20)
    with pytest.raises(StorageError, match="too large"):
        store.get_many([f"/{n:04}/" + "x" * 54 for n in range(400)])


def test_every_id_list_is_sent_in_batches_and_the_answer_is_whole(command_limit):
    # 400 ids of 60 characters with 1 KiB batches: about 25 commands per list.
    url = f"mongomock://batch{uuid.uuid4().hex[:8]}/db"
    store = MongoStorage(url, batch_bytes=1024)
    ids = [f"/{n:04}/" + "x" * 54 for n in range(400)]
    assert store.insert_many([{"_id": i} for i in ids[::2]]) == [True] * 200
    # the pre-check finds the stored half across batches
    assert store.insert_many([{"_id": i, "n": 1} for i in ids]) == [n % 2 == 1 for n in range(400)]
    wanted = [*reversed(ids), "/none", ids[0]]
    got = store.get_many(wanted)
    assert [e and e["_id"] for e in got] == [*reversed(ids), None, ids[0]]
    assert got[-1] is not got[400]
    assert [i for _, i, _ in store.changes(0, 1000)[1]] == ids[::2] + ids[1::2]
    # a collection filled before the feed existed is numbered at open, in batches too
    store._state.drop()
    store._changes_coll.drop()
    again = MongoStorage(url, batch_bytes=1024)
    assert [i for _, i, _ in again.changes(0, 1000)[1]] == ids


def test_batch_bytes_comes_from_the_url_too():
    assert MongoStorage("mongomock:///d?batch_bytes=2048").batch_bytes == 2048
    assert MongoStorage("mongomock://").batch_bytes == 8 * 1024 * 1024


# -- regexes: a range, the server, or RE2 ------------------------------------------------

PATTERNS = [
    (r"^\/s\/", ""),
    (r"^\/s\/a", ""),
    (r"^\/s\/.*x$", ""),
    (r"^\/s?", ""),
    (r"^\/s\/a*", ""),
    (r"^\/s\/a{2}", ""),
    (r"s\/a", ""),
    (r"a$", ""),
    (r"^\/t|a", ""),
    (r"^(?i)\/S", ""),
    (r"^\/S", "i"),
    (r"^\/s", "m"),
    (r"^\x2fs\x2f", ""),
    ("^/s/\uffff", ""),
    ("^/s/\U0010ffff", ""),
]
DOCS = [
    {"_id": "/s/a", "name": "/s/a"},
    {"_id": "/s/aa", "name": ["x", "/s/aa"]},
    {"_id": "/s/b\nx", "name": {"k": "/s/b"}},
    {"_id": "/s/\uffff", "name": 3},
    {"_id": "/s/\U0010ffffz", "name": ["/s/\U0010ffff"]},
    {"_id": "/s0", "name": "/S/a"},
    {"_id": "/S/a", "name": "a\n/s/"},
    {"_id": "/t", "name": None},
    {"_id": "x\n/s/a"},
]


@pytest.mark.parametrize(("pattern", "flags"), PATTERNS)
@pytest.mark.parametrize("key", ["_id", "name"])
def test_regex_answers_equal_re2_whatever_the_server_is_sent(store, pattern, flags, key):
    store.insert_many(DOCS)
    for query in (Regex((key,), pattern, flags), Not(Regex((key,), pattern, flags))):
        want = [e["_id"] for e in select(store.scan(), query, (), 0, None)]
        assert store.find(query) == want
        assert store.count(query) == len(want)
        assert store.find(query, sort=(("_id", -1),), skip=1, limit=2) == want[::-1][1:3]


def test_an_anchored_literal_prefix_is_a_range_and_a_literal_runs_on_the_server():
    q = And((Regex(("_id",), r"^\/s\/"), Regex(("name",), "shot")))
    assert server_query(q) == (
        And((And((Cmp(("_id",), ">=", "/s/"), Cmp(("_id",), "<", "/s0"))), q.nodes[1])),
        True,
    )
    # a pattern after the prefix: the range selects, RE2 decides
    q = Regex(("_id",), r"^\/s\/.*\.exr$")
    assert server_query(q) == (And((Cmp(("_id",), ">=", "/s/"), Cmp(("_id",), "<", "/s0"))), False)
    # another selective term is sent with the relaxed regex
    q = And((Eq(("type",), "shot"), Regex(("name",), "(a+)+$")))
    assert server_query(q) == (And((Eq(("type",), "shot"), All())), False)


# -- undo without overwriting other writers -----------------------------------------------


def test_undo_leaves_what_other_writers_did_meanwhile():
    url = f"mongomock://undo{uuid.uuid4().hex[:8]}/db"
    store, other = MongoStorage(url), MongoStorage(url)
    store.insert_many([{"_id": "/a", "n": 1}, {"_id": "/b", "n": 1}, {"_id": "/d", "n": 1}])
    with pytest.raises(RuntimeError), store.transaction():
        store.patch_many([Patch("/a", set={"n": 2}), Patch("/b", set={"n": 2, "m": 1})])
        store.insert_many([{"_id": "/c", "n": 1}, {"_id": "/e", "n": 1}])
        store.delete_many(["/d"])
        # another process writes meanwhile (it sees the block's writes: no transactions)
        other.patch_many([Patch("/a", set={"o": 1}), Patch("/b", set={"n": 3})])
        other.patch_many([Patch("/c", set={"o": 1})])
        other.insert_many([{"_id": "/d", "o": 1}])
        raise RuntimeError("boom")
    assert list(store.scan()) == [
        {"_id": "/a", "n": 1, "o": 1},  # the block's key undone, the other's kept
        {"_id": "/b", "n": 3},  # n is the other's now; the block's m undone
        {"_id": "/c", "n": 1, "o": 1},  # changed by the other since: left to them
        {"_id": "/d", "o": 1},  # made again by the other: theirs
    ]
    assert {i: dead for _, i, dead in store.changes(0, 100)[1]}["/e"] is True


PIECES = ["^", "$", "/", "s", "a", "S", ".", "*", "?", "+", "\\/", "|", "(?i)", "\\x2f", "\uffff"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(st.sampled_from(PIECES), min_size=1, max_size=6),
    flags=st.sampled_from(["", "i", "m", "s"]),
    key=st.sampled_from(["_id", "name"]),
    negate=st.booleans(),
)
def test_regex_answers_equal_re2_for_generated_patterns(pieces, flags, key, negate):
    pattern = "".join(pieces)
    try:
        query = Regex((key,), pattern, flags)
    except BadRequest:  # not a valid RE2 pattern
        return
    if negate:
        query = Not(query)
    store = _regex_store()
    want = [e["_id"] for e in select(store.scan(), query, (), 0, None)]
    assert store.find(query) == want
    assert store.count(query) == len(want)


@functools.cache
def _regex_store() -> MongoStorage:
    store = MongoStorage("mongomock://")
    store.insert_many(DOCS)
    return store
