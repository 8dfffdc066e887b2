"""The sync engine's one-request view of the tracker reads the same on every backend."""

from __future__ import annotations

from damas_core.sync.volumes import create_volume, tracked_files, tracker_view, volumes


def test_tracker_view_is_the_files_and_the_volumes(tracker):
    create_volume(tracker, {"_id": "vol_b", "name": "tokyo", "url": "ssh://s@tokyo:22/p/"})
    create_volume(tracker, {"_id": "vol_a", "name": "paris", "url": "file:///srv/p/"})
    tracker.publish(
        [
            {"_id": "/a.exr", "origin": "paris", "comment": "new", "file_size": 1},
            {"_id": "/seq/", "origin": "tokyo", "comment": "new"},
        ]
    )
    tracker.create(
        [
            {"_id": "/plain"},  # not a file: no origin
            {"_id": "/url-like", "url": "file:///x/", "name": "nope"},  # a path: no volume
            {"_id": "not-a-volume", "url": "http://x/", "name": "web"},
        ]
    )
    files, vols = tracker_view(tracker)
    assert sorted(files) == ["/a.exr", "/seq/"] == sorted(tracked_files(tracker))
    assert files["/a.exr"]["file_size"] == 1
    assert [v["_id"] for v in vols] == ["vol_a", "vol_b"] == [v["_id"] for v in volumes(tracker)]
