"""What is particular to the TinyDB backend: TinyDB's file format (the feed's table
included), atomic writes, several processes, broken files. The storage contract itself
is checked on every backend by tests/conformance/test_storage.py."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path
from unittest.mock import ANY

import pytest
from damas_core.backends.base import Patch
from damas_core.backends.tinydb import TinyDBStorage, path_from_url
from tinydb import TinyDB

from damas_core.errors import StorageError
from damas_core.ordering import MISSING
from damas_core.query.ast import Eq

spawn = multiprocessing.get_context("spawn")


@pytest.fixture
def path(tmp_path) -> str:
    return str(tmp_path / "db.json")


@pytest.fixture
def store(path):
    s = TinyDBStorage(f"tinydb://{path}")
    yield s
    s.close()


def test_urls_absolute_and_relative(tmp_path, monkeypatch):
    assert path_from_url("tinydb:///srv/x/db.json") == "/srv/x/db.json"
    monkeypatch.chdir(tmp_path)
    assert path_from_url("tinydb://rel/db.json") == str(tmp_path / "rel" / "db.json")
    s = TinyDBStorage("tinydb://rel/db.json")
    s.insert_many([{"_id": "/a"}])
    s.close()
    assert (tmp_path / "rel" / "db.json").exists()


def test_file_is_tinydb_format_both_ways(store, path):
    store.insert_many([{"_id": "/a", "n": 1}, {"_id": "/b", "tags": ["x"], "#parent": "/a"}])
    db = TinyDB(path)
    assert sorted(d["_id"] for d in db.all()) == ["/a", "/b"]
    # TinyDB itself writes to the file: we pick it up, with its document id.
    db.insert({"_id": "/c", "from": "tinydb"})
    db.close()
    assert store.get("/c") == {"_id": "/c", "from": "tinydb"}
    store.insert_many([{"_id": "/d"}])
    with open(path) as f:
        table = json.load(f)["_default"]
    assert sorted(table) == ["1", "2", "3", "4"]


def test_other_tables_are_kept(path):
    with open(path, "w") as f:
        json.dump({"_default": {}, "notes": {"1": {"text": "keep me"}}}, f)
    s = TinyDBStorage(f"tinydb://{path}")
    s.insert_many([{"_id": "/a"}])
    s.close()
    with open(path) as f:
        assert json.load(f)["notes"] == {"1": {"text": "keep me"}}


def test_a_multi_element_call_and_a_block_write_the_file_once(store, path, monkeypatch):
    writes = []
    real = TinyDBStorage._write
    monkeypatch.setattr(TinyDBStorage, "_write", lambda self: (writes.append(1), real(self)))
    store.insert_many([{"_id": f"/{i}"} for i in range(50)])
    assert len(writes) == 1
    with store.transaction():
        store.insert_many([{"_id": "/x"}])
        store.patch_many([Patch("/x", set={"n": 1})])
        store.delete_many(["/0", "/1"])
    assert len(writes) == 2
    store.get_many(["/x"])
    store.patch_many([Patch("/nope", set={"n": 1})])  # changes nothing: no write
    assert len(writes) == 2


def test_failed_block_changes_neither_memory_nor_file(store, path):
    store.insert_many([{"_id": "/a", "n": 1}])
    before = Path(path).read_bytes()
    with pytest.raises(RuntimeError), store.transaction():
        store.insert_many([{"_id": "/b"}])
        store.patch_many([Patch("/a", set={"n": 2})])
        store.delete_many(["/a"])
        raise RuntimeError("boom")
    assert Path(path).read_bytes() == before
    assert [e for e in store.scan()] == [{"_id": "/a", "n": 1}]
    assert store.find(Eq(("n",), 1)) == ["/a"]


def test_no_partial_file_when_the_write_fails(store, path, monkeypatch):
    store.insert_many([{"_id": "/a"}])
    before = Path(path).read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(StorageError, match="No space left"):
        store.insert_many([{"_id": "/b"}])
    monkeypatch.undo()
    assert Path(path).read_bytes() == before
    assert [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")] == []
    assert store.get("/b") is None


def test_guard_is_checked_against_the_latest_file(path):
    a = TinyDBStorage(f"tinydb://{path}")
    b = TinyDBStorage(f"tinydb://{path}")
    a.insert_many([{"_id": "/f"}])
    assert b.patch_many([Patch("/f", set={"lock": "bob"}, expect={"lock": MISSING})]) == [True]
    # a's memory is stale, but the write transaction reloads first.
    assert a.patch_many([Patch("/f", set={"lock": "al"}, expect={"lock": MISSING})]) == [False]
    assert a.get("/f") == {"_id": "/f", "lock": "bob"}
    a.close()
    b.close()


def test_an_external_edit_is_picked_up(store, path):
    store.insert_many([{"_id": "/a", "n": 1}])
    text = Path(path).read_text().replace('"n":1', '"n":2, "edited":true')
    time.sleep(0.01)
    with open(path, "w") as f:  # in place, as an editor would
        f.write(text)
    assert store.get("/a") == {"_id": "/a", "n": 2, "edited": True}
    assert store.find(Eq(("edited",), True)) == ["/a"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"_default": {\n"1": {"_id": "/a",}\n}}', "line 2 column"),
        ('{"_default": {"1": {"n": 1}}}', "document 1 in table '_default' has no string _id"),
        ('{"_default": {"1": {"_id": "/a"}, "2": {"_id": "/a"}}}', "documents 1 and 2"),
        ("[1, 2]", "JSON object of tables"),
        ('{"_default": {"x": {"_id": "/a"}}}', "is not a number"),
    ],
)
def test_a_broken_file_is_a_clear_error_and_left_untouched(path, content, reason):
    with open(path, "w") as f:
        f.write(content)
    with pytest.raises(StorageError, match=reason) as info:
        TinyDBStorage(f"tinydb://{path}")
    assert path in str(info.value)
    assert Path(path).read_text() == content


def test_a_file_broken_while_open_is_never_overwritten(store, path):
    store.insert_many([{"_id": "/a"}])
    with open(path, "w") as f:
        f.write('{"_default": {"1": {"_id": "/a"')
    with pytest.raises(StorageError, match="line 1 column"):
        store.insert_many([{"_id": "/b"}])
    with pytest.raises(StorageError, match="broken"):
        store.get_many(["/a"])
    assert Path(path).read_text() == '{"_default": {"1": {"_id": "/a"'


def _writer(path: str, name: str, count: int, queue) -> None:
    s = TinyDBStorage(f"tinydb://{path}")
    for i in range(count):
        s.insert_many([{"_id": f"/{name}/{i}"}])
        # read-modify-write through a guard: the counter must not lose increments
        while True:
            n = s.get("/counter")["n"]
            if s.patch_many([Patch("/counter", set={"n": n + 1}, expect={"n": n})]) == [True]:
                break
    s.close()
    queue.put(name)


def test_concurrent_processes_lose_nothing(path):
    s = TinyDBStorage(f"tinydb://{path}")
    s.insert_many([{"_id": "/counter", "n": 0}])
    queue = spawn.Queue()
    procs = [spawn.Process(target=_writer, args=(path, f"w{k}", 25, queue)) for k in range(3)]
    for p in procs:
        p.start()
    assert sorted(queue.get(timeout=60) for _ in procs) == ["w0", "w1", "w2"]
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    assert s.get("/counter") == {"_id": "/counter", "n": 75}
    assert len(list(s.scan())) == 1 + 75
    assert len(TinyDB(path).all()) == 76
    s.close()


def _bulk_writer(path: str, name: str, ready) -> None:
    s = TinyDBStorage(f"tinydb://{path}")
    ready.set()
    round_ = 0
    while True:
        round_ += 1
        batch = [{"_id": f"/{name}-{round_}/{i:05d}", "pad": "x" * 50} for i in range(2000)]
        s.insert_many(batch)


@pytest.mark.slow
def test_kill_mid_write_leaves_a_whole_file(path):
    TinyDBStorage(f"tinydb://{path}").close()
    for k, delay in enumerate((0.05, 0.2, 0.5)):
        ready = spawn.Event()
        p = spawn.Process(target=_bulk_writer, args=(path, f"w{k}", ready))
        p.start()
        assert ready.wait(30)
        time.sleep(delay)
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        # Every round is all there or not at all, and the file parses.
        s = TinyDBStorage(f"tinydb://{path}")
        rounds: dict[str, int] = {}
        for e in s.scan():
            if e["_id"].startswith("/after"):
                continue
            r = e["_id"].split("/")[1]
            rounds[r] = rounds.get(r, 0) + 1
        assert all(n == 2000 for n in rounds.values()), rounds
        s.insert_many([{"_id": f"/after-{delay}"}])  # the lock was released by the kill
        s.close()
    leftovers = [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")]
    assert leftovers == []  # stale temporaries are removed at the next open


def test_sync_false_still_writes_whole_files(path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    s = TinyDBStorage(f"tinydb://{path}?sync=false")
    s.insert_many([{"_id": "/a"}])
    s.close()
    assert synced == []
    assert TinyDB(path).all() == [{"_id": "/a"}]


def test_the_file_follows_every_kind_of_write(store, path):
    """Adds extend the file's text in place, other writes rebuild it: after each step
    TinyDB reads exactly what the store holds."""

    def tinydb_view() -> list[dict]:
        db = TinyDB(path)
        try:
            return sorted(db.all(), key=lambda d: d["_id"])
        finally:
            db.close()

    steps = [
        lambda: store.insert_many([{"_id": "/a", "n": 1}]),
        lambda: store.insert_many([{"_id": "/b"}, {"_id": "/c", "tags": ["x"]}]),
        lambda: store.patch_many([Patch("/a", set={"n": 2})]),
        lambda: store.insert_many([{"_id": "/d"}]),
        lambda: store.delete_many(["/b"]),
        lambda: store.insert_many([{"_id": "/e"}]),
    ]
    for step in steps:
        step()
        assert tinydb_view() == list(store.scan())
    with pytest.raises(RuntimeError), store.transaction():
        store.insert_many([{"_id": "/f"}])
        raise RuntimeError("rolled back")
    store.insert_many([{"_id": "/g"}])
    assert tinydb_view() == list(store.scan())
    assert [e["_id"] for e in tinydb_view()] == ["/a", "/c", "/d", "/e", "/g"]


def test_the_feed_is_a_table_of_the_same_file(store, path):
    store.insert_many([{"_id": "/a"}, {"_id": "/b"}])
    store.delete_many(["/a"])
    content = json.loads(Path(path).read_text())
    assert content["~changes:_default"]["1"]["changes"] == [
        [2, "/b", False, 0],
        [3, "/a", True, ANY],
    ]
    assert TinyDB(path).all() == [{"_id": "/b"}]


def test_an_element_added_by_hand_is_numbered(store, path):
    store.insert_many([{"_id": "/a"}])
    content = json.loads(Path(path).read_text())
    content["_default"]["7"] = {"_id": "/by-hand"}
    with open(path, "w") as f:
        json.dump(content, f)
    assert store.changes(1, 10) == (2, [(2, "/by-hand", False)])
