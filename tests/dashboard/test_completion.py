"""The completion cache: the same counts as reading every file, after any writes, for
the cost of the changes since the last page."""

from __future__ import annotations

import pytest
from damas_core.backends.base import Patch
from damas_core.sync.completion import CompletionCache
from damas_core.sync.status import STATES, Filters, SitesCache, folders, page, status
from damas_core.sync.volumes import GLOBAL_ID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import open_tracker

IDS = ["/a", "/a/", "/a/b", "/a/b/c", "/a/b/d/", "/a//x", "/b/c", "/c/d/e/", "/c/d/e/f", "/s"]
PREFIXES = ["/", "/a/", "/a/b/", "/a//", "/c/", "/c/d/", "/c/d/e/", "/nope/"]
VOLUMES = [
    {"_id": "v1", "name": "p", "url": "file:///p/"},
    {"_id": "v2", "name": "t", "url": "file:///t/"},
]
KEYS = ["origin", "#parent", "file_size", "time", "deleted", "synced_p", "synced_t", "sync_t",
        "syncEverywhere", "syncError_t", "syncWait_t", "conflict_t"]  # fmt: skip

fields = st.fixed_dictionaries(
    {"origin": st.sampled_from(["p", "t", "elsewhere"])},
    optional={
        "#parent": st.just("/a"),
        "file_size": st.sampled_from([0, 5, 7, 2**40, True, "9", None]),
        "time": st.sampled_from([1, 5]),
        "deleted": st.booleans(),
        "synced_p": st.sampled_from([1, 5]),
        "synced_t": st.sampled_from([1, 5]),
        "sync_t": st.booleans(),
        "syncEverywhere": st.booleans(),
        "syncError_t": st.just(23),
        "syncWait_t": st.just("locked by bo"),
        "conflict_t": st.just({"incoming": "/a.conflict"}),
    },
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(IDS), fields),
        st.tuples(st.just("drop"), st.sampled_from(IDS), st.none()),
        st.tuples(st.just("volume"), st.sampled_from(["v2", "v3"]), st.none()),
        st.tuples(st.just("everywhere"), st.booleans(), st.none()),
        st.tuples(st.just("look"), st.none(), st.none()),
    ),
    max_size=25,
)


def apply(storage, step) -> None:
    kind, what, keys = step
    if kind == "put":
        if not storage.insert_many([{"_id": what, **keys}])[0]:
            unset = tuple(k for k in KEYS if k not in keys)
            storage.patch_many([Patch(what, set=keys, unset=unset)])
    elif kind == "drop":
        storage.delete_many([what])
    elif kind == "volume":  # a site comes or goes
        if not storage.delete_many([what])[0]:
            storage.insert_many([{"_id": what, "name": what, "url": f"file:///{what}/"}])
    elif (
        kind == "everywhere"
        and not storage.insert_many([{"_id": GLOBAL_ID, "syncEverywhere": what}])[0]
    ):
        storage.patch_many([Patch(GLOBAL_ID, set={"syncEverywhere": what})])


filters = st.builds(
    Filters,
    prefix=st.sampled_from(["", "/a/", "/a/b/", "/c/", "/nope/"]),
    states=st.lists(st.sampled_from(STATES), min_size=1, max_size=2, unique=True).map(tuple),
    sites=st.sampled_from([(), ("t",), ("p", "v3")]),
    skip=st.integers(0, 6),
    limit=st.integers(1, 3),
)


def assert_same(tracker, cache, shown=()) -> None:
    assert cache.completion() == status(tracker)["completion"]
    for prefix in PREFIXES:
        assert cache.folders(prefix) == folders(tracker, prefix)
    for f in shown:
        assert page(tracker, f, cache.sites, cache) == page(tracker, f)


@pytest.mark.parametrize("backend", ["memory", "lmdb"])
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(before=steps, after=steps, shown=st.lists(filters, max_size=4))
def test_the_cached_counts_are_those_of_a_full_read(backend, tmp_path, before, after, shown):
    tracker = open_tracker(backend, tmp_path)
    try:
        tracker.storage.insert_many(VOLUMES)
        for step in before:
            apply(tracker.storage, step)
        cache = CompletionCache(tracker)
        assert_same(tracker, cache, shown)  # the first read
        for step in after:
            if step[0] == "look":
                assert_same(tracker, cache, shown)
            else:
                apply(tracker.storage, step)
        assert_same(tracker, cache, shown)  # the changes since, applied
    finally:
        tracker.close()


def test_the_cache_starts_over_when_the_feed_says_so(tracker):
    tracker.storage.insert_many(VOLUMES)
    tracker.publish({"_id": "/x", "origin": "p", "comment": "c", "file_size": 3})
    cache = CompletionCache(tracker)
    assert cache.completion()["p"]["files_ok"] == 1
    tracker.delete("/x")
    tracker.storage.drop_tombstones(2**60)  # the delete is forgotten: the feed resets
    cache._seq = 0  # a reader from before the horizon
    assert (
        cache.completion()["p"]["files_ok"] == 0 == status(tracker)["completion"]["p"]["files_ok"]
    )


