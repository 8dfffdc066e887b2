"""The storage contract, primitive by primitive, on every backend.

Each test talks to a :class:`~damas_core.backends.base.Storage` directly (no tracker
on top), through the ``store`` fixture parametrized over the backends of
``tests/conftest.py``; ``reopen`` opens the same store again where the backend keeps
one (a fresh one otherwise). The feed's rules are the ones
:meth:`~damas_core.backends.base.Storage.changes` states.
"""

from __future__ import annotations

import threading
import time

import pytest
from damas_core.backends.base import Patch, now_ms

from damas_core.errors import BadRequest
from damas_core.ordering import MISSING
from damas_core.query.ast import All, Cmp, Eq
from damas_core.registry import open_storage
from tests.conftest import BACKENDS, backend_url

PERSISTENT = {"lmdb", "tinydb", "sqlite", "mongomock", "mongodb", "postgresql"}


class Undo(Exception):
    """Raised inside a transaction block to roll it back."""


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def url(backend, tmp_path) -> str:
    return backend_url(backend, tmp_path)


@pytest.fixture
def opened(url):
    stores = []

    def open_one(**options):
        store = open_storage(url, **options)
        stores.append(store)
        return store

    yield open_one
    for s in stores:
        s.close()


@pytest.fixture
def store(opened):
    return opened()


def ids(store) -> list[str]:
    return [e["_id"] for e in store.scan()]


# -- get_many ----------------------------------------------------------------------


def test_round_trips_return_copies(store):
    element = {"_id": "/a", "list": [1, {"x": None}], "obj": {"k": True}, "f": 1.5, "s": "é"}
    assert store.insert_many([element]) == [True]
    element["list"].append(2)
    first, second = store.get_many(["/a", "/a"])
    assert (
        first
        == second
        == {"_id": "/a", "list": [1, {"x": None}], "obj": {"k": True}, "f": 1.5, "s": "é"}
    )
    first["obj"]["k"] = False
    assert second["obj"]["k"] is True
    assert store.get("/a")["obj"]["k"] is True


def test_get_many_gives_none_for_absent_ids_in_order(store):
    store.insert_many([{"_id": "/a"}, {"_id": "/b"}])
    assert store.get_many(["/b", "/nope", "/a"]) == [{"_id": "/b"}, None, {"_id": "/a"}]
    assert store.get_many([]) == []


@pytest.mark.parametrize("bad", ["/a", [""], [None], [3]])
def test_bad_ids_are_refused(store, bad):
    with pytest.raises(BadRequest):
        store.get_many(bad)


def test_long_and_unusual_ids_round_trip(store):
    odd = ["/" + "x" * 700, "/ü/ß", "/a b", "/\U0001f600", "/t\tab"]
    assert store.insert_many([{"_id": i, "n": k} for k, i in enumerate(odd)]) == [True] * 5
    assert [e["n"] for e in store.get_many(odd)] == list(range(5))
    assert ids(store) == sorted(odd)


# -- insert_many ---------------------------------------------------------------------


def test_insert_refuses_stored_and_repeated_ids(store):
    assert store.insert_many([{"_id": "/a", "n": 1}]) == [True]
    assert store.insert_many(
        [{"_id": "/a", "n": 2}, {"_id": "/b", "n": 1}, {"_id": "/b", "n": 2}]
    ) == [
        False,
        True,
        False,
    ]
    assert store.get_many(["/a", "/b"]) == [{"_id": "/a", "n": 1}, {"_id": "/b", "n": 1}]


@pytest.mark.parametrize(
    "bad", [{"_id": "/bad", "v": {1, 2}}, {"_id": "/bad", "v": object()}, {"_id": ""}, "x"]
)
def test_insert_of_what_is_not_an_element_writes_nothing(store, bad):
    before = store.last_seq()
    with pytest.raises(BadRequest):
        store.insert_many([{"_id": "/ok"}, bad])
    assert store.get_many(["/ok", "/bad"]) == [None, None]
    assert store.last_seq() == before
    assert store.insert_many([{"_id": "/ok"}]) == [True]


