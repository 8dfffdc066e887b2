"""Scans of a volume that neither receives nor emits: after a full comparison, a scan
reads only the elements of files that may have changed, and still writes what a full
comparison would."""

from __future__ import annotations

import os
import time

import pytest
from damas_core.sync import Agent, resolve
from damas_core.sync.scanner import Scanner
from damas_core.sync.site import LocalSite
from damas_core.sync.view import is_file
from damas_core.sync.volumes import read_files, tracked_files

from .conftest import needs_rsync


class Reads:
    """The tracker, counting the file ids read (by read or from the change feed) and the
    whole-index searches."""

    def __init__(self, tracker) -> None:
        self._tracker = tracker
        self.ids: list[str] = []
        self.statuses: list[str | None] = []  # agentStatus of each write of vol_paris
        self.searches = 0

    def read(self, ids):
        self.ids.extend(i for i in ([ids] if isinstance(ids, str) else ids) if i.startswith("/"))
        return self._tracker.read(ids)

    def changes(self, *args, **kwargs):
        page = self._tracker.changes(*args, **kwargs)
        self.ids.extend(
            c["_id"] for c in page["changes"] if is_file(c.get("element") or {"_id": ""})
        )
        return page

    def comment(self, *args, **kwargs):
        return self._tracker.comment(*args, **kwargs)

    def delete(self, *args, **kwargs):
        return self._tracker.delete(*args, **kwargs)

    def search(self, *args, **kwargs):
        return self._tracker.search(*args, **kwargs)

    def search_elements(self, *args, **kwargs):
        self.searches += 1
        return self._tracker.search_elements(*args, **kwargs)

    def publish(self, *args, **kwargs):
        return self._tracker.publish(*args, **kwargs)

    def update(self, elements, *args, **kwargs):
        for e in [elements] if isinstance(elements, dict) else elements:
            if e["_id"] == "vol_paris":
                self.statuses.append(e.get("agentStatus"))
        return self._tracker.update(elements, *args, **kwargs)

    def reset(self) -> None:
        self.ids.clear()
        self.statuses.clear()
        self.searches = 0


@pytest.fixture
def scan_only(sites):
    """``paris`` only scans: its agent reads the tracker through :class:`Reads`."""
    sites.tracker.update({"_id": "vol_paris", "enableReception": False, "enableEmission": False})
    reads = Reads(sites.tracker)
    sites.agents["paris"] = Agent(reads, "vol_paris", settle=0)
    return sites, reads


def full_scan_finds_nothing(sites, site: str = "paris") -> None:
    """A fresh scanner comparing every file would write nothing: the scans kept up."""
    vol = sites.tracker.read(f"vol_{site}")
    fresh = Scanner(site, str(sites.roots[site]) + "/", settle=0)
    changes = fresh.compare(vol, tracked_files(sites.tracker))
    assert not changes.publish and not changes.update, (changes.publish, changes.update)


def test_unchanged_tree_reads_no_file_element(scan_only):
    sites, reads = scan_only
    for i in range(20):
        sites.write("paris", f"/d{i % 3}/f{i}.txt", str(i))
    first = sites.run("paris")[0]
    assert len(first.published) == 20 and reads.searches == 0
    # the next cycle reads from the feed what the first one wrote, then nothing
    sites.run("paris")
    reads.reset()
    again = sites.run("paris")[0]
    assert again.scanned == 20 and not again.published and not again.modified
    assert reads.ids == [] and reads.searches == 0
    assert reads.statuses == ["idle"]  # an idle cycle writes its volume once
    # one changed file: compared with the view, then its new element read back once
    reads.reset()
    sites.write("paris", "/d1/f4.txt", "four, longer")
    r = sites.run("paris")[0]
    assert r.modified == ["/d1/f4.txt"] and reads.ids == []
    assert reads.statuses == ["scanning", "idle"]  # a scan with writes says so first
    sites.run("paris")
    assert reads.ids == ["/d1/f4.txt"] and reads.searches == 0
    assert sites.tracker.read("/d1/f4.txt")["file_size"] == len("four, longer")
    full_scan_finds_nothing(sites)


