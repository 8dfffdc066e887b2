"""What is particular to the LMDB backend: index entries, long keys, map growth and
replay, the bulk path, the fork guard, URLs and options. The storage contract itself
is checked on every backend by tests/conformance/test_storage.py."""

from __future__ import annotations

import multiprocessing
import os
import threading

import pytest
import re2
from damas_core.backends import lmdb as lmdb_backend
from damas_core.backends import lmdb_engine, lmdb_indexes
from damas_core.backends.base import Patch, index_values
from damas_core.backends.lmdb import LMDBStorage, index_key, store_path
from damas_core.backends.memory import MemoryStorage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from damas_core.errors import BadRequest, StorageError
from damas_core.query.ast import All, And, Cmp, Eq, In, Regex


@pytest.fixture
def store(tmp_path):
    s = LMDBStorage(f"lmdb://{tmp_path}/store", indexes=["type"])
    yield s
    s.close()


@pytest.fixture
def decodes(monkeypatch):
    """Counts the elements the backend decodes from JSON."""
    counter = {"n": 0}
    real = lmdb_backend._loads

    def counting(raw):
        counter["n"] += 1
        return real(raw)

    monkeypatch.setattr(lmdb_backend, "_loads", counting)
    return counter


def index_entries(store: LMDBStorage, key: str) -> set[tuple[bytes, bytes]]:
    """Every (index key, element key) pair stored in the index on ``key``."""
    h = store._h
    with h.env.begin() as txn:
        cursor = txn.cursor(db=h.index_dbs[key])
        return {(bytes(k), bytes(v)) for k, v in cursor.iternext()}


def expected_entries(store: LMDBStorage, key: str) -> set[tuple[bytes, bytes]]:
    return {(index_key(v), e["_id"].encode()) for e in store.scan() for v in index_values(e, key)}


# -- storage --------------------------------------------------------------------------


def test_non_json_element_changes_nothing(store):
    with pytest.raises(BadRequest, match="not JSON"):
        store.insert_many([{"_id": "/ok"}, {"_id": "/bad", "v": object()}])
    assert store.get("/ok") is None
    store.insert_many([{"_id": "/a", "#parent": "/p"}])
    with pytest.raises(StorageError):
        store.patch_many([Patch("/a", set={"#parent": "/q"}), Patch("/a", set={"v": {1, 2}})])
    assert store.get("/a") == {"_id": "/a", "#parent": "/p"}
    assert index_entries(store, "#parent") == {(b"s/p", b"/a")}


_LONG = "/" + "a" * 600  # ids from it on are longer than a key: their keys end with a digest
_ids = st.lists(
    st.one_of(
        st.text(alphabet="/ab\u00e9\U0001f600", min_size=1, max_size=4),
        st.text(alphabet="ab", max_size=3).map(lambda tail: _LONG + tail),
    ),
    max_size=25,
    unique=True,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ids=_ids, bound=st.one_of(_ids.map(lambda ids: ids[0] if ids else "/"), st.just(_LONG)),
       op=st.sampled_from([">", ">="]), prefix=st.sampled_from(["", "/", "/a", _LONG]),
       skip=st.integers(0, 3), limit=st.integers(1, 6))  # fmt: skip
def test_an_id_lower_bound_reads_from_its_key_on(
    tmp_path_factory, ids, bound, op, prefix, skip, limit
):
    """``_id>v`` starts LMDB's read at v's key (long ids included, whose keys are not in
    id order) and answers what a read of every element answers."""
    store = LMDBStorage(f"lmdb://{tmp_path_factory.mktemp('bound')}/s")
    try:
        store.insert_many([{"_id": i} for i in ids])
        terms = [Cmp(("_id",), op, bound)]
        if prefix:
            terms.append(Regex(("_id",), "^" + re2.escape(prefix), ""))
        query = And(tuple(terms))
        want = MemoryStorage("memory://")
        want.insert_many([{"_id": i} for i in ids])
        assert store.find_elements(query, (("_id", 1),), skip, limit) == want.find_elements(
            query, (("_id", 1),), skip, limit
        )
        assert store.find(query) == want.find(query)
    finally:
        store.close()


def test_long_ids_round_trip(store):
    long_a = "/" + "a" * 700
    long_b = "/" + "a" * 700 + "b"
    store.insert_many([{"_id": long_a, "#parent": long_b}, {"_id": long_b}, {"_id": "/z"}])
    assert store.get(long_b) == {"_id": long_b}
    assert store.find(All()) == [long_a, long_b, "/z"]
    assert store.find(Eq(("#parent",), long_b)) == [long_a]
    assert store.delete_many([long_a]) == [True]
    assert index_entries(store, "#parent") == set()


