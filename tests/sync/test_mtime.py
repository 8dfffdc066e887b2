"""``file_mtime`` is the file's mtime in integer milliseconds, as the seed says; elements
written by earlier versions (seconds, a float) are still the same version, and a scan
rewrites them in milliseconds without a new version or a transfer."""

from __future__ import annotations

import os

from damas_core.sync import Agent
from damas_core.sync.volumes import tracked_files

from .conftest import needs_rsync

NS = 1_567_529_676_123_456_789  # the seed's example mtime, with a fraction


def test_scans_store_integer_milliseconds(sites):
    os.utime(sites.write("paris", "/a.exr", "a"), ns=(NS, NS))
    os.utime(sites.write("paris", "/whole.exr", "w"), ns=(1_567_529_676 * 10**9,) * 2)
    seq = sites.roots["paris"] / "seq"
    seq.mkdir()
    for i, ns in enumerate((NS - 10**9, NS)):
        os.utime(sites.write("paris", f"/seq/{i}.exr", "f"), ns=(ns, ns))
    sites.tracker.publish({"_id": "/seq/", "origin": "paris", "comment": "a package"})
    sites.run("paris")
    files = tracked_files(sites.tracker)
    assert files["/a.exr"]["file_mtime"] == 1_567_529_676_123
    assert files["/whole.exr"]["file_mtime"] == 1_567_529_676_000
    assert files["/seq/"]["file_mtime"] == 1_567_529_676_123  # the latest direct file
    assert all(type(el["file_mtime"]) is int for el in files.values())
    # a change within the same millisecond is no new version; the next millisecond is
    os.utime(sites.path("paris", "/a.exr"), ns=(NS + 400_000, NS + 400_000))
    assert sites.run("paris")[0].modified == []
    os.utime(sites.path("paris", "/a.exr"), ns=(NS + 1_000_000, NS + 1_000_000))
    assert sites.run("paris")[0].modified == ["/a.exr"]
    assert sites.tracker.read("/a.exr")["file_mtime"] == 1_567_529_676_124


def _as_earlier_versions_wrote(tracker, root) -> dict[str, dict]:
    """Every file element's file_mtime back in seconds, as earlier versions wrote it:
    the ``st_mtime`` (a float) of the copy under ``root``."""
    files = tracked_files(tracker)
    tracker.update([{"_id": i, "file_mtime": os.stat(root / i[1:]).st_mtime} for i in files])
    return tracked_files(tracker)


@needs_rsync
def test_elements_in_seconds_are_rewritten_without_new_versions_or_transfers(sites):
    t = sites.tracker
    os.utime(sites.write("paris", "/a.exr", "a" * 10), ns=(NS, NS))
    os.utime(sites.write("tokyo", "/t/b.exr", "b" * 20), ns=(NS - 7 * 10**9, NS - 7 * 10**9))
    os.utime(sites.write("paris", "/whole.exr", "w"), ns=(1_567_529_676 * 10**9,) * 2)
    sites.run(rounds=2)
    assert all(r.received == [] for r in sites.run())  # settled: every site holds all
    before = _as_earlier_versions_wrote(t, sites.roots["lyon"])
    assert before["/a.exr"]["file_mtime"] == 1_567_529_676.1234567
    assert before["/whole.exr"]["file_mtime"] == 1_567_529_676
    history = len(t.search("#parent:*"))
    # the new version of the engine starts: new agents, each compares every file
    sites.agents.clear()
    t.update({"_id": "vol_lyon", "enableReception": False, "enableEmission": False})
    reports = sites.run()
    for r in reports:
        assert (r.published, r.modified, r.deleted, r.conflicts) == ([], [], [], []), r
        assert (r.received, r.emitted, r.failed, r.rsync_calls) == ([], [], {}, 0), r
    after = tracked_files(t)
    assert after["/a.exr"]["file_mtime"] == 1_567_529_676_123
    assert after["/t/b.exr"]["file_mtime"] == 1_567_529_669_123
    assert after["/whole.exr"]["file_mtime"] == 1_567_529_676_000
    for file_id, el in after.items():
        assert type(el["file_mtime"]) is int
        for key in ("time", "synced_paris", "synced_tokyo", "synced_lyon", "origin"):
            assert el.get(key) == before[file_id].get(key), (file_id, key)
    assert len(t.search("#parent:*")) == history  # nothing published again
    # and it stays so: the next cycles write nothing to the files
    assert all(not (r.modified or r.received or r.rsync_calls) for r in sites.run())


def test_a_scan_only_volume_rewrites_seconds_once(tmp_path, tracker):
    root = tmp_path / "ingest"
    root.mkdir()
    tracker.create({"_id": "vol_ingest", "name": "ingest", "url": f"file://{root}/"})
    tracker.update({"_id": "vol_ingest", "enableReception": False, "enableEmission": False})
    for i in range(3):
        path = root / f"{i}.dpx"
        path.write_text(str(i))
        os.utime(path, ns=(NS + i, NS + i))
    Agent(tracker, "vol_ingest", settle=0).run_once()
    _as_earlier_versions_wrote(tracker, root)
    agent = Agent(tracker, "vol_ingest", settle=0)
    first = agent.run_once()
    assert first.modified == [] and first.published == []
    assert {el["file_mtime"] for el in tracked_files(tracker).values()} == {1_567_529_676_123}
    second = agent.run_once()  # a rescan: nothing is left to rewrite
    assert second.modified == [] and second.published == []
