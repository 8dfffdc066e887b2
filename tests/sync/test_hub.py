"""A hub serving two storages that run nothing but sshd and rsync, for real.

The storages (``st1``: a shell with GNU find; ``st2``: a key restricted with ``rrsync``)
are each in their own network namespace with their own sshd, their files only
visible through ssh (tests/sync/storages.py). The hub's volume is a folder here.
The tests of this module run in order on the same storages and tracker.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from damas_core.sync import activity
from damas_core.sync.hub_run import Hub, Opened
from damas_core.sync.volumes import create_volume, set_global_parameters

import damas_core

from .storages import storages_fixture

storages = storages_fixture({"st1": "find", "st2": "rrsync"})

HOSTILE = [
    "/a b.txt",
    "/$(touch canary).txt",
    "/`id`.txt",
    "/semi;colon.txt",
    "/quo'te\".txt",
    "/-leading.txt",
    "/#hash.txt",
    "/;first.txt",
    "/dir with space/-x/ü.txt",
]
#: names every scan skips (logged), never published: not UTF-8, a control character
SKIPPED = {b"latin\xe9.txt": b"skipped", b"new\nline.txt": b"skipped"}


class Env:
    def __init__(self, storages, tmp: Path) -> None:
        self.storages = storages
        self.tracker = damas_core.open(f"lmdb://{tmp}/store")
        self.hub_root = tmp / "hub"
        self.hub_root.mkdir()
        t = self.tracker
        create_volume(t, {"_id": "vol_hub", "name": "hub", "url": f"file://{self.hub_root}/"})
        st1, st2 = storages["st1"], storages["st2"]
        create_volume(t, {"_id": "vol_st1", "name": "st1", "url": st1.url, "hub": "vol_hub"})
        # rrsync: the url's path is below the folder the key is restricted to
        url2 = f"ssh://root@{st2.address}:22/"
        create_volume(t, {"_id": "vol_st2", "name": "st2", "url": url2, "hub": "vol_hub"})
        set_global_parameters(t, {"syncEverywhere": True, "retryDelay": 0})
        self.hub = Hub(
            lambda: Opened(self.tracker),
            "vol_hub",
            state_dir=tmp / "state",
            ssh_command=storages.ssh,
            settle=0,
        )

    def cycle(self, rounds: int = 1) -> dict:
        for _ in range(rounds):
            out = self.hub.run_once()
        return out


@pytest.fixture(scope="module")
def env(storages, tmp_path_factory):
    e = Env(storages, tmp_path_factory.mktemp("hubenv"))
    yield e
    e.tracker.close()


def test_files_at_one_storage_reach_the_other_and_the_hub(env):
    st1, st2 = env.storages["st1"], env.storages["st2"]
    files = {name: f"content of {name!r}".encode() for name in HOSTILE}
    files.update({f"/many/f{i:03d}.txt": f"{i}".encode() * (i % 7) for i in range(190)})
    st1.write({k.lstrip("/"): v for k, v in files.items()}, mtime=1_700_000_000.123456)
    st1.write(SKIPPED)
    first = env.cycle()
    assert sorted(first["vol_st1"]["published"]) == sorted(files)
    assert first["vol_st1"]["emitted"] and not first["vol_st1"]["failed"], first["vol_st1"]
    second = env.cycle()
    assert not second["vol_st2"]["failed"], second["vol_st2"]
    expected = {os.fsencode(k.lstrip("/")): v for k, v in files.items()}
    got = st2.read()
    assert got == expected
    for name, data in files.items():
        assert (env.hub_root / name.lstrip("/")).read_bytes() == data
        el = env.tracker.read(name)
        assert el["origin"] == "st1"
        assert el["synced_st2"] == el["time"] and el["synced_hub"] == el["time"]
    # nothing ran a name: no canary anywhere
    assert not any(k == b"canary" for k in st1.read())
    assert not (Path.cwd() / "canary").exists()
    # the decoys at the storages' paths on the hub machine were never published
    assert env.tracker.search("file_size:* origin:st1 _id:/decoy/") == []
    assert env.tracker.read("/decoy.txt") is None
    # a third cycle changes nothing: no precision difference is a change
    third = env.cycle()
    for vid in ("vol_st1", "vol_st2", "vol_hub"):
        r = third[vid]
        assert not (r["published"] or r["modified"] or r["received"] or r["emitted"]), (vid, r)


def test_connection_state_is_recorded(env):
    for vid, kind in (("vol_st1", "find"), ("vol_st2", "rsync")):
        vol = env.tracker.read(vid)
        assert vol["connectionStatus"] == "ok" and vol["error"] == 0
        assert vol["lastConnectionSuccess"] == vol["lastConnectionAttempt"]
        assert vol["storageKind"] == kind
        assert vol["agentStatus"] == "idle"
    assert env.tracker.read("vol_st1")["bytesTotal"] > 0
    assert "bytesTotal" not in env.tracker.read("vol_st2")  # rsync only: no df
    assert env.tracker.read("vol_st1")["mtimePrecision"] == 1
    assert env.tracker.read("vol_st2")["mtimePrecision"] == 1_000_000_000


def test_a_file_written_at_the_rrsync_storage_travels(env):
    st1, st2 = env.storages["st1"], env.storages["st2"]
    st2.write({"from st2/x.txt": b"written at st2"}, mtime=1_700_000_100.987654)
    env.cycle(2)
    assert st1.read()[b"from st2/x.txt"] == b"written at st2"
    el = env.tracker.read("/from st2/x.txt")
    assert el["origin"] == "st2" and el["synced_st1"] == el["time"]


def test_a_modification_travels(env):
    st1, st2 = env.storages["st1"], env.storages["st2"]
    st1.write({"a b.txt": b"changed at st1"}, mtime=1_700_000_200.5)
    r = env.cycle(2)
    assert st2.read()[b"a b.txt"] == b"changed at st1", r["vol_st2"]
    el = env.tracker.read("/a b.txt")
    assert el["modified_st1"] and el["synced_st2"] == el["time"]


def test_a_storage_going_offline_does_not_stop_the_other(env):
    st1, st2 = env.storages["st1"], env.storages["st2"]
    st2.stop()
    try:
        st1.write({"while st2 was down.txt": b"d"})
        r = env.cycle()
        assert r["vol_st1"]["emitted"] == ["/while st2 was down.txt"]
        assert r["vol_st2"]["scan_errors"], r["vol_st2"]
        vol = env.tracker.read("vol_st2")
        assert vol["connectionStatus"] == "unreachable" and vol["error"] == 255
        assert vol["lastConnectionStatusChange"] == vol["lastConnectionAttempt"]
        assert vol["lastConnectionSuccess"] < vol["lastConnectionAttempt"]
        el = env.tracker.read("/while st2 was down.txt")
        assert "syncError_st2" not in el  # nothing attempted: no per-file 255
        events = [e["event"] for e in activity.log(env.tracker, ["vol_st2"])]
        assert events[-1] == "unreachable"
    finally:
        env.storages.restart("st2")
    env.hub._stop.clear()
    r = env.cycle()
    # the probe's back-off is per agent: a fresh cycle probes at once
    assert env.tracker.read("vol_st2")["connectionStatus"] == "ok", r["vol_st2"]
    assert st2.read()[b"while st2 was down.txt"] == b"d"
    assert [e["event"] for e in activity.log(env.tracker, ["vol_st2"])][-1] == "reachable"
