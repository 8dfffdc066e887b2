"""Deletions at the origin applied at the other sites (propagateDeletions): through a
quarantine, never to a copy changed there, with the brakes (maxDelete, unmounted)."""

from __future__ import annotations

import os
import time
from datetime import UTC, date, datetime, timedelta

from damas_core.sync.site import LocalSite
from damas_core.sync.volumes import set_global_parameters

from .conftest import needs_rsync

pytestmark = needs_rsync


def _synced(sites, n: int = 4) -> None:
    for i in range(n):
        sites.write("paris", f"/d/f{i}.txt", f"file {i}")
    sites.run(rounds=2)
    assert all(sites.path("tokyo", f"/d/f{i}.txt").exists() for i in range(n))


def test_deletions_are_only_recorded_by_default(sites):
    _synced(sites)
    os.unlink(sites.path("paris", "/d/f0.txt"))
    sites.run(rounds=2)
    assert sites.tracker.read("/d/f0.txt")["deleted"] is True
    assert sites.path("tokyo", "/d/f0.txt").exists() and sites.path("lyon", "/d/f0.txt").exists()


def test_a_deletion_moves_the_copies_into_each_sites_quarantine(sites):
    _synced(sites)
    set_global_parameters(sites.tracker, {"propagateDeletions": True})
    os.unlink(sites.path("paris", "/d/f0.txt"))
    assert sites.run("paris")[0].deleted == ["/d/f0.txt"]
    tokyo, lyon = sites.run("tokyo", "lyon")
    assert tokyo.trashed == ["/d/f0.txt"] and lyon.trashed == ["/d/f0.txt"]
    el = sites.tracker.read("/d/f0.txt")
    today = date.today().isoformat()
    assert el["trashed_tokyo"] == f".damas-trash/{today}/d/f0.txt"
    assert "synced_tokyo" not in el and "synced_lyon" not in el
    assert not sites.path("tokyo", "/d/f0.txt").exists()
    assert (sites.roots["tokyo"] / el["trashed_tokyo"]).read_text() == "file 0"
    # the quarantine is never scanned, and the next cycles change nothing
    reports = sites.run(rounds=2)
    assert all(not r.published and not r.trashed and not r.deleted for r in reports)
    assert sites.tracker.search("#parent:/d/f0.txt comment:/modified/") == []


def test_a_copy_changed_there_since_is_never_removed(sites):
    _synced(sites)
    sites.tracker.update({"_id": "vol_tokyo", "propagateDeletions": True})
    sites.tracker.update({"_id": "vol_lyon", "propagateDeletions": True})
    os.unlink(sites.path("paris", "/d/f1.txt"))
    sites.run("paris")
    time.sleep(0.01)  # a later millisecond than lyon's baseline
    sites.write("lyon", "/d/f1.txt", "lyon's own edit, longer")
    tokyo, lyon = sites.run("tokyo", "lyon")
    assert tokyo.trashed == ["/d/f1.txt"] and lyon.trashed == []
    assert sites.path("lyon", "/d/f1.txt").read_text() == "lyon's own edit, longer"
    # lyon's scan made its copy the new version: the file is back
    el = sites.tracker.read("/d/f1.txt")
    assert "deleted" not in el and el["modified_lyon"] == el["time"]


def test_more_than_max_delete_removes_nothing_and_says_why(sites):
    _synced(sites)
    set_global_parameters(sites.tracker, {"propagateDeletions": True, "maxDelete": 50})
    for i in range(3):  # 3 of 4: 75 %
        os.unlink(sites.path("paris", f"/d/f{i}.txt"))
    sites.run("paris")
    tokyo = sites.run("tokyo")[0]
    assert tokyo.trashed == [] and "more than maxDelete (50%)" in tokyo.scan_errors[0]
    assert all(sites.path("tokyo", f"/d/f{i}.txt").exists() for i in range(3))
    vol = sites.tracker.read("vol_tokyo")
    assert vol["exit_delete"] == 1 and "3 of the 4 files" in vol["stderr_delete"]
    # raised for one cycle: the deletions go through
    sites.tracker.update({"_id": "vol_tokyo", "maxDelete": 100})
    assert sorted(sites.run("tokyo")[0].trashed) == [f"/d/f{i}.txt" for i in range(3)]
    assert sites.tracker.read("vol_tokyo")["exit_delete"] == 0


def test_an_unmounted_volume_never_deletes(sites, tmp_path):
    _synced(sites)
    set_global_parameters(sites.tracker, {"propagateDeletions": True, "maxDelete": 100})
    os.unlink(sites.path("paris", "/d/f0.txt"))
    sites.run("paris")
    # tokyo's root looks unmounted: empty, on another device than recorded
    sites.tracker.update({"_id": "vol_tokyo", "rootDevice": -1})
    kept = tmp_path / "tokyo files"
    os.rename(sites.roots["tokyo"], kept)
    sites.roots["tokyo"].mkdir()
    r = sites.run("tokyo")[0]
    assert r.trashed == [] and "not mounted?" in r.scan_errors[0]
    assert sites.tracker.read("vol_tokyo")["agentStatus"] == "unmounted"
    assert "trashed_tokyo" not in sites.tracker.read("/d/f0.txt")


