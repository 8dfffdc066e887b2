"""Several processes on one store: lock and publish races have exactly one winner,
and a process killed in the middle of a bulk create leaves all or none of it.

Processes are started with ``spawn`` (a store is never shared across ``fork``). Each
backend that promises multi-process safety adds its URL template to ``STORE_URLS``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

import damas_core
from tests.conftest import backend_url

# ``{tmp}`` is replaced by a fresh directory for each test.
STORE_URLS: list[str] = [
    "lmdb://{tmp}/store",
    "tinydb://{tmp}/store.json",
    "sqlite://{tmp}/store.db",
]

PROCESSES = 4
ROUNDS = 5
BULK = 100_000

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

spawn = multiprocessing.get_context("spawn")


@pytest.fixture(params=[*STORE_URLS, "postgresql"], ids=lambda u: u.split(":", 1)[0])
def url(request, tmp_path) -> str:
    if request.param == "postgresql":  # a server the tests start, see tests/conftest.py
        return backend_url("postgresql", tmp_path)
    return request.param.format(tmp=tmp_path)


def _run(target, args_per_process: list[tuple]) -> list:
    """Start one spawned process per argument tuple; the values they put on a queue."""
    queue = spawn.Queue()
    procs = [spawn.Process(target=target, args=(*args, queue)) for args in args_per_process]
    for p in procs:
        p.start()
    results = [queue.get(timeout=90) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0, f"worker exited with {p.exitcode}"
    return results


def _locker(url: str, user: str, barrier, queue) -> None:
    with damas_core.open(url) as tracker:
        session = tracker.as_user(user)
        out = []
        for r in range(ROUNDS):
            ids = [f"/r{r}/{n}" for n in range(3)]
            if int(user[1:]) % 2:
                ids.reverse()  # different orders must not deadlock or split the set
            barrier.wait()
            out.append(session.lock(ids))
        queue.put((user, out))


def test_lock_race_has_one_winner_and_never_a_split_set(url):
    with damas_core.open(url) as tracker:
        tracker.create([{"_id": f"@u{i}", "class": "user"} for i in range(PROCESSES)])
        tracker.create([{"_id": f"/r{r}/{n}"} for r in range(ROUNDS) for n in range(3)])
    barrier = spawn.Barrier(PROCESSES)
    results = dict(_run(_locker, [(url, f"u{i}", barrier) for i in range(PROCESSES)]))
    with damas_core.open(url) as tracker:
        for r in range(ROUNDS):
            winners = [u for u, wins in results.items() if wins[r]]
            assert len(winners) == 1, f"round {r}: winners {winners}"
            locks = {e["lock"] for e in tracker.read([f"/r{r}/{n}" for n in range(3)])}
            assert locks == {winners[0]}


def _publisher(url: str, name: str, barrier, queue) -> None:
    with damas_core.open(url) as tracker:
        out = []
        for r in range(ROUNDS):
            barrier.wait()
            e = tracker.publish({"_id": f"/race/{r}.exr", "comment": name, "origin": name})
            out.append(e is not None)
        queue.put((name, out))


def test_publish_race_has_one_winner_with_its_history(url):
    barrier = spawn.Barrier(PROCESSES)
    results = dict(_run(_publisher, [(url, f"site{i}", barrier) for i in range(PROCESSES)]))
    with damas_core.open(url) as tracker:
        for r in range(ROUNDS):
            path = f"/race/{r}.exr"
            winners = [n for n, wins in results.items() if wins[r]]
            assert len(winners) == 1, f"round {r}: winners {winners}"
            assert tracker.read(path)["origin"] == winners[0]
            children = tracker.search_mongo({"#parent": path})["ids"]
            assert len(children) == 1
            assert tracker.read(children[0])["comment"] == winners[0]


def _bulk_creator(url: str, writing, done) -> None:
    with damas_core.open(url) as tracker:
        batch = [
            {"_id": f"/bulk/{i:06d}.exr", "#parent": f"/shots/{i % 100}", "file_size": i}
            for i in range(BULK)
        ]
        # Set once the batch is checked and prepared, just before the storage write.
        tracker.on("pre-create", lambda session, items: writing.set())
        tracker.create(batch)
        done.set()
        # Stay alive so the kill always lands on a live process, whatever the timing.
        time.sleep(120)


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.9])
def test_kill_during_bulk_create_leaves_all_or_none(url, delay):
    with damas_core.open(url) as tracker:
        tracker.create({"_id": "/before.txt"})
    writing, done = spawn.Event(), spawn.Event()
    p = spawn.Process(target=_bulk_creator, args=(url, writing, done))
    p.start()
    assert writing.wait(60), "the writer never started writing"
    time.sleep(delay)
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    with damas_core.open(url) as tracker:
        stored = tracker.search_mongo({"_id": {"$regex": "^/bulk/"}})["count"]
        assert stored in (0, BULK), f"{stored} of {BULK} elements survived the kill"
        if done.is_set():
            assert stored == BULK
        children = tracker.search_mongo({"#parent": "/shots/7"})["count"]
        assert children == stored // 100
        assert tracker.read("/before.txt") is not None
        # The killed writer's lock is released: the store takes writes again.
        assert tracker.create({"_id": "/after.txt"}) is not None
