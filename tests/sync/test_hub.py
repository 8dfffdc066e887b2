"""A hub serving two storages that run nothing but sshd and rsync, for real.

The storages (``st1``: a shell with GNU find; ``st2``: a key restricted with ``rrsync``)
are each in their own network namespace with their own sshd, their files only
visible through ssh (tests/sync/storages.py). The hub's volume is a folder here.
The tests of this module run in order on the same storages and tracker.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from damas_core.sync import activity
from damas_core.sync.hub import StorageAgent
from damas_core.sync.hub_run import Hub, Opened, _Worker
from damas_core.sync.volumes import create_volume, set_global_parameters, update_volume

import damas_core
from damas_core.cli import main
from damas_core.errors import BadRequest, Forbidden

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
        self.store_path = tmp / "store"
        self.tracker = damas_core.open(f"lmdb://{self.store_path}")
        self.hub_root = tmp / "hub"
        self.hub_root.mkdir()
        t = self.tracker
        create_volume(t, {"_id": "vol_hub", "name": "hub", "url": f"file://{self.hub_root}/"})
        st1, st2 = storages["st1"], storages["st2"]
        create_volume(t, {"_id": "vol_st1", "name": "st1", "url": st1.url, "hub": "vol_hub"})
        # rrsync: the url's path is below the folder the key is restricted to
        url2 = f"ssh://root@{st2.address}:{st2.port}/"
        create_volume(t, {"_id": "vol_st2", "name": "st2", "url": url2, "hub": "vol_hub"})
        set_global_parameters(t, {"syncEverywhere": True, "retryDelay": 0})
        self.hub = Hub(
            lambda: Opened(self.tracker),
            "vol_hub",
            state_dir=tmp / "state",
            ssh_command=storages.ssh,
            settle=0,
        )

    def cycle_of(self, volume_id: str) -> dict:
        """One cycle of one agent of the hub."""
        return _Worker(self.hub.config, volume_id).once()

    def relay(self, source: str, *targets: str) -> dict:
        """A file written at ``source`` on its way: one cycle of its agent (scan and
        up to the hub), then one of each target's (down), the hub's own last."""
        out = {source: self.cycle_of(source)}
        for target in targets:
            out[target] = self.cycle_of(target)
        return out

    def cycle(self, rounds: int = 1) -> dict:
        for _ in range(rounds):
            out = self.hub.run_once()
        return out


@pytest.fixture(scope="module")
def env(storages, tmp_path_factory):
    e = Env(storages, tmp_path_factory.mktemp("hubenv"))
    e.cycle()  # connected, listed: each test may run alone (or on another xdist worker)
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
    env.relay("vol_st2", "vol_st1")  # the cycle after its scan, no second scan
    assert st1.read()[b"from st2/x.txt"] == b"written at st2"
    el = env.tracker.read("/from st2/x.txt")
    assert el["origin"] == "st2" and el["synced_st1"] == el["time"]


def test_a_modification_travels(env):
    st1, st2 = env.storages["st1"], env.storages["st2"]
    st1.write({"mod/a b.txt": b"first"}, mtime=1_700_000_100.5)
    env.relay("vol_st1", "vol_st2")
    st1.write({"mod/a b.txt": b"changed at st1"}, mtime=1_700_000_200.5)
    r = env.relay("vol_st1", "vol_st2")
    assert st2.read()[b"mod/a b.txt"] == b"changed at st1", r["vol_st2"]
    el = env.tracker.read("/mod/a b.txt")
    assert el["modified_st1"] and el["synced_st2"] == el["time"]


def test_a_conflict_keeps_both_copies(env):
    """The same file changed at both storages before either was synced: each keeps
    its own copy, the conflict is recorded, nothing is overwritten."""
    st1, st2 = env.storages["st1"], env.storages["st2"]
    st1.write({"both.txt": b"v1"}, mtime=1_700_000_300)
    env.relay("vol_st1", "vol_st2")
    assert st2.read()[b"both.txt"] == b"v1"
    time.sleep(1.1)  # after the second of the first sync: st2's times are in seconds
    st1.write({"both.txt": b"changed at st1"})
    st2.write({"both.txt": b"changed at st2!"})
    env.cycle_of("vol_st1")  # st1's version first, then st2 finds its own changed too
    report = env.cycle_of("vol_st2")
    assert report["conflicts"] == ["/both.txt"], report
    env.cycle()
    assert st1.read()[b"both.txt"] == b"changed at st1"
    assert st2.read()[b"both.txt"] == b"changed at st2!"
    el = env.tracker.read("/both.txt")
    assert any(k.startswith("conflict_") for k in el), json.dumps(el)


def test_a_rename_at_the_rrsync_storage_travels(env):
    """With propagateDeletions, a rename at st2 (rsync only: recognised by size and
    mtime) is applied at st1 through the remote guard, and at the hub."""
    st1, st2 = env.storages["st1"], env.storages["st2"]
    set_global_parameters(env.tracker, {"propagateDeletions": True})
    try:
        st2.write({"r/old name.txt": b"renamed"}, mtime=1_700_000_500)
        env.relay("vol_st2", "vol_st1", "vol_hub")
        assert st1.read()[b"r/old name.txt"] == b"renamed"
        st2.rename("r/old name.txt", "r/new name.txt")
        env.relay("vol_st2", "vol_st1", "vol_hub")
        got = st1.read()
        assert got[b"r/new name.txt"] == b"renamed" and b"r/old name.txt" not in got
        assert (env.hub_root / "r/new name.txt").read_bytes() == b"renamed"
        assert env.tracker.read("/r/old name.txt")["renamed_to"] == "/r/new name.txt"
    finally:
        set_global_parameters(env.tracker, {"propagateDeletions": False})


def test_deletions_travel_with_their_brakes(env):
    """A file deleted at its origin (st2, rsync only) is quarantined at st1 through the
    remote guard, and at the hub; more than maxDelete % at once removes none."""
    st1, st2 = env.storages["st1"], env.storages["st2"]
    # written with a past mtime: settled at once, however slow the machine
    st2.write({f"del/f{i:02d}.txt": f"{i}".encode() for i in range(12)}, mtime=1_700_000_600)
    env.relay("vol_st2", "vol_st1")
    assert b"del/f00.txt" in st1.read()
    set_global_parameters(env.tracker, {"propagateDeletions": True})
    try:
        st2.remove("del/f00.txt")
        env.relay("vol_st2", "vol_st1", "vol_hub")
        got = st1.read()
        assert b"del/f00.txt" not in got
        trashed = env.tracker.read("/del/f00.txt")["trashed_st1"]
        assert st1.read(reserved=True)[trashed.lstrip("/").encode()] == b"0"  # quarantined
        assert not (env.hub_root / "del/f00.txt").exists()
        # the brake: more than maxDelete % of st1's files at once removes none
        set_global_parameters(env.tracker, {"maxDelete": 1})
        for i in range(1, 11):
            st2.remove(f"del/f{i:02d}.txt")
        env.relay("vol_st2", "vol_st1")
        got = st1.read()
        assert all(f"del/f{i:02d}.txt".encode() in got for i in range(1, 11))
        assert env.tracker.read("vol_st1")["exit_delete"] == 1
        # the hub records the brake in the storage's activity log
        assert "brake" in [e["event"] for e in activity.log(env.tracker, ["vol_st1"])]
        assert env.tracker.read("vol_st2")["featuresOff"] == [
            "deletions", "renames", "quarantine", "conflicts", "capacity"
        ]  # fmt: skip
    finally:
        set_global_parameters(env.tracker, {"propagateDeletions": False, "maxDelete": 50})


def test_a_storage_going_offline_does_not_stop_the_other(env):
    st1, st2 = env.storages["st1"], env.storages["st2"]
    st2.stop()
    try:
        st1.write({"while st2 was down.txt": b"d"}, mtime=1_700_000_700)
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
        # a copy that failed for the connection (255) waits its back-off (an hour here)
        set_global_parameters(env.tracker, {"retryDelay": 3600})
        env.tracker.update(
            {"_id": "/while st2 was down.txt", "syncError_st2": 255, "syncFailures_st2": 1,
             "syncLastAttempt_st2": int(time.time() * 1000)}
        )  # fmt: skip
    finally:
        env.storages.restart("st2")
    env.hub._stop.clear()
    try:
        r = env.cycle()  # back: the 255's back-off is cleared, the copy goes at once
    finally:
        set_global_parameters(env.tracker, {"retryDelay": 0})
    # the probe's back-off is per agent: a fresh cycle probes at once
    assert env.tracker.read("vol_st2")["connectionStatus"] == "ok", r["vol_st2"]
    assert st2.read()[b"while st2 was down.txt"] == b"d"
    assert [e["event"] for e in activity.log(env.tracker, ["vol_st2"])][-1] == "reachable"


def test_the_hub_key_is_a_controlling_key():
    """``hub`` decides where data goes: a non-admin may not set it (403), and a volume
    with a hub must be reached over ssh."""
    t = damas_core.open("memory://")
    t.create({"_id": "@ed", "class": "editor", "password": "secret-ed-1"})
    create_volume(t, {"_id": "vol_hub", "name": "hub", "url": "file:///srv/hub/"})
    create_volume(t, {"_id": "vol_far", "name": "far", "url": "ssh://u@far/p/"})
    editor = t.as_user("ed")
    with pytest.raises(Forbidden) as refused:
        editor.update({"_id": "vol_far", "hub": "vol_hub"})
    assert refused.value.key == "hub" and "'hub'" in str(refused.value)
    with pytest.raises(Forbidden):
        editor.create({"_id": "vol_x", "name": "xxx", "url": "ssh://u@x/p/", "hub": "vol_hub"})
    assert "hub" not in t.read("vol_far")
    with pytest.raises(BadRequest, match="ssh://"):
        update_volume(t, {"_id": "vol_hub", "hub": "vol_far"})
    assert update_volume(t, {"_id": "vol_far", "hub": "vol_hub"})["hub"] == "vol_hub"


def test_damas_hub_key_makes_the_pair_once_and_publishes_it(tmp_path):
    store = f"lmdb://{tmp_path}/store"
    damas_core.open(store).close()
    args = ["hub", "key", "--store", store, "--state-dir", str(tmp_path / "h"), "--folder", "/p"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    private = tmp_path / "h" / "hub_key"
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    public = (tmp_path / "h" / "hub_key.pub").read_text().strip()
    assert f'command="rrsync /p",restrict {public}' in first.output
    assert f"\n{public}\n" in first.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and (tmp_path / "h" / "hub_key.pub").read_text().strip() == public
    t = damas_core.open(store)
    assert t.read("rsyncGlobalParameters")["rsaPublicKey"] == public
    t.close()


def _damas(*args: str) -> list[str]:
    return [sys.executable, "-c", "from damas_core.cli import main; main()", *args]


def _child_pid(volume: dict | None, parent: int) -> int | None:
    """The pid recorded on ``volume`` when it is a live child process of ``parent``."""
    pid = (volume or {}).get("lastConnectionPid")
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, TypeError):
        return None
    return pid if int(stat.rpartition(")")[2].split()[1]) == parent else None


def _wait(predicate, what: str, timeout: float = 60.0):
    """Wait until ``predicate()`` is true (a deadline, not a timing claim)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"never happened: {what}")


