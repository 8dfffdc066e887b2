"""What a volume's agent records about its storage (precision, capacity), the
enableDiscoveryUpdatedFiles switch, and the volumes an agent refuses to run here."""

from __future__ import annotations

import json
import os
import time

import pytest
from click.testing import CliRunner
from damas_core.sync import Agent
from damas_core.sync.exits import EXIT_CONFIG
from damas_core.sync.site import SECOND, LocalSite
from damas_core.sync.volumes import create_volume

from damas_core.cli import main
from damas_core.errors import BadRequest

from .conftest import needs_rsync


def _damas(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@needs_rsync
def test_a_listing_in_whole_seconds_makes_no_version_conflict_or_transfer(tmp_path, tracker):
    from .conftest import Sites

    sites = Sites(tmp_path, tracker, names=("paris", "tokyo"))
    seconds = int(time.time()) - 100
    for i in range(3):
        sites.write("paris", f"/d/f{i}.txt", f"file {i}")
        os.utime(sites.path("paris", f"/d/f{i}.txt"), ns=(seconds * 10**9 + 123_456_789,) * 2)
    tokyo = Agent(
        tracker,
        "vol_tokyo",
        settle=0,
        site=LocalSite(str(sites.roots["tokyo"]), precision_ns=SECOND),
    )
    sites.agents["tokyo"] = tokyo
    sites.run(rounds=2)
    before = {f"/d/f{i}.txt": tracker.read(f"/d/f{i}.txt") for i in range(3)}
    assert all(el["file_mtime"] == seconds * 1000 + 123 for el in before.values())
    # tokyo's storage keeps whole seconds (as an sshfs mount or an rsync listing shows)
    for i in range(3):
        os.utime(sites.path("tokyo", f"/d/f{i}.txt"), ns=(seconds * 10**9,) * 2)
    tokyo.scanner.forget()  # a full comparison, as after a restart
    for report in sites.run(rounds=2):
        assert not report.modified and not report.conflicts and not report.published, report
        assert not report.received and not report.emitted and not report.failed, report
    assert {i: tracker.read(i) for i in before} == before
    assert tracker.read("vol_tokyo")["mtimePrecision"] == SECOND
    assert tracker.read("vol_paris")["mtimePrecision"] == 1


def test_the_agent_records_its_volumes_capacity_each_cycle(tmp_path):
    import damas_core

    t = damas_core.open("memory://")
    create_volume(t, {"_id": "v", "name": "paris", "url": f"file://{tmp_path}/"})
    Agent(t, "v", settle=0).run_once()
    vol = t.read("v")
    st = os.statvfs(tmp_path)
    assert vol["bytesTotal"] == st.f_blocks * st.f_frsize
    assert 0 <= vol["bytesUsed"] <= vol["bytesTotal"]
    assert 0 <= vol["bytesRemaining"] <= vol["bytesTotal"]


def test_without_updated_files_discovery_only_new_files_are_published(tmp_path):
    import damas_core

    t = damas_core.open("memory://")
    create_volume(
        t,
        {
            "_id": "v",
            "name": "paris",
            "url": f"file://{tmp_path}/",
            "enableDiscoveryUpdatedFiles": False,
        },
    )
    (tmp_path / "a.txt").write_text("a")
    agent = Agent(t, "v", settle=0)
    assert agent.run_once().published == ["/a.txt"]
    before = t.read("/a.txt")
    (tmp_path / "a.txt").write_text("a, changed")
    (tmp_path / "b.txt").write_text("b")
    report = agent.run_once()
    assert report.published == ["/b.txt"] and report.modified == [] and not report.conflicts
    assert t.read("/a.txt") == before
    t.update({"_id": "v", "enableDiscoveryUpdatedFiles": True})
    assert agent.run_once().modified == ["/a.txt"]


def test_an_agent_refuses_a_volume_driven_by_a_hub(tmp_path):
    store = f"lmdb://{tmp_path}/store"
    import damas_core

    with damas_core.open(store) as t:
        create_volume(t, {"_id": "vol_hub", "name": "hub", "url": f"file://{tmp_path}/"})
        t.create(
            {"_id": "vol_nas", "name": "nas", "url": "ssh://sync@nas.example/p/", "hub": "vol_hub"}
        )
        with pytest.raises(BadRequest, match="damas hub run vol_hub"):
            Agent(t, "vol_nas")
    run = _damas("sync", "agent", "vol_nas", "--once", "--store", store)
    assert run.exit_code == EXIT_CONFIG
    assert "damas hub run vol_hub" in run.output
    run = _damas("sync", "agent", "vol_nas", "--store", store)  # the long-running agent too
    assert run.exit_code == EXIT_CONFIG and "damas hub run" in run.output
    assert not (tmp_path / "xdg-state" / "damas" / "agents" / "vol_nas").exists()


def test_an_ssh_volume_of_another_host_needs_root(tmp_path):
    store = f"lmdb://{tmp_path}/store"
    mounted = tmp_path / "mounted here"
    mounted.mkdir()
    (mounted / "a.txt").write_text("a")
    import damas_core

    with damas_core.open(store) as t:
        create_volume(t, {"_id": "vol_nas", "name": "nas", "url": "ssh://sync@nas.example/p/"})
    run = _damas("sync", "agent", "vol_nas", "--once", "--store", store)
    assert run.exit_code == EXIT_CONFIG
    assert "not on this machine" in run.output and "--root" in run.output
    run = _damas(
        "sync", "agent", "vol_nas", "--once", "--settle", "0", "--root", str(mounted),
        "--store", store,
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    assert json.loads(run.output)["published"] == ["/a.txt"]
