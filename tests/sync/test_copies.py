"""A copy is claimed (``synced_<site>``) only when it is at the destination after the
transfer and is the element's version, also for files published by hand as the seed
shows them (``_id``, ``comment``, ``origin``; no ``file_size`` nor ``file_mtime``)."""

from __future__ import annotations

import getpass
import os

import pytest
from damas_core.sync import status
from damas_core.sync.volumes import create_volume

from .conftest import needs_rsync
from .test_ssh import sshd  # noqa: F401 (the fixture, shared)

pytestmark = needs_rsync


def _by_hand(sites, file_id: str) -> None:
    # as the seed publishes a file: no size, no mtime, no time of ours
    sites.tracker.publish({"_id": file_id, "comment": "published by hand", "origin": "paris"})


def test_a_file_missing_at_its_origin_is_claimed_nowhere(sites):
    sites.tracker.update({"_id": "vol_paris", "enableScans": False})  # paris only serves
    _by_hand(sites, "/seed/missing.exr")
    reports = sites.run("tokyo", "lyon")
    for site, report in zip(("tokyo", "lyon"), reports):
        assert report.failed == {"/seed/missing.exr": 23}, report
        assert report.received == []
        assert not sites.path(site, "/seed/missing.exr").exists()
    el = sites.tracker.read("/seed/missing.exr")
    assert "synced_tokyo" not in el and "synced_lyon" not in el
    assert el["syncError_tokyo"] == 23 and el["syncError_lyon"] == 23
    assert "file_size" not in el and "file_mtime" not in el
    shown = status(sites.tracker)
    row = next(r for r in shown["files"] if r["_id"] == "/seed/missing.exr")
    assert row["states"]["tokyo"]["state"] == "error" and row["states"]["tokyo"]["code"] == 23
    for site in ("tokyo", "lyon"):
        done = shown["completion"][site]
        assert (done["files_ok"], done["files_wanted"]) == (0, 1), (site, done)


def test_a_file_published_by_hand_records_the_delivered_copy(sites):
    sites.tracker.update({"_id": "vol_paris", "enableScans": False})
    path = sites.write("paris", "/seed/plate.exr", b"p" * 1234)
    os.utime(path, ns=(1_567_529_676_123_456_789,) * 2)
    _by_hand(sites, "/seed/plate.exr")
    r = sites.run("tokyo")[0]
    assert r.received == ["/seed/plate.exr"] and r.failed == {}
    el = sites.tracker.read("/seed/plate.exr")
    # the delivered copy's size and mtime (ms), then the copy is claimed
    assert el["file_size"] == 1234 and el["file_mtime"] == 1_567_529_676_123
    assert el["synced_tokyo"] >= (el.get("time") or 0)
    assert os.stat(sites.path("tokyo", "/seed/plate.exr")).st_mtime_ns == 1_567_529_676_123_456_789
    # lyon now checks its copy against those
    assert sites.run("lyon")[0].received == ["/seed/plate.exr"]
    assert sites.tracker.read("/seed/plate.exr")["synced_lyon"] >= (el.get("time") or 0)


def test_the_missing_source_comes_back_and_is_then_claimed(sites):
    sites.tracker.update({"_id": "vol_paris", "enableScans": False})
    _by_hand(sites, "/seed/late.exr")
    assert sites.run("tokyo")[0].failed == {"/seed/late.exr": 23}
    sites.write("paris", "/seed/late.exr", "at last")
    sites.tracker.update({"_id": "/seed/late.exr", "syncLastAttempt_tokyo": 0})  # retry now
    r = sites.run("tokyo")[0]
    assert r.received == ["/seed/late.exr"]
    el = sites.tracker.read("/seed/late.exr")
    assert "syncError_tokyo" not in el and el["file_size"] == len("at last")
    assert sites.path("tokyo", "/seed/late.exr").read_text() == "at last"


def test_an_emission_to_a_site_without_an_agent_claims_only_what_is_there(sites):
    # paris pushes to lyon (its agent never ran): a missing source is pushed nowhere
    sites.tracker.update({"_id": "vol_paris", "enableScans": False, "enableReception": False})
    _by_hand(sites, "/seed/push.exr")
    r = sites.run("paris")[0]
    assert r.emitted == [] and r.failed == {"/seed/push.exr": 23}, r
    el = sites.tracker.read("/seed/push.exr")
    assert "synced_lyon" not in el and el["syncError_lyon"] == 23
    assert not sites.path("lyon", "/seed/push.exr").exists()


@pytest.mark.slow
def test_a_push_over_ssh_claims_no_copy_it_left_alone(sites, sshd, tmp_path):  # noqa: F811
    # a site whose agent is down gets only copies it lacks (--ignore-existing): a
    # different copy already there is checked as it is, not as rsync skipped it
    port, ssh = sshd
    remote_root = tmp_path / "remote site"
    remote_root.mkdir()
    url = f"ssh://{getpass.getuser()}@127.0.0.1:{port}{remote_root}/"
    create_volume(sites.tracker, {"_id": "vol_remote", "name": "remote", "url": url})
    (remote_root / "same name.txt").write_text("theirs, not ours")
    sites.write("paris", "/same name.txt", "ours")
    sites.write("paris", "/new.txt", "new")
    r = sites.agent("paris", ssh_command=ssh).run_once()
    assert "/same name.txt" in r.waiting, r
    assert (remote_root / "new.txt").read_text() == "new"
    assert sites.tracker.read("/new.txt")["synced_remote"] > 0
    el = sites.tracker.read("/same name.txt")
    assert "synced_remote" not in el and "syncWait_remote" in el
    assert (remote_root / "same name.txt").read_text() == "theirs, not ours"