def test_a_listing_byte_for_byte_the_last_one_is_not_read_again(tmp_path):
    """With GNU find, a rescan whose listing has the last one's digest keeps the last
    tree as it is (nothing parsed again) and still compares the files that were not
    settled; one changed mtime makes a listing that is read."""
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    for name in ("a.txt", "d/b.txt"):
        (root / name).write_text(name)
        os.utime(root / name, (1_600_000_000, 1_600_000_000))
    scanner = Scanner("paris", LocalSite(str(root), walker="find"), settle=0)
    changes = scanner.compare({}, {})
    scanner.remember(changes, [e["_id"] for e in changes.publish], {})
    kept = scanner.state
    assert kept is not None and kept.digest is not None
    published = {e["_id"]: {**e, "synced_paris": e["time"]} for e in changes.publish}
    again = scanner.rescan({}, lambda ids: {i: published[i] for i in ids if i in published})
    assert again is not None and again.tree is kept.looks and not again
    # an element changed in the tracker alone is compared with the same tree
    published["/a.txt"]["file_size"] = 99
    told = scanner.rescan(
        {}, lambda ids: {i: published[i] for i in ids if i in published}, changed=["/a.txt"]
    )
    assert told.tree is kept.looks and [u["_id"] for u in told.update] == ["/a.txt"]
    os.utime(root / "d/b.txt", ns=(1_600_000_000_000_000_001,) * 2)
    moved = scanner.rescan({}, lambda ids: {i: published[i] for i in ids if i in published})
    assert moved.tree is not kept.looks and moved.digest != kept.digest
    assert moved.tree["/d/b.txt"][1] == 1_600_000_000_000_000_001


def test_rescan_writes_what_a_full_scan_would(scan_only):
    sites, _ = scan_only
    sites.write("paris", "/keep.txt", "k")
    sites.write("paris", "/grow.txt", "g")
    sites.write("paris", "/touch.txt", "t", mtime=1_000_000)
    sites.write("paris", "/gone.txt", "x")
    sites.run("paris")
    sites.write("paris", "/grow.txt", "grown")  # new size
    os.utime(sites.path("paris", "/touch.txt"), (1_000_050, 1_000_050))  # same size, new mtime
    sites.path("paris", "/gone.txt").unlink()
    sites.write("paris", "/new/deep/n.txt", "n")
    r = sites.run("paris")[0]
    assert sorted(r.modified) == ["/grow.txt", "/touch.txt"]
    assert r.deleted == ["/gone.txt"] and r.published == ["/new/deep/n.txt"]
    assert sites.tracker.read("/touch.txt")["file_mtime"] == 1_000_050_000  # ms
    full_scan_finds_nothing(sites)
    # the deleted file comes back as it was: the deletion is undone
    sites.write("paris", "/gone.txt", "x")
    back = sites.run("paris")[0]
    assert back.published == [] and "deleted" not in sites.tracker.read("/gone.txt")
    full_scan_finds_nothing(sites)


@needs_rsync
def test_conflicted_file_is_compared_at_every_scan(scan_only):
    sites, _ = scan_only
    sites.write("paris", "/c.txt", "base", mtime=1_000_000)
    sites.run("paris", "tokyo")
    assert sites.path("tokyo", "/c.txt").read_text() == "base"
    sites.write("tokyo", "/c.txt", "tokyo edit")
    sites.run("tokyo")  # a newer version, written at tokyo
    time.sleep(0.01)
    sites.write("paris", "/c.txt", "paris edit")
    r = sites.run("paris")[0]
    assert r.conflicts == ["/c.txt"] and sites.tracker.read("/c.txt")["conflict_paris"]
    assert not sites.run("paris")[0].modified  # paris neither publishes nor overwrites it
    # keeping the local copy: the file did not change on disk, and the next scan publishes it
    resolve(sites.tracker, "/c.txt", "paris", keep="local")
    r = sites.run("paris")[0]
    assert r.modified == ["/c.txt"]
    assert sites.tracker.read("/c.txt")["file_size"] == len("paris edit")
    full_scan_finds_nothing(sites)


def test_a_changed_volume_rule_makes_a_full_scan(scan_only):
    sites, _ = scan_only
    sites.tracker.update({"_id": "vol_paris", "enableDiscoveryDeletedFiles": False})
    sites.write("paris", "/a.txt", "a")
    sites.write("paris", "/b.txt", "b")
    sites.run("paris")
    sites.path("paris", "/b.txt").unlink()
    assert sites.run("paris")[0].deleted == []  # deletions are not recorded
    assert sites.run("paris")[0].deleted == []
    # /b.txt went away two scans ago: only a full comparison still sees it
    sites.tracker.update({"_id": "vol_paris", "enableDiscoveryDeletedFiles": True})
    assert sites.run("paris")[0].deleted == ["/b.txt"]


def test_a_package_published_elsewhere_changes_the_walk(scan_only):
    sites, _ = scan_only
    sites.write("paris", "/seq/a.exr", "a")
    sites.write("paris", "/seq/b.exr", "b")
    assert sorted(sites.run("paris")[0].published) == ["/seq/a.exr", "/seq/b.exr"]
    # the folder becomes a package, published by hand
    sites.tracker.publish({"_id": "/seq/", "origin": "paris", "comment": "a package"})
    sites.write("paris", "/seq/c.exr", "c")
    r = sites.run("paris")[0]
    assert r.published == [] and r.modified == ["/seq/"]
    assert sorted(r.folded) == ["/seq/a.exr", "/seq/b.exr"]  # tracked once: in the package
    assert sites.tracker.read("/seq/c.exr") is None and sites.tracker.read("/seq/a.exr") is None
    el = sites.tracker.read("/seq/")
    assert el["file_count"] == 3 and el["file_size"] == 3
    full_scan_finds_nothing(sites)