def test_a_page_after_n_changes_reads_n_elements(tmp_path, decoded):
    tracker = open_tracker("lmdb", tmp_path)
    try:
        tracker.storage.insert_many(VOLUMES)
        tracker.storage.insert_many(
            [
                {"_id": f"/f/{d}/{i:04d}", "origin": "p", "file_size": i}
                for d in "ab"
                for i in range(1000)
            ]
        )
        sites = SitesCache(tracker)
        cache = CompletionCache(tracker, sites)
        cache.completion()
        decoded[0] = 0
        folders(tracker, "/f/", sites=sites)
        assert decoded[0] >= 2000  # without the cache: every file, at every page
        for n in (0, 1, 7, 40):
            for i in range(n):
                tracker.update({"_id": f"/f/a/{i:04d}", "synced_t": 1})
            decoded[0] = 0
            assert cache.folders("/f/")["folders"][0]["completion"]["p"]["files_ok"] == 1000
            assert cache.completion()["p"]["files_wanted"] == 2000
            assert decoded[0] <= 2 * n + 2
    finally:
        tracker.close()


def test_a_rare_state_is_found_without_reading_the_store(tmp_path, decoded):
    tracker = open_tracker("lmdb", tmp_path)
    try:
        tracker.storage.insert_many(VOLUMES)
        tracker.storage.insert_many(
            [
                {"_id": f"/f/{i:04d}", "origin": "p", "time": 5, "synced_t": 5, "sync_t": True}
                for i in range(3000)
            ]
        )
        tracker.update(
            {"_id": "/f/2990", "time": 9, "syncError_t": 23}
        )  # the one error, near the end
        cache = CompletionCache(tracker)
        cache.completion()
        errors = Filters(prefix="/f/", states=("error",), limit=1)
        decoded[0] = 0
        got = page(tracker, errors, cache.sites, cache)
        assert [r["_id"] for r in got["files"]] == ["/f/2990"] and got["next"] is None
        assert decoded[0] <= 3  # the changed file and the page's one
        decoded[0] = 0
        assert page(tracker, errors)["files"] == got["files"]
        assert decoded[0] >= 2990  # without the cache: every file before it
    finally:
        tracker.close()


def test_a_state_page_goes_on_where_the_reading_in_order_would(tracker):
    tracker.storage.insert_many(VOLUMES)
    tracker.storage.insert_many(
        [{"_id": f"/f/{i:02d}", "origin": "p", "time": 9, "sync_t": True,
          **({"syncError_t": 23} if i % 3 == 0 else {})} for i in range(20)]
    )  # fmt: skip
    cache = CompletionCache(tracker)
    filters, seen = Filters(prefix="/f/", states=("error",), limit=2), []
    while True:
        got = page(tracker, filters, cache.sites, cache)
        assert got == page(tracker, filters)
        seen += [r["_id"] for r in got["files"]]
        if got["next"] is None:
            break
        filters = Filters(prefix="/f/", states=("error",), limit=2, **got["next"])
    assert seen == [f"/f/{i:02d}" for i in range(0, 20, 3)]


def test_a_common_state_is_found_without_reading_the_store(tmp_path, decoded):
    tracker = open_tracker("lmdb", tmp_path)
    try:
        tracker.storage.insert_many(VOLUMES)
        tracker.storage.insert_many(
            [{"_id": f"/f/{i:04d}", "origin": "p", "time": 5, "sync_t": True} for i in range(3000)]
        )  # every file queued at t
        cache = CompletionCache(tracker)
        cache.completion()
        tracker.update({"_id": "/f/2000", "synced_t": 5})  # one of them copied since
        queued = Filters(states=("queued",), skip=1995, limit=10)
        decoded[0] = 0
        got = page(tracker, queued, cache.sites, cache)
        assert [r["_id"] for r in got["files"]] == [
            f"/f/{i:04d}" for i in (1995, 1996, 1997, 1998, 1999, 2001, 2002, 2003, 2004, 2005)
        ]
        assert got["next"] == {"skip": 2006}
        assert decoded[0] <= 12  # the changed file and the page's ten
        assert page(tracker, queued) == got  # what reading every file in order gives
    finally:
        tracker.close()


def test_a_full_read_that_fails_is_made_again_at_the_next_call(tracker, monkeypatch):
    tracker.storage.insert_many(VOLUMES)
    tracker.publish({"_id": "/x", "origin": "p", "comment": "c", "file_size": 3})
    tracker.publish({"_id": "/y", "origin": "p", "comment": "c", "file_size": 4})
    cache = CompletionCache(tracker)
    scan = tracker.storage.scan

    def failing():
        for i, element in enumerate(scan()):
            if i == 1:
                raise OSError("disk gone")
            yield element

    monkeypatch.setattr(tracker.storage, "scan", failing)
    with pytest.raises(OSError):
        cache.completion()
    monkeypatch.setattr(tracker.storage, "scan", scan)
    assert cache.completion() == status(tracker)["completion"]
    assert cache.completion()["p"]["files_ok"] == 2