def test_the_quarantine_is_purged_after_trash_retention(tmp_path):
    site = LocalSite(str(tmp_path))
    today = date(2026, 12, 1)
    for day in (today, today - timedelta(days=3), today - timedelta(days=40)):
        (tmp_path / ".damas-trash" / day.isoformat()).mkdir(parents=True)
    (tmp_path / ".damas-trash" / "notes").mkdir()
    assert site.purge(30, today) == [(today - timedelta(days=40)).isoformat()]
    assert site.purge(2, today) == [(today - timedelta(days=3)).isoformat()]
    left = sorted(os.listdir(tmp_path / ".damas-trash"))
    assert left == [today.isoformat(), "notes"]


def test_an_agent_purges_the_quarantine_once_a_day(sites):
    """The first cycle of the day removes the day folders older than trashRetention;
    the later cycles of that day do not list the quarantine again (over ssh, a round
    trip each)."""
    set_global_parameters(sites.tracker, {"trashRetention": 30})
    trash = sites.roots["tokyo"] / ".damas-trash"
    old = (datetime.now(UTC).date() - timedelta(days=40)).isoformat()
    (trash / old).mkdir(parents=True)
    sites.run("tokyo")
    assert not (trash / old).exists()
    (trash / old).mkdir()
    sites.run("tokyo")
    assert (trash / old).exists()  # the next day's first cycle removes it


def test_a_rename_at_the_origin_is_a_move_at_the_other_sites(sites):
    for i in range(3):
        sites.write("paris", f"/shotA/f{i}.exr", "x" * (i + 1))
    sites.write("paris", "/other.txt", "o")
    sites.run(rounds=2)
    set_global_parameters(sites.tracker, {"propagateDeletions": True, "maxDelete": 50})
    inode = sites.path("tokyo", "/shotA/f2.exr").stat().st_ino
    os.rename(sites.roots["paris"] / "shotA", sites.roots["paris"] / "shotB")
    r = sites.run("paris")[0]
    old = [f"/shotA/f{i}.exr" for i in range(3)]
    new = [f"/shotB/f{i}.exr" for i in range(3)]
    assert sorted(r.deleted) == old and sorted(r.published) == new
    el = sites.tracker.read("/shotA/f1.exr")
    assert el["deleted"] is True and el["renamed_to"] == "/shotB/f1.exr"
    assert sites.tracker.read("/shotB/f1.exr")["renamed_from"] == "/shotA/f1.exr"
    history = sites.tracker.search_elements("#parent:/shotA/f1.exr", sort="time")
    assert history[-1]["comment"] == "renamed to /shotB/f1.exr at paris"
    # 3 of 4 files moved: moves are not deletions, the brake lets them through
    tokyo = sites.run("tokyo")[0]
    assert sorted(tokyo.moved) == list(zip(old, new, strict=True)) and tokyo.trashed == []
    assert sites.path("tokyo", "/shotB/f2.exr").stat().st_ino == inode  # moved, not copied
    assert not (sites.roots["tokyo"] / "shotA").exists() or not any(
        (sites.roots["tokyo"] / "shotA").iterdir()
    )
    assert not (sites.roots["tokyo"] / ".damas-trash").exists()
    for report in sites.run(rounds=2):
        assert not report.published and not report.failed and not report.trashed
    el = sites.tracker.read("/shotB/f2.exr")
    assert el["synced_tokyo"] == el["time"] and el["synced_lyon"] == el["time"]


def test_without_propagation_a_rename_is_recorded_and_the_new_file_copied(sites):
    sites.write("paris", "/a.txt", "aaa")
    sites.write("paris", "/keep.txt", "k")
    sites.run(rounds=2)
    os.rename(sites.path("paris", "/a.txt"), sites.path("paris", "/b.txt"))
    sites.run("paris")
    assert sites.tracker.read("/a.txt")["renamed_to"] == "/b.txt"
    tokyo = sites.run("tokyo")[0]
    assert tokyo.moved == [] and tokyo.received == ["/b.txt"]
    assert sites.path("tokyo", "/a.txt").exists()  # recorded only: the old copy stays


def test_a_copy_with_the_same_size_and_mtime_is_not_a_rename(sites):
    import shutil

    sites.write("paris", "/a.txt", "aaa")
    sites.write("paris", "/keep.txt", "k")
    sites.run(rounds=2)
    old, new = sites.path("paris", "/a.txt"), sites.path("paris", "/b.txt")
    shutil.copy2(old, new)  # the same size and mtime, to the nanosecond; another inode
    assert os.stat(old).st_mtime_ns == os.stat(new).st_mtime_ns
    assert os.stat(old).st_ino != os.stat(new).st_ino
    old.unlink()
    sites.run("paris")
    gone, copy = sites.tracker.read("/a.txt"), sites.tracker.read("/b.txt")
    assert gone["deleted"] is True and "renamed_to" not in gone
    assert "renamed_from" not in copy and copy["comment"] == "scanned at paris"
    # the same file under another name is a rename
    os.rename(new, sites.path("paris", "/c.txt"))
    sites.run("paris")
    assert sites.tracker.read("/b.txt")["renamed_to"] == "/c.txt"
    assert sites.tracker.read("/c.txt")["renamed_from"] == "/b.txt"
