"""Folder packages: a folder and its direct files travel and are tracked as one element."""

from __future__ import annotations

import time

from .conftest import needs_rsync

pytestmark = needs_rsync


def test_detected_package_travels_as_one(sites):
    sites.run()
    sites.tracker.update(
        {
            "_id": "vol_paris",
            "enableDiscoveryPackages": True,
            "packagePatternRules": [r"^/seq/[^/]+/$"],
        }
    )
    for i in range(3):
        sites.write("paris", f"/seq/sh010/f{i}.exr", "x" * (i + 1))
    sites.write("paris", "/seq/sh010/sub/deep.txt", "deep")
    r = sites.run("paris")[0]
    assert sorted(r.published) == ["/seq/sh010/", "/seq/sh010/sub/deep.txt"]
    el = sites.tracker.read("/seq/sh010/")
    assert el["file_size"] == 6 and el["file_count"] == 3
    sites.run("tokyo")
    assert sorted(p.name for p in sites.path("tokyo", "/seq/sh010/").glob("*.exr")) == [
        "f0.exr",
        "f1.exr",
        "f2.exr",
    ]
    assert sites.path("tokyo", "/seq/sh010/sub/deep.txt").read_text() == "deep"
    assert sites.tracker.read("/seq/sh010/")["synced_tokyo"] >= el["time"]
    # a change inside marks the package modified
    time.sleep(0.01)
    sites.write("paris", "/seq/sh010/f3.exr", "new")
    r = sites.run("paris")[0]
    assert r.modified == ["/seq/sh010/"]
    sites.run("tokyo")
    assert sites.path("tokyo", "/seq/sh010/f3.exr").read_text() == "new"


def test_package_published_by_hand(sites):
    sites.run()
    sites.tracker.update({"_id": "vol_paris", "enableDiscoveryPackages": True})
    sites.write("paris", "/cache/a", "a")
    sites.write("paris", "/cache/b", "bb")
    sites.tracker.publish({"_id": "/cache/", "origin": "paris", "comment": "a cache folder"})
    r = sites.run("paris")[0]
    assert r.published == [] and r.modified == ["/cache/"]
    assert sites.tracker.read("/cache/a") is None
    sites.run("lyon")
    assert sites.path("lyon", "/cache/b").read_text() == "bb"


def test_a_hand_published_package_keeps_its_comment(sites):
    sites.tracker.update({"_id": "vol_paris", "enableDiscoveryPackages": True})
    sites.write("paris", "/sim/a.vdb", "a")
    sites.tracker.publish({"_id": "/sim/", "origin": "paris", "comment": "smoke sim cache"})
    assert sites.run("paris")[0].modified == ["/sim/"]
    sites.write("paris", "/sim/b.vdb", "bb")
    assert sites.run("paris")[0].modified == ["/sim/"]
    el = sites.tracker.read("/sim/")
    assert el["comment"] == "smoke sim cache" and el["file_count"] == 2
    history = sites.tracker.search_elements("#parent:/sim/", sort="time")
    assert [h["comment"] for h in history] == [
        "smoke sim cache",
        "modified at paris",
        "modified at paris",
    ]
    assert [h.get("file_size") for h in history] == [None, 1, 3]


def test_a_tracked_folder_switched_to_a_package_is_folded_into_it(sites):
    for i in range(3):
        sites.write("paris", f"/shots/sh020/f{i}.exr", "x" * (i + 1))
    sites.write("paris", "/shots/notes.txt", "n")
    sites.run(rounds=2)
    assert sites.tracker.read("/shots/sh020/f0.exr") is not None
    sites.tracker.update(
        {
            "_id": "vol_paris",
            "enableDiscoveryPackages": True,
            "packagePatternRules": [r"^/shots/sh020/$"],
        }
    )
    r = sites.run("paris")[0]
    assert r.published == ["/shots/sh020/"]
    folded = [f"/shots/sh020/f{i}.exr" for i in range(3)]
    assert sorted(r.folded) == folded
    assert all(sites.tracker.read(i) is None for i in folded)
    [record] = sites.tracker.search_elements("#parent:/shots/sh020/ folded:*")
    assert sorted(record["folded"]) == folded and record["comment"].startswith("folded 3 files")
    # the files' history moved to the package, each child naming the file it was of
    for i in folded:
        assert sites.tracker.search(f'#parent:"{i}"') == []
        history = sites.tracker.search_elements(f'#parent:/shots/sh020/ folded_from:"{i}"')
        assert [h["comment"] for h in history] == ["scanned at paris"]
    # the other sites hold the files already; nothing is published twice anywhere
    for report in sites.run(rounds=2):
        assert not report.published and not report.failed
    tracked = sorted(sites.tracker.search("origin:* -#parent:*"))
    assert tracked == ["/shots/notes.txt", "/shots/sh020/"]
    assert sites.path("tokyo", "/shots/sh020/f2.exr").read_text() == "xxx"
