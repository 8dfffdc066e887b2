"""Queries pinning ``_id`` to a prefix, with skip and limit: the same answer on every
backend, and on LMDB a read of that key range only, stopping once the page is full."""

from __future__ import annotations

import pytest
import re2
from damas_core.backends.base import id_prefix
from damas_core.sync.status import files_node

from damas_core.query.ast import And, Regex
from damas_core.query.parser import parse

# Ids a prefix scan must order right: neighbours of the prefix on both sides, non-ASCII,
# and long ids whose LMDB keys end with a digest (their first 478 bytes shared).
LONG = "/s/" + "x" * 600
IDS = [
    "/r",
    "/s",
    "/s/",
    "/s/a",
    "/s/a/1",
    "/s/a/2",
    "/s/b",
    "/s/é",
    "/s/\U0001f600",
    LONG + "a",
    LONG + "c",
    LONG[:478] + "b",
    LONG[:478] + "z",  # after the long ids by _id, before them by LMDB key
    LONG[:478] + "y" * 20,
    LONG[:478],
    LONG[:477] + "y",
    "/s0",
    "/sa",
    "/t/a",
]


@pytest.fixture
def store(tracker):
    storage = tracker.storage
    storage.insert_many([{"_id": i, "n": k % 3} for k, i in enumerate(IDS)])
    return storage


def prefixed(prefix: str, rest: str = "*") -> And:
    """``rest`` under ``prefix``, spelled as the status module's folder filter is."""
    return And((parse(rest), Regex(("_id",), "^" + re2.escape(prefix), "")))


def expected(prefix: str, keep=lambda i: True) -> list[str]:
    return sorted(i for i in IDS if i.startswith(prefix) and keep(i))


@pytest.mark.parametrize("prefix", ["/s/", "/s", "/s/a", "/s/a/", LONG[:478], LONG, "/nope", "/"])
@pytest.mark.parametrize(
    ("skip", "limit"), [(0, None), (0, 1), (0, 3), (2, 2), (1, 100), (5, 1), (9, 1), (10, 2)]
)
def test_a_prefix_query_gives_the_ids_under_it_in_order(store, prefix, skip, limit):
    want = expected(prefix)[skip : None if limit is None else skip + limit]
    query = prefixed(prefix)
    assert store.find(query, (), skip, limit) == want
    assert store.find(query, (("_id", 1),), skip, limit) == want
    assert [e["_id"] for e in store.find_elements(query, (), skip, limit)] == want
    assert store.count(query) == len(expected(prefix))


@pytest.mark.parametrize(("skip", "limit"), [(0, 2), (1, 3), (0, None)])
def test_a_prefix_with_other_terms_and_sorts(store, skip, limit):
    n_of = {i: k % 3 for k, i in enumerate(IDS)}
    query = prefixed("/s/", "n:1")
    ones = expected("/s/", lambda i: n_of[i] == 1)
    end = None if limit is None else skip + limit
    assert store.find(query, (), skip, limit) == ones[skip:end]
    assert store.find(query, (("_id", -1),), skip, limit) == ones[::-1][skip:end]
    assert store.count(query) == len(ones)


@pytest.mark.parametrize(("skip", "limit"), [(0, 1), (2, 4), (3, 100), (8, 1), (9, 2)])
def test_a_limit_without_prefix_keeps_id_order(store, skip, limit):
    # a scan that stops early must still give the first matches in _id order
    n_of = {i: k % 3 for k, i in enumerate(IDS)}
    want = sorted(i for i in IDS if n_of[i] != 2)[skip : skip + limit]
    assert store.find(parse("-n:2"), (), skip, limit) == want


def test_the_status_prefix_filter_is_a_prefix_the_stores_see():
    assert id_prefix(files_node("type:shot", "/shots/s 01/")) == "/shots/s 01/"
    assert id_prefix(parse(r"_id:/^\/a\/b/i")) is None  # case-insensitive: not a range
    assert id_prefix(parse(r"_id:/^\/a/m")) is None  # ^ at any line
    assert id_prefix(parse(r"_id:/^\/a/ OR x:1")) is None
    assert id_prefix(parse(r"_id:/^\/ab?/")) is None
    assert id_prefix(parse(r"_id:/^\/a\x2fb/")) == "/a/b"


# -- on LMDB: the key range only --------------------------------------------------------


@pytest.fixture
def big_lmdb(make_tracker, backend):
    if backend != "lmdb":
        pytest.skip("the key range is LMDB's")
    storage = make_tracker().storage
    storage.insert_many(
        [{"_id": f"/{d}/{k:04d}", "n": k % 2} for d in ("a", "b", "c") for k in range(1000)]
        + [{"_id": f"/bb/{k}"} for k in range(10)]
    )
    return storage


def test_lmdb_reads_only_the_prefix_range(big_lmdb, decoded):
    query = prefixed("/bb/")
    assert big_lmdb.count(query) == 10
    assert decoded[0] == 10
    decoded[0] = 0
    assert len(big_lmdb.find_elements(query, (("_id", -1),))) == 10
    assert decoded[0] == 10


def test_lmdb_stops_once_the_page_is_full(big_lmdb, decoded):
    page = big_lmdb.find_elements(prefixed("/b/", "n:1"), (("_id", 1),), 100, 10)
    assert [e["_id"] for e in page] == [f"/b/{k:04d}" for k in range(201, 221, 2)]
    assert decoded[0] == 220  # the range up to the page's last match, not the store
    decoded[0] = 0
    assert len(big_lmdb.find(parse("n:1"), (), 0, 5)) == 5
    assert decoded[0] == 10
