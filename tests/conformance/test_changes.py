"""The change feed at the operation level (``Tracker.changes``, ``on("change")``), on
every backend; the HTTP parity run repeats the ``tracker`` tests through the client.

The storage-level rules (numbering, tombstones, processes, crashes) are tested in
test_storage.py, test_feed_processes.py and tests/property/test_feed.py.
"""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import threading
import time

import pytest

from damas_core.errors import BadRequest
from tests.conftest import backend_url

FILE_STORES = ("lmdb", "sqlite", "tinydb", "postgresql")


def entries(answer):
    return [(c["_id"], c["deleted"]) for c in answer["changes"]]


# -- what the feed holds ----------------------------------------------------------------


def test_each_id_once_at_its_latest_change_in_seq_order(tracker):
    tracker.create([{"_id": "/a"}, {"_id": "/b"}, {"_id": "/c"}])
    tracker.update({"_id": "/a", "n": 1})
    tracker.delete("/b")
    tracker.update({"_id": "/a", "n": 2})
    answer = tracker.changes()
    assert entries(answer) == [("/c", False), ("/b", True), ("/a", False)]
    seqs = [c["seq"] for c in answer["changes"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert answer["last_seq"] == seqs[-1]
    assert "reset" not in answer
    # Nothing new after the end.
    assert tracker.changes(since=answer["last_seq"]) == {
        "last_seq": answer["last_seq"],
        "changes": [],
    }


def test_since_gives_only_what_came_after(tracker):
    tracker.create([{"_id": "/a"}, {"_id": "/b"}])
    mark = tracker.changes()["last_seq"]
    tracker.update({"_id": "/b", "k": 1})
    tracker.create({"_id": "/c"})
    assert entries(tracker.changes(since=mark)) == [("/b", False), ("/c", False)]


def test_reading_on_from_last_seq_in_pages_gives_every_change_once(tracker):
    ids = [f"/f{i:02}" for i in range(23)]
    tracker.create([{"_id": i} for i in ids])
    tracker.update([{"_id": i, "v": 1} for i in ids[::3]])
    tracker.delete(ids[1::5])
    whole = tracker.changes(limit=1000)
    since, paged = 0, []
    while True:
        page = tracker.changes(since, limit=4)
        assert len(page["changes"]) <= 4
        if page["last_seq"] == since:
            break
        paged.extend(page["changes"])
        since = page["last_seq"]
    assert paged == whole["changes"]
    assert sorted(c["_id"] for c in paged) == ids


def test_elements_are_the_current_elements_as_read(tracker):
    tracker.create([{"_id": "/a", "n": 1}, {"_id": "/b"}])
    tracker.update({"_id": "/a", "n": 2})
    tracker.delete("/b")
    answer = tracker.changes(elements=True)
    by_id = {c["_id"]: c for c in answer["changes"]}
    assert by_id["/a"]["element"] == tracker.read("/a")
    assert by_id["/a"]["element"]["n"] == 2
    assert "element" not in by_id["/b"]  # a tombstone has none
    assert all("element" not in c for c in tracker.changes()["changes"])  # only if asked


def test_every_operation_shows_in_the_feed(tracker):
    tracker.create({"_id": "/x"})
    mark = tracker.changes()["last_seq"]
    files = tracker.publish({"_id": "/shot.exr", "comment": "first", "origin": "paris"})
    assert files["_id"] == "/shot.exr"
    assert tracker.lock("/x") is True
    made = tracker.comment({"#parent": "/x", "comment": "ok"})
    answer = tracker.changes(since=mark)
    ids = [c["_id"] for c in answer["changes"]]
    assert "/shot.exr" in ids and "/x" in ids and made["_id"] in ids
    history = [i for i in ids if i not in ("/shot.exr", "/x", made["_id"])]
    assert len(history) == 1  # the publish's history child
    assert tracker.unlock("/x") is True
    assert entries(tracker.changes(since=answer["last_seq"])) == [("/x", False)]


def test_writes_that_change_nothing_are_not_in_the_feed(tracker):
    tracker.create({"_id": "/a"})
    mark = tracker.changes()["last_seq"]
    assert tracker.create({"_id": "/a"}) is None
    assert tracker.update({"_id": "/nope", "k": 1}) is None
    assert tracker.delete("/nope") is None
    assert tracker.changes(since=mark) == {"last_seq": mark, "changes": []}


# -- who sees what ------------------------------------------------------------------------


def test_internal_ids_are_left_out_but_last_seq_moves_past_them(system):
    system.create({"_id": "/a"})
    mark = system.changes()["last_seq"]
    system.set_setting("anything", 1)  # the settings element, ~damas
    answer = system.changes(since=mark)
    assert answer["changes"] == []
    assert answer["last_seq"] > mark
    # A page cut short by the limit on a hidden entry still moves on.
    system.create({"_id": "/b"})
    first = system.changes(since=mark, limit=1)
    assert first == {"last_seq": answer["last_seq"], "changes": []}
    assert entries(system.changes(since=first["last_seq"])) == [("/b", False)]
    assert all(not c["_id"].startswith("~") for c in system.changes()["changes"])


def test_a_guest_reads_the_feed_with_its_read_rights(system):
    system.create({"_id": "@gus", "class": "guest", "password": "pw", "email": "g@x"})
    system.create({"_id": "/a"})
    guest = system.as_user("gus")
    answer = guest.changes(elements=True)
    by_id = {c["_id"]: c for c in answer["changes"]}
    assert set(by_id) == {"@gus", "/a"}
    assert "password" not in by_id["@gus"]["element"]
    assert by_id["@gus"]["element"] == guest.read("@gus")  # the read path's view
    assert answer["last_seq"] == system.changes()["last_seq"]


def test_private_keys_follow_the_read_path(system):
    volume = {"_id": "/volumes/paris", "name": "paris", "url": "file:///tmp/paris/"}
    system.create(dict(volume, rsync_env={"RSYNC_PASSWORD": "s3cret"}))
    system.create({"_id": "@ula", "class": "user", "password": "pw"})
    ula = system.as_user("ula")
    for session in (system, ula):
        (change,) = [
            c for c in session.changes(elements=True)["changes"] if c["_id"] == volume["_id"]
        ]
        assert change["element"] == session.read(volume["_id"])
    seen_by_ula = [c for c in ula.changes(elements=True)["changes"] if c["_id"] == volume["_id"]]
    assert "rsync_env" not in seen_by_ula[0]["element"]


# -- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"since": -1}, "since"),
        ({"since": "3"}, "since"),
        ({"since": True}, "since"),
        ({"since": 1.5}, "since"),
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"limit": None}, "limit"),
        ({"wait": -1}, "wait"),
        ({"wait": math.nan}, "wait"),
        ({"wait": math.inf}, "wait"),
        ({"wait": "1"}, "wait"),
        ({"elements": "yes"}, "elements"),
        ({"elements": 1}, "elements"),
    ],
)
def test_bad_arguments_are_refused_naming_them(tracker, kwargs, key):
    with pytest.raises(BadRequest) as e:
        tracker.changes(**kwargs)
    assert e.value.op == "changes" and key in str(e.value)