# -- indexes --------------------------------------------------------------------------


def test_indexed_search_decodes_only_the_hits(store, decodes):
    store.insert_many([{"_id": f"/e{i}", "#parent": f"/p{i % 50}"} for i in range(1000)])
    decodes["n"] = 0
    hits = sorted(f"/e{i}" for i in range(7, 1000, 50))
    assert store.find(Eq(("#parent",), "/p7")) == hits
    assert decodes["n"] == 0  # the index alone answers: ids without reading elements
    assert store.find(Eq(("#parent",), "/p7"), skip=2, limit=3) == hits[2:5]
    assert store.count(In(("#parent",), ("/p7", "/p8"))) == 40 and decodes["n"] == 0
    assert [e["_id"] for e in store.find_elements(Eq(("#parent",), "/p7"))] == hits
    assert decodes["n"] == 20
    decodes["n"] = 0
    assert store.count(And((Eq(("#parent",), "/p7"), Cmp(("x",), ">", 1)))) == 0
    assert decodes["n"] == 20
    decodes["n"] = 0
    store.find(Eq(("other",), "/p7"))  # not indexed: a full scan
    assert decodes["n"] == 1000


def test_candidates_come_from_the_index(store):
    store.insert_many([{"_id": "/a", "type": "shot"}, {"_id": "/b", "type": "asset"}])
    assert [e["_id"] for e in store._candidates(Eq(("type",), "shot"))] == ["/a"]
    assert len(store._candidates(Eq(("size",), 1))) == 2


def test_arrays_are_indexed_per_member(store):
    store.insert_many(
        [
            {"_id": "/a", "type": ["shot", "asset", "shot"]},
            {"_id": "/b", "type": [["shot"], {"k": "shot"}]},  # nested values are not members
        ]
    )
    assert store.find(Eq(("type",), "asset")) == ["/a"]
    assert store.find(Eq(("type",), "shot")) == ["/a"]
    assert index_entries(store, "type") == {(b"sshot", b"/a"), (b"sasset", b"/a")}


def test_numbers_strings_and_booleans_keep_distinct_index_keys(store):
    store.insert_many(
        [
            {"_id": "/int", "type": 12},
            {"_id": "/float", "type": 12.0},
            {"_id": "/str", "type": "12"},
            {"_id": "/true", "type": True},
            {"_id": "/one", "type": 1},
            {"_id": "/half", "type": 0.5},
        ]
    )
    assert store.find(Eq(("type",), 12)) == ["/float", "/int"]
    assert store.find(Eq(("type",), 12.0)) == ["/float", "/int"]
    assert store.find(Eq(("type",), "12")) == ["/str"]
    assert store.find(Eq(("type",), True)) == ["/true"]
    assert store.find(Eq(("type",), 1)) == ["/one"]
    assert store.find(Eq(("type",), 0.5)) == ["/half"]
    assert store.find(In(("type",), (12, "12"))) == ["/float", "/int", "/str"]
    assert len({index_key(v) for v in (12, "12", True, 1, 0.5, False, 0)}) == 7


def test_index_follows_patch_and_delete(store):
    store.insert_many([{"_id": "/a", "type": "x"}, {"_id": "/b", "type": ["x", "y"]}])
    store.patch_many([Patch("/a", set={"type": ["y", 3]}), Patch("/b", unset=("type",))])
    assert index_entries(store, "type") == {(b"sy", b"/a"), (b"n3", b"/a")}
    assert store.find(Eq(("type",), "x")) == []
    store.patch_many([Patch("/b", set={"type": "x"}), Patch("/a", set={"other": 1})])
    assert index_entries(store, "type") == expected_entries(store, "type")
    store.delete_many(["/a"])
    assert index_entries(store, "type") == {(b"sx", b"/b")}


scalars = st.one_of(
    st.sampled_from(["a", "b", "12", ""]),
    st.sampled_from([12, 12.0, 1, 0.5, True, False, None]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.just({"k": "a"}))
ids = st.sampled_from(["/a", "/b", "/c", "/d"])
steps = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), ids, values),
        st.tuples(st.just("set"), ids, values),
        st.tuples(st.just("unset"), ids, st.none()),
        st.tuples(st.just("delete"), ids, st.none()),
    ),
    max_size=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps, probe=scalars)
