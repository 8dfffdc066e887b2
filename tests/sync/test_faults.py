"""Faults: vanished sources, killed rsync, refused writes, restarts, conflicts, locks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from damas_core.sync import Agent, conflicts, resolve

from .conftest import needs_rsync

pytestmark = needs_rsync


def test_source_missing_records_error_then_success_clears_it(sites):
    sites.run()
    sites.write("paris", "/v.bin", b"x" * 100)
    sites.agent("paris").run_once()
    os.unlink(sites.path("paris", "/v.bin"))  # gone before the transfer
    r = sites.agent("tokyo").run_once()
    assert r.failed == {"/v.bin": 23}
    el = sites.tracker.read("/v.bin")
    assert el["syncError_tokyo"] == 23 and el["syncLastAttempt_tokyo"] > 0
    assert "synced_tokyo" not in el
    back = sites.write("paris", "/v.bin", b"x" * 100)
    os.utime(back, ns=(el["file_mtime"] * 10**6,) * 2)  # file_mtime is in ms
    r = sites.agent("tokyo").run_once()
    assert r.received == ["/v.bin"]
    el = sites.tracker.read("/v.bin")
    assert "syncError_tokyo" not in el and el["synced_tokyo"] >= el["time"]


def test_failed_files_wait_for_their_back_off(sites):
    sites.run()
    sites.tracker.update({"_id": "rsyncGlobalParameters", "retryDelay": 3600})
    sites.write("paris", "/a", "a")
    sites.agent("paris").run_once()
    os.unlink(sites.path("paris", "/a"))
    assert sites.agent("tokyo").run_once().failed == {"/a": 23}
    assert sites.agent("tokyo").run_once().rsync_calls == 0  # backing off


@pytest.mark.slow
def test_source_vanishes_during_a_throttled_transfer(sites):
    sites.run()
    sites.tracker.update({"_id": "vol_tokyo", "rsync_args": ["--bwlimit=200"]})
    sites.write("paris", "/a_big.bin", os.urandom(600_000))
    small = sites.write("paris", "/b_small.bin", b"s" * 100)
    sites.agent("paris").run_once()
    # rsync sends a_big first (slowly); b_small disappears after the file list is built
    timer = threading.Timer(0.7, os.unlink, [small])
    timer.start()
    r = sites.agent("tokyo").run_once()
    timer.join()
    assert r.failed == {"/b_small.bin": 24}
    assert r.received == ["/a_big.bin"]
    assert "synced_tokyo" not in sites.tracker.read("/b_small.bin")
    assert sites.tracker.read("/b_small.bin")["syncError_tokyo"] == 24
    assert not sites.path("tokyo", "/b_small.bin").exists()


@pytest.mark.slow
def test_rsync_killed_mid_transfer_never_reports_the_partial_file(sites, tmp_path):
    sites.run()
    sites.tracker.update({"_id": "vol_tokyo", "rsync_args": ["--bwlimit=200"]})
    sites.write("paris", "/big.bin", os.urandom(800_000))
    sites.agent("paris").run_once()

    def kill_rsync():
        time.sleep(0.8)
        out = subprocess.run(
            ["pgrep", "-f", f"files-from=.*--partial-dir.*{tmp_path}"],
            capture_output=True,
            text=True,
        )
        for pid in out.stdout.split():
            os.kill(int(pid), signal.SIGKILL)

    killer = threading.Thread(target=kill_rsync)
    killer.start()
    r = sites.agent("tokyo").run_once()
    killer.join()
    assert "/big.bin" in r.failed
    assert "synced_tokyo" not in sites.tracker.read("/big.bin")
    # a later run resumes and completes; the copy is then checked and recorded
    sites.tracker.update({"_id": "vol_tokyo", "rsync_args": []})
    r = sites.agent("tokyo").run_once()
    assert r.received == ["/big.bin"]
    assert (
        sites.path("tokyo", "/big.bin").read_bytes() == sites.path("paris", "/big.bin").read_bytes()
    )


@pytest.mark.skipif(os.geteuid() == 0 and sys.platform != "linux", reason="needs Linux")
def test_destination_that_refuses_writes(sites):
    sites.run()
    sites.write("paris", "/ro/a.txt", "a")
    sites.agent("paris").run_once()
    ro = sites.roots["tokyo"] / "ro"
    ro.mkdir()
    # a file where a directory is needed refuses the write even for root
    (ro / "a.txt").mkdir()
    (ro / "a.txt" / "keep").write_text("k")
    r = sites.agent("tokyo").run_once()
    assert "/ro/a.txt" in r.failed
    el = sites.tracker.read("/ro/a.txt")
    assert "synced_tokyo" not in el and el["syncError_tokyo"] != 0
    assert sites.tracker.read("vol_tokyo")["exit_reception"] != 0


def test_agent_killed_and_restarted_resumes_without_duplicates(sites, tmp_path):
    for i in range(30):
        sites.write("paris", f"/many/{i}.txt", str(i))
    sites.run("tokyo")
    store = sites.tracker.storage.url if hasattr(sites.tracker.storage, "url") else None
    assert store
    sites.tracker.close()
    root = sites.roots["paris"]
    code = (
        "import damas_core, os, signal\n"
        "from damas_core.sync import Agent\n"
        f"t = damas_core.open({store!r})\n"
        "a = Agent(t, 'vol_paris', settle=0)\n"
        "orig = t.publish\n"
        "def publish(batch):\n"
        "    r = orig(batch[:10])\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "t.publish = publish\n"
        "a.scanner.compare.__self__\n"
        "import damas_core.sync.agent as ag\n"
        "ag._WRITE_BATCH = 10\n"
        "a.run_once()\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == -signal.SIGKILL, p.stderr
    import damas_core

    sites.tracker = damas_core.open(store)
    sites.agents.clear()
    assert len([i for i in sites.tracker.search("origin:paris -#parent:*")]) == 10
    sites.run("paris", "tokyo")
    ids = sites.tracker.search("origin:paris -#parent:*")
    assert len(ids) == len(set(ids)) == 30
    assert all((root / "many" / f"{i}.txt").exists() for i in range(30))
    assert sorted(os.listdir(sites.roots["tokyo"] / "many")) == sorted(
        f"{i}.txt" for i in range(30)
    )


def test_conflict_at_two_sites_keeps_both(sites):
    sites.write("paris", "/c.txt", "base", mtime=1_000_000)
    sites.run(rounds=2)
    assert sites.path("tokyo", "/c.txt").read_text() == "base"
    time.sleep(0.01)
    sites.write("paris", "/c.txt", "paris edit")
    # a version is its size and mtime to the millisecond: two edits of one size in the
    # same millisecond would be one version
    edited = sites.write("tokyo", "/c.txt", "tokyo edit")
    os.utime(edited, ns=(time.time_ns() + 10**6,) * 2)
    sites.run("paris")  # paris publishes its version first
    r = sites.run("tokyo")[0]
    assert "/c.txt" in r.conflicts
    assert sites.path("tokyo", "/c.txt").read_text() == "tokyo edit"  # never overwritten
    found = conflicts(sites.tracker)
    assert [(c["_id"], c["site"]) for c in found] == [("/c.txt", "tokyo")]
    # the other copy is fetched next to it, renamed with the site and time
    sites.run("tokyo")
    info = sites.tracker.read("/c.txt")["conflict_tokyo"]
    assert info["incoming"] and ".conflict-paris-" in info["incoming"]
    assert sites.path("tokyo", info["incoming"]).read_text() == "paris edit"
    assert sites.path("paris", "/c.txt").read_text() == "paris edit"
    # the renamed copy is not published as a new file
    sites.run("tokyo")
    assert sites.tracker.read(info["incoming"]) is None
    # keeping the local version makes it the next version everywhere
    resolve(sites.tracker, "/c.txt", "tokyo", keep="local")
    assert not sites.path("tokyo", info["incoming"]).exists()
    sites.run("tokyo", "paris", "lyon")
    for site in sites.roots:
        assert sites.path(site, "/c.txt").read_text() == "tokyo edit"


def test_a_copy_written_in_the_millisecond_of_its_scan_is_not_a_local_change(sites):
    t = sites.tracker
    sites.write("paris", "/m.txt", "v1", mtime=1_000_000)
    sites.run(rounds=2)
    sites.write("paris", "/m.txt", "paris v2")
    sites.run("paris")
    # as if paris had written its copy in the very millisecond its scan took as baseline
    baseline = t.read("/m.txt")["synced_paris"]
    same_ms = baseline * 10**6 + 400_000  # ns
    os.utime(sites.path("paris", "/m.txt"), ns=(same_ms, same_ms))
    t.update({"_id": "/m.txt", "file_mtime": baseline})
    sites.run("tokyo")
    assert sites.path("tokyo", "/m.txt").read_text() == "paris v2"
    sites.write("tokyo", "/m.txt", "tokyo v3 (newer)")
    sites.run("tokyo")  # tokyo held v2: its edit is the next version
    r = sites.run("paris")[0]
    assert not r.conflicts and "/m.txt" in r.received
    assert sites.path("paris", "/m.txt").read_text() == "tokyo v3 (newer)"
    assert not [k for k in t.read("/m.txt") if k.startswith("conflict_")]


def test_lock_holds_the_file_at_the_user_site(sites):
    t = sites.tracker
    t.create([{"_id": "@ana", "class": "user", "site": "tokyo"}])
    sites.write("paris", "/l.txt", "v1", mtime=1_000_000)
    sites.run(rounds=2)
    assert t.as_user("ana").lock("/l.txt")
    sites.write("paris", "/l.txt", "v2 longer")
    sites.run("paris", "tokyo", "lyon")
    assert sites.path("tokyo", "/l.txt").read_text() == "v1"  # ana works on it at tokyo
    assert sites.path("lyon", "/l.txt").read_text() == "v2 longer"
    assert t.read("/l.txt")["syncWait_tokyo"] == "locked by ana"
    assert t.as_user("ana").unlock("/l.txt")
    sites.run("tokyo")
    assert sites.path("tokyo", "/l.txt").read_text() == "v2 longer"
    assert "syncWait_tokyo" not in t.read("/l.txt")


def test_growing_file_is_published_once_still(sites):
    root = sites.roots["paris"]
    agent = Agent(sites.tracker, "vol_paris", settle=3600)
    path = root / "render.exr"
    path.write_bytes(b"x" * 10)
    vol = sites.tracker.read("vol_paris")
    first = agent.scanner.compare(vol, {})
    assert first.pending == ["/render.exr"] and not first.publish
    with path.open("ab") as f:
        f.write(b"more")
    second = agent.scanner.compare(vol, {})
    assert second.pending == ["/render.exr"] and not second.publish
    third = agent.scanner.compare(vol, {})
    assert [e["_id"] for e in third.publish] == ["/render.exr"]
    assert third.publish[0]["file_size"] == 14


def test_a_volume_whose_root_went_away_is_left_alone(sites):
    t = sites.tracker
    sites.write("paris", "/u/a.txt", "a")
    sites.write("paris", "/u/b.txt", "b")
    sites.run("paris")
    root = sites.roots["paris"]
    assert t.read("vol_paris")["rootDevice"] == os.stat(root).st_dev
    root.rename(root.with_name("paris unmounted"))  # the share went away
    r = sites.run("paris")[0]
    assert r.deleted == [] and "cannot be read (No such file or directory)" in r.scan_errors[0]
    assert not any(t.read(i).get("deleted") for i in ("/u/a.txt", "/u/b.txt"))
    vol = t.read("vol_paris")
    assert vol["exit_scan"] == 1 and vol["agentStatus"] == "unmounted"
    assert "not mounted?" in vol["stderr_scan"]
    root.with_name("paris unmounted").rename(root)
    assert sites.run("paris")[0].scan_errors == []
    (root / "u" / "a.txt").unlink()  # a real deletion is still recorded
    assert sites.run("paris")[0].deleted == ["/u/a.txt"]


def test_an_empty_mount_point_is_left_alone(sites, tmp_path):
    """A share not mounted leaves its mount point: an empty folder on another device.
    No file is taken for deleted, nothing is received into it, no agent pushes to it."""
    shares = Path("/dev/shm")
    if not shares.is_dir() or shares.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a device of its own, to stand for a mounted share")
    t = sites.tracker
    mounted = {}
    for site in ("paris", "tokyo"):
        share = Path(tempfile.mkdtemp(dir=shares, prefix=f"damas-share-{site}-"))
        sites.roots[site].rmdir()
        sites.roots[site].symlink_to(share)  # the share, mounted at the volume's root
        mounted[site] = share
    try:
        sites.write("paris", "/m/a.txt", "a")
        sites.write("paris", "/m/b.txt", "b")
        sites.run(rounds=2)
        assert sites.path("tokyo", "/m/a.txt").read_text() == "a"
        for site in ("paris", "tokyo"):  # unmounted: the empty mount point is left
            sites.roots[site].unlink()
            sites.roots[site].mkdir()
        sites.write("lyon", "/m/new.txt", "new at lyon")
        for site in ("paris", "tokyo", "lyon"):
            r = sites.run(site)[0]
            if site != "lyon":
                assert r.deleted == [] and r.received == [], r
                assert "is empty and on another device" in r.scan_errors[0]
                assert t.read(f"vol_{site}")["agentStatus"] == "unmounted"
            else:
                assert r.published == ["/m/new.txt"] and r.emitted == []  # others are alive
        assert list(sites.roots["tokyo"].iterdir()) == []
        for file_id in ("/m/a.txt", "/m/b.txt"):
            el = t.read(file_id)
            assert not el.get("deleted") and el["synced_tokyo"] >= el["time"]
        for site in ("paris", "tokyo"):  # mounted again
            sites.roots[site].rmdir()
            sites.roots[site].symlink_to(mounted[site])
        r = sites.run("tokyo")[0]
        assert r.scan_errors == [] and r.received == ["/m/new.txt"]
        # emptied for real, on its own device: the files are recorded gone
        shutil.rmtree(mounted["paris"] / "m")
        assert sorted(sites.run("paris")[0].deleted) == ["/m/a.txt", "/m/b.txt"]
    finally:
        for share in mounted.values():
            shutil.rmtree(share, ignore_errors=True)


def test_an_empty_volume_on_its_own_device_is_a_volume_whose_files_were_deleted(sites):
    sites.write("paris", "/only.txt", "x")
    sites.run("paris")
    (sites.roots["paris"] / "only.txt").unlink()
    r = sites.run("paris")[0]
    assert r.deleted == ["/only.txt"] and r.scan_errors == []
