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