def test_index_stays_consistent_under_random_writes(tmp_path_factory, steps, probe):
    path = tmp_path_factory.mktemp("h")
    lm = LMDBStorage(f"lmdb://{path}", indexes=["type"])
    mem = MemoryStorage()
    try:
        for op, id_, value in steps:
            for s in (lm, mem):
                if op == "insert":
                    s.insert_many([{"_id": id_, "type": value}])
                elif op == "set":
                    s.patch_many([Patch(id_, set={"type": value})])
                elif op == "unset":
                    s.patch_many([Patch(id_, unset=("type",))])
                else:
                    s.delete_many([id_])
        assert index_entries(lm, "type") == expected_entries(lm, "type")
        assert lm.find(Eq(("type",), probe)) == mem.find(Eq(("type",), probe))
    finally:
        lm.close()


def test_reopen_keeps_and_uses_indexes(tmp_path, decodes):
    url = f"lmdb://{tmp_path}/s"
    with LMDBStorage(url) as s:
        s.insert_many([{"_id": f"/e{i}", "kind": f"k{i % 10}"} for i in range(100)])
        s.ensure_index("kind")  # built for the elements already there
        assert "kind" in s.indexes
    with LMDBStorage(url) as s:
        assert s.indexes == ("#parent", "src_id", "tgt_id", "kind")
        decodes["n"] = 0
        assert len(s.find(And((Eq(("kind",), "k3"), Cmp(("x",), "<", 1))))) == 0
        assert decodes["n"] == 10


def test_bad_index_names_are_refused(tmp_path, store):
    with pytest.raises(BadRequest):
        LMDBStorage(f"lmdb://{tmp_path}/x", indexes=[""])
    with pytest.raises(BadRequest):
        store.ensure_index("k" * 500)
    assert "k" * 500 not in store.indexes


def _add_index(url: str) -> None:
    with LMDBStorage(url, indexes=["shot"]):
        pass


def test_index_added_by_another_process_is_maintained_here(tmp_path):
    url = f"lmdb://{tmp_path}/s"
    with LMDBStorage(url) as s:
        s.insert_many([{"_id": "/old", "shot": "s1"}])
        p = multiprocessing.get_context("spawn").Process(target=_add_index, args=(url,))
        p.start()
        p.join(60)
        assert p.exitcode == 0
        s.insert_many([{"_id": "/new", "shot": "s1"}])  # this write learns of the index
        assert "shot" in s.indexes
        assert index_entries(s, "shot") == {(b"ss1", b"/old"), (b"ss1", b"/new")}
        assert s.find(Eq(("shot",), "s1")) == ["/new", "/old"]


# -- map growth -------------------------------------------------------------------------


def map_size(store: LMDBStorage) -> int:
    return store._h.env.info()["map_size"]


def test_map_grows_from_tiny_through_a_bulk_insert(tmp_path):
    with LMDBStorage(f"lmdb://{tmp_path}/s", map_size=64 << 10) as s:
        start = map_size(s)
        n = 30_000
        out = s.insert_many(
            [{"_id": f"/f/{i:06d}", "#parent": f"/p{i % 9}", "pad": "x" * 50} for i in range(n)]
        )
        assert out == [True] * n
        assert s.count(All()) == n and map_size(s) > start
        assert len(s.find(Eq(("#parent",), "/p4"))) == len(range(4, n, 9))


def test_map_full_after_a_low_estimate_retries_the_write(tmp_path, monkeypatch):
    with LMDBStorage(f"lmdb://{tmp_path}/s", map_size=64 << 10) as s:
        attempts = []
        real = s._insert_bulk

        def counting(txn, elements, op):
            attempts.append(len(elements))
            return real(txn, elements, op)

        monkeypatch.setattr(s, "_insert_bulk", counting)
        # The first elements are small, so the size estimate from them is far too low.
        batch = [{"_id": f"/s{i:03d}"} for i in range(64)]
        batch += [{"_id": f"/big{i:04d}", "blob": "z" * 8000} for i in range(400)]
        assert all(s.insert_many(batch))
        assert len(attempts) > 1
        assert s.get("/big0399")["blob"] == "z" * 8000 and s.count(All()) == 464


@pytest.fixture
def no_headroom(monkeypatch):
    """Blocks start without the room given to them up front, so that they outgrow
    the map (as a block larger than that room does)."""
    monkeypatch.setattr(lmdb_engine, "BLOCK_ROOM", 0)