def test_changes_made_in_the_tracker_alone_are_seen_at_the_next_scan(scan_only):
    sites, _ = scan_only
    sites.write("paris", "/a.txt", "a")
    sites.run("paris")
    sites.tracker.delete("/a.txt")  # by hand: nothing changed on disk
    assert sites.run("paris")[0].published == []  # untracked: not published again
    assert sites.run("paris")[0].published == []
    assert sites.tracker.read("/a.txt") is None
    # once the file changes it is a new file
    sites.write("paris", "/a.txt", "a, again")
    assert sites.run("paris")[0].published == ["/a.txt"]
    assert sites.tracker.read("/a.txt")["origin"] == "paris"
    sites.tracker.update({"_id": "/a.txt", "deleted": True})
    assert "deleted" in sites.tracker.read("/a.txt")
    time.sleep(0.1)
    sites.run("paris")
    assert "deleted" not in sites.tracker.read("/a.txt")


def test_a_failed_scan_forgets_what_it_saw(scan_only, monkeypatch):
    sites, reads = scan_only
    sites.write("paris", "/a.txt", "a")
    sites.run("paris")
    sites.write("paris", "/b.txt", "b")

    def broken(_elements):
        raise OSError("disk full")

    monkeypatch.setattr(reads, "publish", broken)
    with pytest.raises(OSError):
        sites.agent("paris").run_once()
    assert sites.agent("paris").scanner.state is None
    monkeypatch.undo()
    reads.reset()
    assert sites.run("paris")[0].published == ["/b.txt"]  # a full comparison
    full_scan_finds_nothing(sites)


def test_read_files_keeps_only_file_elements(tracker):
    tracker.create([{"_id": "/plain"}, {"_id": "/child", "origin": "p", "#parent": "/f"}])
    tracker.publish({"_id": "/f", "origin": "p", "comment": "c"})
    assert list(read_files(tracker, ["/plain", "/child", "/f", "/nope"])) == ["/f"]
    assert list(tracked_files(tracker)) == ["/f"]


@needs_rsync
def test_agents_work_through_the_http_client(sites):
    from damas_core.client import connect
    from damas_core.wsgi import make_app
    from tests.http.conftest import serving

    sites.tracker.update({"_id": "vol_paris", "enableReception": False, "enableEmission": False})
    sites.write("paris", "/a.txt", "a")
    with serving(make_app(sites.tracker, auth="none")) as url, connect(url) as client:
        paris = Agent(client, "vol_paris", settle=0)
        assert paris.run_once().published == ["/a.txt"]
        sites.write("paris", "/b.txt", "b")
        assert paris.run_once().published == ["/b.txt"]
        tokyo = Agent(client, "vol_tokyo", settle=0)
        assert sorted(tokyo.run_once().received) == ["/a.txt", "/b.txt"]
    assert sites.path("tokyo", "/b.txt").read_text() == "b"
    full_scan_finds_nothing(sites)


@needs_rsync
def test_a_version_written_elsewhere_after_a_deletion_at_the_origin(scan_only):
    # the steps a state machine run found: paris writes, scans; tokyo fetches; tokyo
    # rewrites; paris deletes, scans; tokyo scans (a new version, the file is back); paris
    # scans. paris recorded the deletion of the version it held: tokyo's newer version,
    # which paris never had, is not deleted again (a full comparison did: a rescan did not)
    sites, _ = scan_only
    sites.write("paris", "/d/b.txt", "1:x")
    sites.run("paris")
    full_scan_finds_nothing(sites)
    sites.run("tokyo")
    sites.write("tokyo", "/d/b.txt", "2:xxxxx")
    sites.path("paris", "/d/b.txt").unlink()
    assert sites.run("paris")[0].deleted == ["/d/b.txt"]
    full_scan_finds_nothing(sites)
    assert sites.run("tokyo")[0].modified == ["/d/b.txt"]
    el = sites.tracker.read("/d/b.txt")
    assert "deleted" not in el and el["file_size"] == len("2:xxxxx")
    assert sites.run("paris")[0].deleted == []
    full_scan_finds_nothing(sites)
    assert "deleted" not in sites.tracker.read("/d/b.txt")


@needs_rsync
def test_the_origin_fetches_a_version_written_after_its_deletion(sites):
    # the same steps with a paris that receives: it gets tokyo's version back
    sites.write("paris", "/d/b.txt", "1:x")
    sites.run("paris", "tokyo")
    sites.write("tokyo", "/d/b.txt", "2:xxxxx")
    sites.path("paris", "/d/b.txt").unlink()
    assert sites.run("paris")[0].deleted == ["/d/b.txt"]
    sites.run("tokyo")
    r = sites.run("paris")[0]
    assert r.deleted == [] and r.received == ["/d/b.txt"]
    assert sites.path("paris", "/d/b.txt").read_text() == "2:xxxxx"
