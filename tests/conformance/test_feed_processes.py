"""The change feed with several processes on one store: writers get distinct,
increasing numbers and every write appears, a reader in another process reading
on from its position misses nothing, and a writer killed in the middle of a bulk
insert leaves the feed and the elements agreeing (all or none).

Storage level, processes started with ``spawn``, on every backend that promises
multi-process safety.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest
from damas_core.backends.base import Patch

from damas_core.query.ast import Cmp
from damas_core.registry import open_storage
from tests.conftest import backend_url

STORE_URLS = ["lmdb://{tmp}/store", "sqlite://{tmp}/store.db", "tinydb://{tmp}/store.json"]
WRITERS = 2
WRITES = 150  # per writer, one call each
BULK = 100_000

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

spawn = multiprocessing.get_context("spawn")


@pytest.fixture(params=[*STORE_URLS, "postgresql"], ids=lambda u: u.split(":", 1)[0])
def url(request, tmp_path) -> str:
    if request.param == "postgresql":  # a server the tests start, see tests/conftest.py
        return backend_url("postgresql", tmp_path)
    return request.param.format(tmp=tmp_path)


def _writer(url: str, name: str, start, queue) -> None:
    """Create, patch and delete elements of its own, one call each, plus patches of a
    shared element; report how many changes it made."""
    store = open_storage(url)
    start.wait(30)
    changes = 0
    for i in range(WRITES):
        changes += store.insert_many([{"_id": f"/{name}/{i:04d}"}]).count(True)
        if i % 3 == 0:
            changes += store.patch_many([Patch(f"/{name}/{i:04d}", set={"n": i})]).count(True)
        if i % 5 == 0:
            changes += store.delete_many([f"/{name}/{i // 2:04d}"]).count(True)
        changes += store.patch_many([Patch("/shared", set={name: i})]).count(True)
    store.close()
    queue.put(changes)


def _reader(url: str, stop, queue) -> None:
    """Read on from its position until told to stop, then once more; report every
    page it got."""
    store = open_storage(url)
    since, pages = 0, []
    while True:
        stopping = stop.is_set()
        last, page = store.changes(since, 7)
        pages.append((since, last, page))
        since = last
        if stopping and not page:
            break
    store.close()
    queue.put(pages)


def test_writers_in_processes_get_distinct_increasing_numbers(url):
    with open_storage(url) as store:
        store.insert_many([{"_id": "/shared"}])
    start, stop, queue = spawn.Event(), spawn.Event(), spawn.Queue()
    writers = [
        spawn.Process(target=_writer, args=(url, f"w{k}", start, queue)) for k in range(WRITERS)
    ]
    reader = spawn.Process(target=_reader, args=(url, stop, queue))
    for p in [*writers, reader]:
        p.start()
    start.set()
    made = [queue.get(timeout=150) for _ in writers]
    stop.set()
    pages = queue.get(timeout=60)
    for p in [*writers, reader]:
        p.join(30)
        assert p.exitcode == 0
    with open_storage(url) as store:
        last, feed = store.changes(0, 100_000)
        stored = {e["_id"] for e in store.scan()}
    # Every change numbered once, with no number given twice or skipped.
    assert last == 1 + sum(made)
    seqs = [s for s, _, _ in feed]
    assert seqs == sorted(set(seqs))
    assert {i for _, i, d in feed if not d} == stored
    assert {i for _, i, d in feed if d} == {
        f"/w{k}/{i // 2:04d}" for k in range(WRITERS) for i in range(0, WRITES, 5)
    }
    # The reader went forward only, and what it read adds up to the final feed.
    seen: dict[str, tuple[int, bool]] = {}
    for since, after, page in pages:
        assert all(s > since for s, _, _ in page) and after >= since
        for s, i, d in page:
            seen[i] = (s, d)
    assert sorted((s, i, d) for i, (s, d) in seen.items()) == feed


def _bulk_inserter(url: str, writing, done) -> None:
    store = open_storage(url)
    batch = [{"_id": f"/bulk/{i:06d}.exr", "#parent": f"/shots/{i % 100}"} for i in range(BULK)]
    writing.set()
    store.insert_many(batch)
    done.set()
    time.sleep(120)  # stay alive so that the kill always lands on a live process


@pytest.mark.parametrize("delay", [0.05, 0.4, 1.0])
def test_kill_during_a_bulk_insert_leaves_feed_and_elements_agreeing(url, delay):
    if url.startswith("tinydb") and delay > 0.05:
        pytest.skip("one case is enough for TinyDB's whole-file writes")
    with open_storage(url) as store:
        store.insert_many([{"_id": "/before"}])
    writing, done = spawn.Event(), spawn.Event()
    p = spawn.Process(target=_bulk_inserter, args=(url, writing, done))
    p.start()
    assert writing.wait(60), "the writer never started"
    time.sleep(delay)
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    with open_storage(url) as store:
        stored = store.count(Cmp(("_id",), ">=", "/bulk/"))
        assert stored in (0, BULK)
        if done.is_set():
            assert stored == BULK
        last, feed = store.changes(0, 2 * BULK)
        assert len(feed) == 1 + stored
        assert last == 1 + stored
        assert {i for _, i, _ in feed} == {e["_id"] for e in store.scan()}
        # The killed writer holds nothing: the store takes writes and numbers them on.
        assert store.insert_many([{"_id": "/after"}]) == [True]
        assert store.changes(last, 10) == (last + 1, [(last + 1, "/after", False)])