def test_a_transaction_starts_with_room_for_a_large_block(tmp_path):
    with LMDBStorage(f"lmdb://{tmp_path}/s", map_size=64 << 10) as s, s.transaction():
        assert s._engine.room() >= lmdb_engine.BLOCK_ROOM


def test_map_grows_inside_a_transaction_by_replaying_it(tmp_path, no_headroom):
    with LMDBStorage(f"lmdb://{tmp_path}/s", map_size=64 << 10) as s:
        s.insert_many([{"_id": "/seen", "v": 1}])
        with s.transaction():
            assert s.get("/seen")["v"] == 1
            s.insert_many([{"_id": f"/a{i:05d}", "pad": "y" * 300} for i in range(3000)])
            s.patch_many([Patch("/seen", set={"v": 2})])
            s.insert_many([{"_id": f"/b{i:05d}", "pad": "y" * 300} for i in range(3000)])
        assert s.count(All()) == 6001 and s.get("/seen")["v"] == 2


def test_replay_notices_elements_changed_by_the_caller(tmp_path, no_headroom):
    with LMDBStorage(f"lmdb://{tmp_path}/s", map_size=64 << 10) as s:
        mine = {"_id": "/mine", "v": 1}
        with pytest.raises(StorageError, match="retry"), s.transaction():
            s.insert_many([mine])
            mine["v"] = 2  # the stored copy must not change: a replay would write v=2
            s.insert_many([{"_id": f"/a{i:05d}", "pad": "y" * 300} for i in range(3000)])
        assert s.count(All()) == 0


def test_replay_that_reads_changed_data_fails_and_writes_nothing(
    tmp_path, monkeypatch, no_headroom
):
    with LMDBStorage(f"lmdb://{tmp_path}/s", map_size=64 << 10) as s:
        s.insert_many([{"_id": "/x", "v": 1}])
        real = s._engine.ensure_room
        meddled = []

        def meddle(need, double=False):
            if not meddled:  # another writer slips in while the map grows
                meddled.append(1)
                t = threading.Thread(target=s.patch_many, args=([Patch("/x", set={"v": 9})],))
                t.start()
                t.join()
            return real(need, double=double)

        with pytest.raises(StorageError, match="retry"), s.transaction():
            assert s.get("/x")["v"] == 1
            monkeypatch.setattr(s._engine, "ensure_room", meddle)
            s.insert_many([{"_id": f"/a{i:05d}", "pad": "y" * 300} for i in range(3000)])
        assert meddled and s.get("/x")["v"] == 9 and s.count(All()) == 1


# -- transactions -------------------------------------------------------------------------


def test_transaction_commits_or_rolls_back_as_a_whole(store):
    with store.transaction():
        store.insert_many([{"_id": "/a", "#parent": "/p"}])
        assert store.get("/a") is not None  # reads see the uncommitted write
        assert store.find(Eq(("#parent",), "/p")) == ["/a"]
    with pytest.raises(RuntimeError), store.transaction():
        store.insert_many([{"_id": "/b", "#parent": "/p"}])
        store.patch_many([Patch("/a", set={"x": 1})])
        store.delete_many(["/a"])
        raise RuntimeError("boom")
    assert store.get_many(["/a", "/b"]) == [{"_id": "/a", "#parent": "/p"}, None]
    assert index_entries(store, "#parent") == {(b"s/p", b"/a")}


def test_writers_in_threads_wait_for_an_open_transaction(store):
    order = []
    with store.transaction():
        t = threading.Thread(
            target=lambda: order.append(store.insert_many([{"_id": "/a", "by": "t"}]))
        )
        t.start()
        t.join(0.3)
        order.append("block")
        store.insert_many([{"_id": "/a", "by": "block"}])
    t.join()
    assert order == ["block", [False]] and store.get("/a")["by"] == "block"


def test_refused_patch_inside_a_transaction_changes_nothing(store):
    with store.transaction():
        store.insert_many([{"_id": "/a"}])
        with pytest.raises(StorageError):
            store.patch_many([Patch("/a", set={"ok": 1}), Patch("/a", set={"v": object()})])
        store.insert_many([{"_id": "/b"}])
    assert store.find(All()) == ["/a", "/b"] and store.get("/a") == {"_id": "/a"}


def test_non_json_insert_inside_a_transaction_voids_it(store):
    with pytest.raises(StorageError, match="aborted"), store.transaction():
        store.insert_many([{"_id": "/a"}])
        batch = [{"_id": f"/c{i:03d}"} for i in range(100)] + [{"_id": "/d", "v": object()}]
        with pytest.raises(BadRequest):
            store.insert_many(batch)  # found bad only after writing the first hundred
        store.insert_many([{"_id": "/b"}])
    assert store.count(All()) == 0