def test_a_long_wait_is_capped():
    from damas_core.operations.changes import check_arguments

    assert check_arguments(0, 1, False, 3600)[3] == 60.0


# -- reset ----------------------------------------------------------------------------------


def test_a_reader_behind_dropped_tombstones_is_reset(make_tracker):
    t = make_tracker(tombstone_retention=0)
    t.create([{"_id": "/a"}, {"_id": "/b"}])
    reader = t.changes()["last_seq"]
    t.delete("/a")
    time.sleep(0.01)  # the tombstone is older than "now" minus a retention of 0
    assert t.feed.compact() == 1
    answer = t.changes(since=reader)
    assert answer == {"last_seq": answer["last_seq"], "changes": [], "reset": True}
    assert answer["last_seq"] >= reader + 1
    # From scratch is a reset too once tombstones went: the feed from 0 lacks them.
    assert t.changes(since=0)["reset"] is True
    # Read everything again, then go on from the reset's last_seq: nothing is missed.
    assert t.search("*") == ["/b"]
    t.create({"_id": "/c"})
    assert entries(t.changes(since=answer["last_seq"])) == [("/c", False)]


def test_the_default_retention_keeps_recent_tombstones(make_tracker):
    t = make_tracker()
    t.create({"_id": "/a"})
    t.delete("/a")
    assert t.feed.compact() == 0
    assert entries(t.changes()) == [("/a", True)]


def test_a_position_beyond_the_store_is_reset(tracker):
    tracker.create({"_id": "/a"})
    answer = tracker.changes(since=1000)
    assert answer["reset"] is True and answer["last_seq"] == tracker.changes()["last_seq"]


def test_bad_retention_is_refused(backend, tmp_path):
    import damas_core

    with pytest.raises(BadRequest, match="tombstone_retention"):
        damas_core.open(backend_url(backend, tmp_path), tombstone_retention=-1)
    with pytest.raises(BadRequest, match="tombstone_retention"):
        damas_core.open(backend_url(backend, tmp_path), tombstone_retention="soon")


# -- wait -----------------------------------------------------------------------------------


