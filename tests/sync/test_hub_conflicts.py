"""Conflicts at storages driven by a hub, for real: both copies kept ON a storage with a
shell, as at a site with its own agent, and resolved there through the remote guard;
on a storage that allows only rsync the other copy stays at the hub.

The storages are those of tests/sync/test_hub.py (``st1``: a shell with GNU find;
``st2``: rrsync), on their own tracker and hub volume. The tests run in order.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

import pytest
from damas_core.sync.conflicts import conflicts, resolve
from damas_core.sync.site import Refused
from damas_core.sync.ssh_site import SshSite
from damas_core.sync.tree import CONFLICT_MARK

from .storages import storages_fixture
from .test_hub import Env, _damas

storages = storages_fixture({"st1": "find", "st2": "rrsync"})

#: names the remote shell would run, were they not passed word by word
CANARY = "c/$(touch canary) x;y.txt"
DASH = "-lead 'q'.txt"
PLAIN = "c/plain.txt"


@pytest.fixture(scope="module")
def env(storages, tmp_path_factory):
    e = Env(storages, tmp_path_factory.mktemp("conflictenv"))
    e.cycle()
    yield e
    e.tracker.close()


def _storage_site(env: Env, volume_id: str) -> SshSite:
    """The storage as ``resolve`` is given it at the hub: reached with the hub's ssh
    command, its kind found by a probe."""
    vol = env.tracker.read(volume_id)
    site = SshSite(vol, ssh_command=env.storages.ssh)
    assert site.presence(vol)[0] is None
    return site


def _changed_at_both(env: Env, storage: str, names: list[str]) -> None:
    """``names`` written at ``storage`` and relayed to the hub, then changed at the
    hub (published by the hub's own agent) and at the storage."""
    st = env.storages[storage]
    st.write({n: f"first {n}" for n in names}, mtime=1_700_000_000)
    env.relay(f"vol_{storage}", "vol_hub")
    for n in names:
        assert (env.hub_root / n).read_text() == f"first {n}"
    time.sleep(1.1)  # after the second of the sync: an rrsync storage lists seconds
    for n in names:
        (env.hub_root / n).write_text(f"changed at the hub: {n}")
    assert sorted(env.cycle_of("vol_hub")["modified"]) == sorted(f"/{n}" for n in names)
    st.write({n: f"changed at {storage}: {n}" for n in names})


def _no_canary(env: Env) -> None:
    assert not any(k.rsplit(b"/", 1)[-1] == b"canary" for k in env.storages["st1"].read(True))
    assert not any(p.name == "canary" for p in env.hub_root.rglob("*"))
    assert not (Path.cwd() / "canary").exists() and not (Path.home() / "canary").exists()
    assert not Path("/canary").exists()


def test_both_copies_are_kept_on_a_storage_with_a_shell(env):
    st1 = env.storages["st1"]
    names = [CANARY, DASH, PLAIN]
    _changed_at_both(env, "st1", names)
    report = env.cycle_of("vol_st1")
    assert not report["failed"] and not report["refused"], report
    assert sorted(set(report["conflicts"])) == sorted(f"/{n}" for n in names)
    got = st1.read(reserved=True)
    for n in names:
        file_id = f"/{n}"
        el = env.tracker.read(file_id)
        record = el["conflict_st1"]
        assert record["from"] == "hub" and record["local_size"] == len(f"changed at st1: {n}")
        incoming = record["incoming"]
        assert incoming and CONFLICT_MARK.search(incoming)
        assert incoming.rpartition("/")[0] == file_id.rpartition("/")[0]
        # both copies on the storage: its own, and the hub's byte for byte
        assert got[n.encode()] == f"changed at st1: {n}".encode()
        assert got[incoming[1:].encode()] == (env.hub_root / n).read_bytes()
        assert (env.hub_root / n).read_text() == f"changed at the hub: {n}"
    assert not [k for k in got if k.startswith(b".damas-partial/")]  # staging removed
    listed = {(c["_id"], c["site"]) for c in conflicts(env.tracker)}
    assert {(f"/{n}", "st1") for n in names} <= listed
    # the next cycle neither publishes the incoming copy nor fetches it again
    before = st1.read(reserved=True)
    again = env.cycle_of("vol_st1")
    assert not (again["published"] or again["received"] or again["failed"]), again
    assert st1.read(reserved=True) == before
    for n in names:
        incoming = env.tracker.read(f"/{n}")["conflict_st1"]["incoming"]
        assert env.tracker.read(incoming) is None
    _no_canary(env)


def test_a_conflict_on_a_storage_is_resolved_there(env):
    st1 = env.storages["st1"]
    site = _storage_site(env, "vol_st1")
    hub_copy = {n: (env.hub_root / n).read_bytes() for n in (CANARY, DASH, PLAIN)}
    incoming = {n: env.tracker.read(f"/{n}")["conflict_st1"]["incoming"] for n in hub_copy}
    # keep="incoming": the hub's copy replaces the storage's, which then holds the version
    resolve(env.tracker, f"/{CANARY}", "st1", "incoming", storage=site)
    cli = subprocess.run(
        _damas(
            "conflicts", "resolve", f"/{PLAIN}", "st1", "--keep", "incoming",
            "--store", f"lmdb://{env.store_path}", "--ssh", shlex.join(env.storages.ssh),
        ),
        capture_output=True,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr.decode()[-2000:]
    # keep="local": the incoming copy is removed, the storage's copy is the next version
    resolve(env.tracker, f"/{DASH}", "st1", "local", storage=site)
    got = st1.read(reserved=True)
    for n in (CANARY, PLAIN):
        assert got[n.encode()] == hub_copy[n]
    assert got[DASH.encode()] == f"changed at st1: {DASH}".encode()
    assert not any(i[1:].encode() in got for i in incoming.values())
    env.cycle_of("vol_st1")  # the scan marks the copies kept, publishes the local one
    for n in (CANARY, PLAIN):
        el = env.tracker.read(f"/{n}")
        assert "conflict_st1" not in el and el["synced_st1"] == el["time"]
    el = env.tracker.read(f"/{DASH}")
    assert "conflict_st1" not in el and el["origin"] == "st1" and el["modified_st1"]
    # the local copy went up: the hub holds it now
    assert (env.hub_root / DASH).read_text() == f"changed at st1: {DASH}"
    assert not [c for c in conflicts(env.tracker) if c["site"] == "st1"]
    _no_canary(env)


def test_on_an_rrsync_storage_the_other_copy_stays_at_the_hub(env):
    st2 = env.storages["st2"]
    name = "r/both.txt"
    _changed_at_both(env, "st2", [name])
    env.cycle_of("vol_st2")
    record = env.tracker.read(f"/{name}")["conflict_st2"]
    assert record["incoming"] is None
    got = st2.read(reserved=True)
    assert got[name.encode()] == b"changed at st2: r/both.txt"
    assert not [k for k in got if CONFLICT_MARK.search(k.decode())]
    assert "conflicts" in env.tracker.read("vol_st2")["featuresOff"]
    # not tried again at each cycle
    env.cycle_of("vol_st2")
    assert env.tracker.read(f"/{name}")["conflict_st2"] == record
    site = _storage_site(env, "vol_st2")
    with pytest.raises(Refused, match="rrsync"):
        site.keep_both(f"/{name}", "/r/both.conflict.txt", lambda ep, rel: True)
    with pytest.raises(Refused, match="rrsync"):
        site.replace("/r/other.txt", f"/{name}")
    # keep="local" needs no effect there: the storage's copy is the next version
    resolve(env.tracker, f"/{name}", "st2", "local", storage=site)
    env.cycle_of("vol_st2")
    assert (env.hub_root / name).read_text() == "changed at st2: r/both.txt"