def test_damas_hub_run_serves_the_storages_until_sigterm(env, tmp_path):
    """The command as a service: the hub's own agent in its process and each
    storage's in a process of its own (children of the hub's), a new file travels from
    st2 (rrsync) to st1 without a restart, a storage added to the hub while it runs is
    picked up from the change feed, a storage's process killed is started again, and
    SIGTERM stops them all with exit 0 and every volume recorded stopped."""
    st1, st2 = env.storages["st1"], env.storages["st2"]
    set_global_parameters(env.tracker, {"sleepBetweenScans": 1})
    store = f"lmdb://{env.store_path}"
    proc = subprocess.Popen(
        _damas(
            "hub", "run", "vol_hub", "--store", store, "--settle", "0",
            "--state-dir", str(tmp_path / "hubstate"), "--ssh", shlex.join(env.storages.ssh),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait(
            lambda: (env.tracker.read("vol_hub") or {}).get("lastConnectionPid") == proc.pid,
            "the hub's volume served by the hub's process",
        )
        pids = {}
        for vid in ("vol_st1", "vol_st2"):
            pids[vid] = _wait(
                lambda vid=vid: _child_pid(env.tracker.read(vid), proc.pid),
                f"{vid} served by a process of the hub's",
            )
        assert pids["vol_st1"] != pids["vol_st2"]
        # one process per hub: a second one on the same state directory stops at once
        second = subprocess.run(
            _damas(
                "hub", "run", "vol_hub", "--store", store, "--once",
                "--state-dir", str(tmp_path / "hubstate"),
            ),
            capture_output=True,
        )  # fmt: skip
        assert second.returncode == 75, second.stderr.decode()[-500:]
        st2.write({"served/by the service.txt": b"svc"})
        _wait(lambda: b"served/by the service.txt" in st1.read(), "the file reached st1")
        # a storage's process that dies is started again; the other one is left alone
        os.kill(pids["vol_st1"], signal.SIGKILL)
        _wait(
            lambda: (
                _child_pid(env.tracker.read("vol_st1"), proc.pid) not in (None, pids["vol_st1"])
            ),
            "st1 served by a new process",
        )
        assert _child_pid(env.tracker.read("vol_st2"), proc.pid) == pids["vol_st2"]
        # a third storage pointed at the hub while it runs: picked up without a restart
        create_volume(
            env.tracker,
            {"_id": "vol_st3", "name": "st3", "url": st1.url.replace("/project/", "/other/"),
             "hub": "vol_hub"},
        )  # fmt: skip
        _wait(lambda: _child_pid(env.tracker.read("vol_st3"), proc.pid), "vol_st3 picked up")
        env.tracker.update({"_id": "vol_st3", "hub": None})  # pointed away: its agent stops
        _wait(lambda: env.tracker.read("vol_st3").get("agentStatus") == "stopped", "st3 stopped")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    for vid in ("vol_hub", "vol_st1", "vol_st2"):
        assert env.tracker.read(vid)["agentStatus"] == "stopped"
    # each storage's process logs under its site's name, as the hub's own agent does
    assert b"[hub:st1] " in err and b"[hub:st2] " in err and b"[hub:hub] " in err, err[-2000:]
    env.tracker.delete("vol_st3")
    set_global_parameters(env.tracker, {"sleepBetweenScans": 60})


def test_damas_hub_run_once_prints_each_report(env, tmp_path):
    proc = subprocess.run(
        _damas(
            "hub", "run", "vol_hub", "--store", f"lmdb://{env.store_path}", "--once",
            "--settle", "0", "--state-dir", str(tmp_path / "s"),
            "--ssh", shlex.join(env.storages.ssh),
        ),
        capture_output=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    reports = json.loads(proc.stdout)
    assert sorted(reports) == ["vol_hub", "vol_st1", "vol_st2"]
    assert all(not r["failed"] and not r["published"] for r in reports.values()), reports


def test_damas_hub_run_refuses_what_it_cannot_serve(env, tmp_path):
    args = ["--store", f"lmdb://{env.store_path}", "--state-dir", str(tmp_path / "s")]
    missing = subprocess.run(_damas("hub", "run", "vol_nope", *args, "--once"), capture_output=True)
    assert missing.returncode == 78 and b"no hub volume 'vol_nope'" in missing.stderr
    storage = subprocess.run(_damas("hub", "run", "vol_st1", *args, "--once"), capture_output=True)
    assert storage.returncode == 78 and b"is itself a storage" in storage.stderr


def test_status_shows_each_storage_with_its_hub_connection_and_capacity(env):
    from damas_core.sync.status import sites

    by_name = {h["name"]: h for h in sites(env.tracker)}
    st1 = by_name["st1"]
    assert st1["hub"] == "vol_hub" and st1["connectionStatus"] == "ok"
    assert st1["bytesTotal"] >= st1["bytesUsed"] > 0 and st1["state"] != "down"
    result = subprocess.run(
        _damas("sync", "status", "--store", f"lmdb://{env.store_path}", "--limit", "0"),
        capture_output=True,
        env={**os.environ, "COLUMNS": "250"},
    )
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert "(hub vol_hub)" in out and "ok, last ok" in out


def test_a_growing_file_is_not_published_early(env, tmp_path):
    """A file still being written at a storage waits (the settle gate over ssh): it is
    published once two listings see it unchanged, not before."""
    st1 = env.storages["st1"]
    agent = StorageAgent(
        env.tracker, "vol_st1", "vol_hub", ssh_command=env.storages.ssh, settle=30,
        state_dir=str(tmp_path / "st1"),
    )  # fmt: skip
    try:
        st1.write({"growing.bin": b"x" * 10})
        r = agent.run_once()
        assert "/growing.bin" in r.pending and "/growing.bin" not in r.published
        st1.write({"growing.bin": b"x" * 20})  # it grew
        r = agent.run_once()
        assert "/growing.bin" in r.pending and env.tracker.read("/growing.bin") is None
        r = agent.run_once()  # unchanged since the last look: stable now
        assert r.published == ["/growing.bin"]
        assert env.tracker.read("/growing.bin")["file_size"] == 20
    finally:
        agent.close()


def test_a_storage_agent_shares_one_ssh_connection_and_ends_it(env):
    """Every command of a cycle (probe, listing, rsync) goes through one master
    connection per storage; closing the agent ends it (no ssh left behind)."""
    agent = env.hub.make_agent(env.tracker, "vol_st1")
    try:
        agent.run_once()
        host = agent.remote.endpoint().host
        check = [*agent.remote.ssh_base(), "-O", "check", host]
        alive = subprocess.run(check, capture_output=True, stdin=subprocess.DEVNULL)
        assert alive.returncode == 0, alive.stderr
        assert b"Master running" in alive.stderr
    finally:
        agent.close()
    gone = subprocess.run(check, capture_output=True, stdin=subprocess.DEVNULL)
    assert gone.returncode != 0


def test_a_storage_process_whose_hub_was_killed_stops_by_itself(env, tmp_path):
    """SIGKILL leaves no handler to stop the storages' processes: each sees its hub
    gone, ends its step, records its stop and exits."""
    proc = subprocess.Popen(
        _damas(
            "hub", "run", "vol_hub", "--store", f"lmdb://{env.store_path}", "--settle", "0",
            "--state-dir", str(tmp_path / "hubstate"), "--ssh", shlex.join(env.storages.ssh),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        child = _wait(lambda: _child_pid(env.tracker.read("vol_st1"), proc.pid), "st1 served")
    finally:
        proc.kill()
        proc.wait()
    _wait(lambda: not Path(f"/proc/{child}").exists(), "st1's process gone", timeout=30)
    assert env.tracker.read("vol_st1")["agentStatus"] == "stopped"


def test_a_storage_process_refused_by_the_server_ends_with_77(tmp_path):
    """A storage's process signs in on its own: refused credentials end it with 77,
    which the hub reads as its own reason to stop (``fatal``)."""
    from damas_core.sync.credentials import Credentials
    from damas_core.sync.hub_run import HubConfig, ServerOpener, _AgentProcess

    from tests.sync.processes import Server

    server = Server(tmp_path)
    server.start()
    try:
        opener = ServerOpener(server.url, Credentials(token="not-a-token"))
        worker = _AgentProcess(HubConfig(opener, "vol_hub", str(tmp_path / "s")), "vol_st1")
        worker.start()
        worker.join()
        assert worker.exitcode == 77
        assert worker.fatal is not None and worker.fatal.exit_code == 77
    finally:
        server.stop()