def test_wait_returns_empty_when_nothing_comes(tracker):
    tracker.create({"_id": "/a"})
    mark = tracker.changes()["last_seq"]
    assert tracker.changes(since=mark, wait=0.2) == {"last_seq": mark, "changes": []}


def test_wait_returns_at_once_when_changes_are_there(tracker):
    tracker.create({"_id": "/a"})
    started = time.monotonic()
    assert entries(tracker.changes(wait=30)) == [("/a", False)]
    assert time.monotonic() - started < 15  # not held for the wait


def _write_later(write, delay: float = 0.3) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay), write()))
    thread.start()
    return thread


def test_wait_is_woken_by_a_write_in_this_process(tracker):
    tracker.create({"_id": "/a"})
    mark = tracker.changes()["last_seq"]
    writer = _write_later(lambda: tracker.create({"_id": "/b"}))
    started = time.monotonic()
    answer = tracker.changes(since=mark, wait=30)
    writer.join()
    assert entries(answer) == [("/b", False)]
    assert time.monotonic() - started < 15  # woken, not timed out


def test_wait_goes_on_past_hidden_changes(system):
    system.create({"_id": "/a"})
    mark = system.changes()["last_seq"]

    def writes() -> None:
        system.set_setting("x", 1)  # seen by nobody: the wait goes on
        time.sleep(0.2)
        system.create({"_id": "/b"})

    writer = _write_later(writes)
    answer = system.changes(since=mark, wait=30)
    writer.join()
    assert entries(answer) == [("/b", False)]


WRITER = """
import sys, time
import damas_core
time.sleep(float(sys.argv[2]))
t = damas_core.open(sys.argv[1])
t.create({"_id": "/from-another-process"})
t.close()
"""


@pytest.mark.parametrize("store", FILE_STORES)
def test_wait_is_woken_by_a_write_from_another_process(store, tmp_path):
    import damas_core

    url = backend_url(store, tmp_path)
    t = damas_core.open(url)
    try:
        t.create({"_id": "/a"})
        mark = t.changes()["last_seq"]
        writer = subprocess.Popen([sys.executable, "-c", WRITER, url, "0.5"])
        started = time.monotonic()
        answer = t.changes(since=mark, wait=40)
        assert writer.wait(30) == 0
        assert entries(answer) == [("/from-another-process", False)]
        assert time.monotonic() - started < 30  # woken by the poll, not timed out
    finally:
        t.close()


def test_closing_the_tracker_releases_waiters(make_tracker):
    t = make_tracker()
    t.create({"_id": "/a"})
    mark = t.changes()["last_seq"]
    done = []
    waiter = threading.Thread(target=lambda: done.append(t.feed.wait(mark, 30)))
    waiter.start()
    time.sleep(0.1)
    t.feed.close()
    waiter.join(10)
    assert done == [mark]


# -- on("change") ---------------------------------------------------------------------------


def test_change_callbacks_get_each_committed_change(system):
    got = []
    system.on("change", got.append)
    system.create([{"_id": "/a"}, {"_id": "/b"}])
    system.update({"_id": "/a", "n": 1})
    system.delete("/b")
    system.set_setting("hidden", True)
    assert [(c["_id"], c["deleted"]) for c in got] == [
        ("/a", False),
        ("/b", False),
        ("/a", False),
        ("/b", True),
    ]
    assert [c["seq"] for c in got] == sorted(c["seq"] for c in got)
    assert set(got[0]) == {"seq", "_id", "deleted"}


def test_a_failing_change_callback_is_logged_and_undoes_nothing(system, caplog):
    got = []

    def broken(change):
        raise RuntimeError("boom")

    system.on("change", broken)
    system.on("change", got.append)
    with caplog.at_level(logging.ERROR):
        assert system.create({"_id": "/a"})["_id"] == "/a"
    assert system.read("/a") is not None
    assert [c["_id"] for c in got] == ["/a"]
    assert "boom" in caplog.text


def test_a_change_callback_may_write(system):
    got = []

    def follow(change):
        got.append(change["_id"])
        if change["_id"] == "/a":
            system.create({"_id": "/echo"})

    system.on("change", follow)
    system.create({"_id": "/a"})
    system.create({"_id": "/b"})
    assert got == ["/a", "/echo", "/b"]


def test_change_callbacks_see_other_processes_writes(tmp_path):
    import damas_core

    url = backend_url("lmdb", tmp_path)
    t = damas_core.open(url)
    try:
        got = []
        arrived = threading.Event()
        t.on("change", lambda c: (got.append(c["_id"]), arrived.set()))
        writer = subprocess.Popen([sys.executable, "-c", WRITER, url, "0"])
        assert writer.wait(30) == 0
        assert arrived.wait(20)
        assert got == ["/from-another-process"]
    finally:
        t.close()