def test_bulk_insert_in_order_and_shuffled(store):
    batch = [{"_id": f"/b/{i:05d}", "#parent": "/b"} for i in range(2500)]
    assert store.insert_many(batch[::2]) == [True] * 1250
    assert store.insert_many(batch[1::2][::-1]) == [True] * 1250
    assert ids(store) == [e["_id"] for e in batch]
    assert store.count(Eq(("#parent",), "/b")) == 2500


# -- patch_many ----------------------------------------------------------------------


def test_patch_sets_unsets_and_reports_absent(store):
    store.insert_many([{"_id": "/a", "n": 1, "o": {"x": 1}}])
    assert store.patch_many(
        [Patch("/a", set={"o": {"y": 2}, "m": 3}, unset=("n", "gone")), Patch("/z", set={"k": 1})]
    ) == [True, False]
    assert store.get("/a") == {"_id": "/a", "o": {"y": 2}, "m": 3}
    assert store.get("/z") is None
    with pytest.raises(BadRequest):
        store.patch_many([Patch("/a", set={"_id": "/b"})])


def test_guarded_patches_apply_only_when_the_guard_holds(store):
    store.insert_many([{"_id": "/a", "lock": None, "n": 1, "b": True}])
    assert store.patch_many(
        [
            Patch("/a", set={"x": 1}, expect={"lock": MISSING}),  # present (null): no
            Patch("/a", set={"x": 2}, expect={"n": True}),  # 1 is not true in JSON
            Patch("/a", set={"x": 3}, expect={"b": 1}),
            Patch("/a", set={"x": 4}, expect={"gone": MISSING, "n": 1.0}),
            Patch("/a", set={"lock": "u"}, expect={"lock": None}),
            Patch("/a", set={"lock": "v"}, expect={"lock": None}),  # sees the one before
        ]
    ) == [False, False, False, True, True, False]
    assert store.get("/a") == {"_id": "/a", "lock": "u", "n": 1, "b": True, "x": 4}


def test_guards_tell_arrays_null_and_missing_apart(store):
    store.insert_many(
        [{"_id": "/f"}, {"_id": "/g", "lock": ["al", "bob"]}, {"_id": "/h", "k": None}]
    )
    # An array holding the value is not the value itself.
    assert store.patch_many([Patch("/g", set={"x": 1}, expect={"lock": "al"})]) == [False]
    assert store.patch_many([Patch("/g", set={"x": 1}, expect={"lock": ["al", "bob"]})]) == [True]
    # null is not missing, and missing is not null.
    assert store.patch_many([Patch("/h", set={"x": 1}, expect={"k": MISSING})]) == [False]
    assert store.patch_many([Patch("/f", set={"x": 1}, expect={"k": None})]) == [False]
    assert store.patch_many([Patch("/h", set={"x": 1}, expect={"k": None})]) == [True]
    assert store.patch_many([Patch("/f", set={"y": "1"}, expect={"x": "1"})]) == [False]


def test_set_wins_over_unset_and_an_empty_patch_applies(store):
    store.insert_many([{"_id": "/a", "k": 1, "j": 2}])
    assert store.patch_many([Patch("/a", set={"k": 3}, unset=("k", "j", "absent"))]) == [True]
    assert store.get("/a") == {"_id": "/a", "k": 3}
    assert store.patch_many([Patch("/a"), Patch("/nope")]) == [True, False]