def test_write_failing_half_way_voids_the_transaction(store, monkeypatch):
    real = lmdb_indexes.index_key

    def failing(value):
        if value == "boom":
            raise RuntimeError("disk on fire")
        return real(value)

    monkeypatch.setattr(lmdb_indexes, "index_key", failing)
    with pytest.raises(StorageError, match="aborted"), store.transaction():
        store.insert_many([{"_id": "/a"}])
        with pytest.raises(StorageError):
            store.patch_many([Patch("/a", set={"ok": 1}), Patch("/a", set={"type": ["boom"]})])
        store.insert_many([{"_id": "/b"}])
    assert store.count(All()) == 0


# -- URLs, options, lifecycle ------------------------------------------------------------


def test_relative_and_absolute_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with LMDBStorage("lmdb://rel/store") as s:
        s.insert_many([{"_id": "/a"}])
    assert os.path.exists(tmp_path / "rel" / "store" / "data.mdb")
    with LMDBStorage(f"lmdb://{tmp_path}/rel/store") as s:
        assert s.get("/a") == {"_id": "/a"}
        assert s.path == str(tmp_path / "rel" / "store")


def test_url_query_options_and_bad_options(tmp_path):
    assert store_path("lmdb:///srv/d?sync=false&map_size=1048576") == (
        "/srv/d",
        {"sync": "false", "map_size": "1048576"},
    )
    with LMDBStorage(f"lmdb://{tmp_path}/q?sync=false&indexes=kind,shot") as s:
        assert s.indexes[-2:] == ("kind", "shot")
    for bad in ({"map_size": "big"}, {"map_size": -1}, {"sync": "maybe"}):
        with pytest.raises(BadRequest):
            LMDBStorage(f"lmdb://{tmp_path}/b", **bad)
    with pytest.raises(BadRequest):
        LMDBStorage("lmdb://")


def test_two_handles_on_one_directory_share_the_environment(tmp_path):
    a = LMDBStorage(f"lmdb://{tmp_path}/s")
    b = LMDBStorage(f"lmdb://{tmp_path}/s/")
    a.insert_many([{"_id": "/a"}])
    assert b.get("/a") == {"_id": "/a"}
    a.close()
    assert b.get("/a") == {"_id": "/a"}  # closing one keeps the other working
    b.close()
    with pytest.raises(StorageError, match="closed"):
        b.get("/a")
    b.close()  # closing twice is harmless


def test_bulk_insert_indexes_every_kind_of_value(store):
    long_parent = "/p/" + "x" * 700  # longer than an LMDB key
    long_id = "/e/" + "y" * 700
    batch = [
        {"_id": "/a", "#parent": "/p", "type": "shot"},
        {"_id": "/b", "#parent": ["/p", "/q", None, {"no": 1}], "type": 12},
        {"_id": "/c", "#parent": long_parent, "type": ["shot", 1.5, True]},
        {"_id": long_id, "#parent": "/p", "type": None},
        {"_id": "/d"},
    ]
    assert store.insert_many(batch) == [True] * 5
    # Some ids already stored: the bulk path is undone and the call goes one by one.
    assert store.insert_many([{"_id": "/f", "#parent": "/p"}, {"_id": "/a", "#parent": "/x"}]) == [
        True,
        False,
    ]

    def expected(key):
        return {
            (index_key(v), lmdb_backend.element_key(e["_id"]))
            for e in store.scan()
            for v in index_values(e, key)
        }

    for key in ("#parent", "type"):
        assert index_entries(store, key) == expected(key)
    assert store.find(Eq(("#parent",), "/p")) == sorted(["/a", "/b", "/f", long_id])
    assert store.find(Eq(("#parent",), long_parent)) == ["/c"]
    assert store.get("/a")["#parent"] == "/p"


def test_bulk_insert_with_an_id_twice_keeps_the_first(store):
    assert store.insert_many([{"_id": "/a", "n": 1}, {"_id": "/a", "n": 2}]) == [True, False]
    assert store.get("/a") == {"_id": "/a", "n": 1}
    assert index_entries(store, "type") == set()


def _use_after_fork(path: str, inherited: LMDBStorage, out) -> None:
    try:
        inherited.get_many(["/a"])
        out.put("inherited store worked")
    except StorageError as e:
        out.put(f"refused: {e}")
    try:
        LMDBStorage(f"lmdb://{path}")
        out.put("opened again")
    except StorageError as e:
        out.put(f"refused: {e}")