def test_guarded_patch_is_one_step_across_threads(store):
    store.insert_many([{"_id": "/l"}])
    wins = []

    def grab(name):
        wins.extend(store.patch_many([Patch("/l", set={"lock": name}, expect={"lock": MISSING})]))

    threads = [threading.Thread(target=grab, args=(f"u{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 7 + [True]


# -- delete_many ---------------------------------------------------------------------


def test_delete_reports_each_id_once(store):
    store.insert_many([{"_id": "/a"}, {"_id": "/b"}])
    assert store.delete_many(["/a", "/a", "/nope", "/b"]) == [True, False, False, True]
    assert ids(store) == []


# -- scan, find, count, indexes -------------------------------------------------------


def test_scan_and_find_in_id_order(store):
    names = [f"/s/{i:04d}" for i in range(2300)][::-1]
    store.insert_many([{"_id": i, "n": k % 7} for k, i in enumerate(names)])
    assert ids(store) == sorted(names)
    assert store.find(All()) == sorted(names)
    assert store.find(All(), skip=2290, limit=5) == sorted(names)[2290:2295]


def test_find_sorts_skips_limits_and_counts(store):
    store.insert_many(
        [
            {"_id": "/a", "n": 2},
            {"_id": "/b", "n": 1},
            {"_id": "/c", "n": 2},
            {"_id": "/d"},
            {"_id": "/e", "n": "x"},
        ]
    )
    assert store.find(Cmp(("n",), ">", 0), sort=(("n", -1),)) == ["/a", "/c", "/b"]
    assert (
        store.find(All(), sort=(("n", 1),), skip=1, limit=2)[:2]
        == store.find(All(), sort=(("n", 1),))[1:3]
    )
    assert [e["_id"] for e in store.find_elements(Eq(("n",), 2))] == ["/a", "/c"]
    assert store.count(Eq(("n",), 2)) == 2
    assert store.count(All()) == 5
    with pytest.raises(BadRequest):
        store.find(All(), limit=-1)
    # Across types: missing, null, numbers, strings; _id breaks ties.
    store.insert_many([{"_id": "/f", "n": None}, {"_id": "/g", "n": 1.5}])
    assert store.find(All(), sort=(("n", 1),)) == ["/d", "/f", "/b", "/g", "/a", "/c", "/e"]
    assert store.find(All(), sort=(("n", -1),), skip=1, limit=2) == ["/a", "/c"]
    with pytest.raises(BadRequest):
        store.find(All(), skip=-1)


def test_indexes_follow_every_write(store):
    store.ensure_index("type")
    assert "type" in store.indexes
    store.insert_many(
        [
            {"_id": "/a", "type": "shot"},
            {"_id": "/b", "type": ["shot", "asset"]},
            {"_id": "/c", "type": 1},
        ]
    )
    assert store.find(Eq(("type",), "shot")) == ["/a", "/b"]
    assert store.find(Eq(("type",), True)) == []
    store.patch_many([Patch("/a", set={"type": "asset"}), Patch("/b", unset=("type",))])
    store.delete_many(["/c"])
    assert store.find(Eq(("type",), "asset")) == ["/a"]
    assert store.find(Eq(("type",), "shot")) == []
    assert store.find(Eq(("type",), 1)) == []
    if store.atomic:
        with pytest.raises(Undo), store.transaction():
            store.delete_many(["/a"])
            store.insert_many([{"_id": "/x", "type": "asset"}])
            raise Undo
    assert store.find(Eq(("type",), "asset")) == ["/a"]


def test_an_index_added_later_covers_stored_elements(store):
    store.insert_many([{"_id": f"/{i}", "kind": i % 3} for i in range(30)])
    store.ensure_index("kind")
    store.ensure_index("kind")  # idempotent
    assert store.find(Eq(("kind",), 1)) == sorted(f"/{i}" for i in range(30) if i % 3 == 1)


# -- transactions ----------------------------------------------------------------------


def test_a_transaction_commits_as_a_whole(store):
    with store.transaction():
        store.insert_many([{"_id": "/a", "n": 1}])
        assert store.get("/a") == {"_id": "/a", "n": 1}  # sees its own writes
        store.patch_many([Patch("/a", set={"n": 2})])
        with store.transaction():  # nested: joins
            store.insert_many([{"_id": "/b"}])
    assert store.get_many(["/a", "/b"]) == [{"_id": "/a", "n": 2}, {"_id": "/b"}]


def test_a_failed_transaction_leaves_nothing(store):
    if not store.atomic:
        pytest.skip(f"{store.scheme} without server transactions undoes, others may see it")
    store.insert_many([{"_id": "/keep", "n": 1}])
    before = store.changes(0, 100)
    with pytest.raises(Undo), store.transaction():
        store.insert_many([{"_id": "/new"}])
        store.patch_many([Patch("/keep", set={"n": 2})])
        store.delete_many(["/keep"])
        with store.transaction():
            store.insert_many([{"_id": "/inner"}])
        raise Undo
    assert ids(store) == ["/keep"]
    assert store.get("/keep") == {"_id": "/keep", "n": 1}
    assert store.changes(0, 100) == before
    store.insert_many([{"_id": "/after"}])
    assert store.changes(before[0], 10) == (before[0] + 1, [(before[0] + 1, "/after", False)])


def test_a_failed_transaction_is_undone_without_server_transactions(store):
    if store.atomic:
        pytest.skip(f"{store.scheme} has transactions: see the test above")
    store.insert_many([{"_id": "/keep", "n": 1}])
    with pytest.raises(Undo), store.transaction():
        store.insert_many([{"_id": "/new"}])
        store.patch_many([Patch("/keep", set={"n": 2})])
        raise Undo
    assert ids(store) == ["/keep"]
    assert store.get("/keep") == {"_id": "/keep", "n": 1}
    # The undone writes were visible to others: the feed tells the undo too.
    _, entries = store.changes(0, 100)
    assert {(i, d) for _, i, d in entries} == {("/keep", False), ("/new", True)}


def test_other_threads_see_a_transaction_only_after_commit(store):
    if not store.atomic:
        pytest.skip(f"{store.scheme} without server transactions shows writes at once")
    seen = []
    with store.transaction():
        store.insert_many([{"_id": "/t"}])
        t = threading.Thread(target=lambda: seen.append(store.get("/t")))
        t.start()
        time.sleep(0.05)
    t.join()
    assert store.get("/t") == {"_id": "/t"}


# -- the change feed ---------------------------------------------------------------------


def feed(store, since=0):
    return store.changes(since, 10_000)[1]


def test_a_new_store_is_at_zero(store):
    assert store.changes(0, 10) == (0, [])
    assert store.last_seq() == 0
    assert store.horizon() == 0


def test_every_write_that_changes_an_element_is_numbered(store):
    store.insert_many([{"_id": "/a"}, {"_id": "/b"}, {"_id": "/a"}])  # the second /a: no
    s1 = store.last_seq()
    assert [i for _, i, _ in feed(store)] == ["/a", "/b"]
    store.insert_many([{"_id": "/a"}])  # stored already: no change
    store.patch_many([Patch("/a", set={"n": 1}, expect={"n": 5})])  # guard fails
    store.patch_many([Patch("/nope", set={"n": 1})])
    store.delete_many(["/nope"])
    assert store.last_seq() == s1
    assert feed(store, s1) == []
    store.patch_many([Patch("/b", set={"n": 1})])
    s2 = store.last_seq()
    assert s2 > s1 and feed(store, s1) == [(s2, "/b", False)]
    store.delete_many(["/a"])
    s3 = store.last_seq()
    assert s3 > s2 and feed(store, s2) == [(s3, "/a", True)]
    seqs = [s for s, _, _ in feed(store)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert feed(store) == [(s2, "/b", False), (s3, "/a", True)]  # latest per id only


def test_an_id_written_several_times_appears_once_at_its_last_seq(store):
    store.insert_many([{"_id": "/a"}, {"_id": "/b"}])
    with store.transaction():
        store.patch_many([Patch("/a", set={"n": 1}), Patch("/a", set={"n": 2})])
        store.patch_many([Patch("/b", set={"n": 1})])
        store.patch_many([Patch("/a", set={"n": 3})])
    last, entries = store.changes(0, 10)
    assert [(i, d) for _, i, d in entries] == [("/b", False), ("/a", False)]
    assert entries[-1][0] == last


def test_a_tombstone_is_replaced_when_the_id_comes_back(store):
    store.insert_many([{"_id": "/a"}, {"_id": "/b"}])
    store.delete_many(["/a"])
    assert [(i, d) for _, i, d in feed(store)] == [("/b", False), ("/a", True)]
    store.insert_many([{"_id": "/0"}, {"_id": "/a"}, {"_id": "/z"}])  # in bulk, in order
    assert [(i, d) for _, i, d in feed(store)] == [
        ("/b", False),
        ("/0", False),
        ("/a", False),
        ("/z", False),
    ]
    store.delete_many(["/z", "/0"])
    store.insert_many([{"_id": "/z"}, {"_id": "/0"}])
    assert [(i, d) for _, i, d in feed(store)] == [
        ("/b", False),
        ("/a", False),
        ("/z", False),
        ("/0", False),
    ]


def test_pages_read_on_from_last_seq_give_every_change_once(store):
    store.insert_many([{"_id": f"/{i:03d}"} for i in range(50)])
    store.patch_many([Patch(f"/{i:03d}", set={"n": 1}) for i in range(0, 50, 3)])
    store.delete_many([f"/{i:03d}" for i in range(0, 50, 7)])
    expected = feed(store)
    for size in (1, 3, 7, 50, 51, 1000):
        got, since = [], 0
        while True:
            last, page = store.changes(since, size)
            assert len(page) <= size
            if not page:
                break
            assert last == page[-1][0] or (len(page) < size and last == store.last_seq())
            got += page
            since = last
        assert got == expected
        assert since == store.last_seq()


def test_limit_cuts_at_the_last_entry_returned(store):
    store.insert_many([{"_id": "/a"}, {"_id": "/b"}, {"_id": "/c"}])
    last = store.last_seq()
    _, (s2, _, _), (s3, _, _) = feed(store)
    assert store.changes(0, 2) == (s2, feed(store)[:2])
    assert store.changes(0, 3) == (last, feed(store))  # not cut: the current position
    assert store.changes(s3, 5) == (last, [])
    assert store.changes(last + 100, 5) == (last, [])


@pytest.mark.parametrize(
    "since, limit", [(-1, 1), (0, 0), (0, -3), ("0", 1), (0, "5"), (1.0, 1), (True, 1), (0, None)]
)
def test_feed_arguments_are_checked(store, since, limit):
    with pytest.raises(BadRequest, match=r"^changes error"):
        store.changes(since, limit)


def test_reserved_ids_are_numbered_too(store):
    store.insert_many([{"_id": "~settings", "x": 1}, {"_id": "/a"}])
    assert [i for _, i, _ in feed(store)] == ["~settings", "/a"]


def test_dropping_old_tombstones_raises_the_horizon(store):
    store.insert_many([{"_id": "/a"}, {"_id": "/b"}, {"_id": "/c"}])
    store.delete_many(["/a"])
    cut = now_ms() + 1
    time.sleep(0.01)
    store.delete_many(["/b"])
    last = store.last_seq()
    old_seq = next(s for s, i, _ in feed(store) if i == "/a")
    with pytest.raises(BadRequest):
        store.drop_tombstones(-5)
    assert store.drop_tombstones(0) == 0
    assert store.drop_tombstones(cut) == 1
    assert store.horizon() == old_seq
    assert store.last_seq() == last
    assert [i for _, i, _ in feed(store)] == ["/c", "/b"]
    assert store.drop_tombstones(now_ms() + 1000) == 1
    assert store.horizon() == last  # the last write was /b's delete
    assert store.last_seq() == last
    assert [i for _, i, _ in feed(store)] == ["/c"]
    store.insert_many([{"_id": "/d"}])
    assert store.last_seq() > last  # numbers are never given twice


def test_the_feed_survives_reopening(backend, opened, store):
    if backend not in PERSISTENT:
        pytest.skip("memory:// keeps nothing once closed")
    store.insert_many([{"_id": "/a"}, {"_id": "/b"}])
    store.delete_many(["/a"])
    store.drop_tombstones(now_ms() + 1000)
    expected = store.changes(0, 10), store.horizon()
    store.close()
    again = opened()
    assert (again.changes(0, 10), again.horizon()) == expected
    again.insert_many([{"_id": "/c"}])
    assert again.changes(expected[0][0], 10)[1][0][1] == "/c"


def test_a_second_handle_sees_the_feed_of_the_first(backend, opened, store):
    if backend not in PERSISTENT:
        pytest.skip("memory:// stores are private to their object")
    other = opened()
    store.insert_many([{"_id": "/a"}])
    other.insert_many([{"_id": "/b"}])
    store.patch_many([Patch("/b", set={"n": 1})])
    assert other.changes(0, 10) == store.changes(0, 10)
    assert [i for _, i, _ in feed(other)] == ["/a", "/b"]