def test_a_store_inherited_through_fork_refuses_to_work_in_the_child(tmp_path):
    path = str(tmp_path / "s")
    with LMDBStorage(f"lmdb://{path}") as store:
        store.insert_many([{"_id": "/a", "n": 1}])
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()
        child = ctx.Process(target=_use_after_fork, args=(path, store, out))
        child.start()
        first, second = out.get(timeout=30), out.get(timeout=30)
        child.join(30)
        assert first.startswith("refused: ") and "spawn" in first
        assert second.startswith("refused: ") and "spawn" in second
        assert store.get_many(["/a"]) == [{"_id": "/a", "n": 1}]  # the parent's still works


def test_bulk_insert_meeting_a_stored_id_inside_a_transaction(store):
    store.insert_many([{"_id": "/a", "#parent": "/p"}])
    with store.transaction():
        assert store.insert_many(
            [{"_id": "/a", "#parent": "/q"}, {"_id": "/b", "#parent": "/q"}]
        ) == [
            False,
            True,
        ]
        assert store.insert_many([{"_id": "/c", "#parent": "/q"}]) == [True]  # the block goes on
    assert store.find(Eq(("#parent",), "/q")) == ["/b", "/c"]
    assert store.get("/a") == {"_id": "/a", "#parent": "/p"}
    assert index_entries(store, "#parent") == expected_entries(store, "#parent")


# -- bulk inserts: runs, appends in key order -----------------------------------------

_BULK_IDS = ["/a", "/a/b", "/b", "/b/c", "/c", "/é", "@u", "/" + "z" * 600, "/n\x00ul", "01J"]
_PARENTS = st.one_of(st.sampled_from(["/p", "/q", "/é", "/" + "p" * 600, None]), st.integers(0, 3))


def _all_entries(store: LMDBStorage, key: str) -> set[tuple[bytes, bytes]]:
    return {
        (index_key(v), lmdb_backend.element_key(e["_id"]))
        for e in store.scan()
        for v in index_values(e, key)
    }


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(
        st.tuples(
            st.lists(st.tuples(st.sampled_from(_BULK_IDS), _PARENTS), max_size=9),
            st.booleans(),
        ),
        max_size=5,
    )
)
def test_bulk_inserts_in_runs_and_in_order_agree_with_memory(tmp_path_factory, batches):
    """Batches sorted or not, across runs of 3, some after every stored key (appended),
    some not, with ids and values the bulk path cannot take (NUL, too long, numbers)."""
    path = tmp_path_factory.mktemp("bulk")
    lm = LMDBStorage(f"lmdb://{path}", indexes=["type"])
    mem = MemoryStorage()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(lmdb_backend, "RUN", 3)
            for pairs, in_order in batches:
                if in_order:
                    pairs = sorted(pairs, key=lambda pair: pair[0])
                batch = [
                    {"_id": i, "type": [p, i]} | ({} if p is None else {"#parent": p})
                    for i, p in pairs
                ]
                assert lm.insert_many(batch) == mem.insert_many(batch)
        assert list(lm.scan()) == list(mem.scan())
        for key in ("#parent", "type"):
            assert index_entries(lm, key) == _all_entries(lm, key)
        for probe in ("/p", "/é", 2, "/" + "p" * 600):
            assert lm.find(Eq(("#parent",), probe)) == mem.find(Eq(("#parent",), probe))
    finally:
        lm.close()


def test_ids_in_order_after_the_stored_ones_are_appended(store, monkeypatch):
    seen = []
    real = lmdb_backend.sorted_after
    monkeypatch.setattr(
        lmdb_backend, "sorted_after", lambda ids, c: seen.append(real(ids, c)) or seen[-1]
    )
    store.insert_many([{"_id": f"/s/{i:03d}", "#parent": "/s"} for i in range(10)])
    store.insert_many([{"_id": f"/t/{i:03d}", "#parent": "/s"} for i in range(10)])
    store.insert_many([{"_id": "/r", "#parent": "/s"}, {"_id": "/u", "#parent": "/s"}])
    store.insert_many([{"_id": "/w", "#parent": "/s"}, {"_id": "/v", "#parent": "/s"}])
    assert seen == [True, True, False, False]
    assert len(store.find(Eq(("#parent",), "/s"))) == 24
    assert index_entries(store, "#parent") == _all_entries(store, "#parent")
