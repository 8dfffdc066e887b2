"""Untracked files: an element deleted in the tracker while its file exists is not
published again (at its origin or at a site holding a copy) until the file changes;
``damas untrack`` deletes the element and its history, keeps the files."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from damas_core.sync import Agent
from damas_core.sync.untrack import untrack

from damas_core.cli import main
from damas_core.errors import BadRequest

from .conftest import needs_rsync


@needs_rsync
def test_an_untracked_file_stays_untracked_everywhere_until_it_changes(sites, tmp_path):
    sites.write("paris", "/keep.txt", "k")
    sites.write("paris", "/render.log", "log")
    sites.run(rounds=2)
    assert sites.path("tokyo", "/render.log").exists()
    assert untrack(sites.tracker, ["/render.log"]) == ["/render.log"]
    assert sites.tracker.search("#parent:/render.log") == []
    for r in sites.run(rounds=2):
        assert r.published == [] and r.received == []
    assert sites.tracker.read("/render.log") is None
    assert (
        sites.path("paris", "/render.log").exists() and sites.path("tokyo", "/render.log").exists()
    )
    # changed at tokyo: a new file, tokyo its origin
    time.sleep(0.01)
    sites.write("tokyo", "/render.log", "a longer log")
    assert sites.run("tokyo")[0].published == ["/render.log"]
    assert sites.tracker.read("/render.log")["origin"] == "tokyo"


def test_the_view_remembers_untracked_files_across_restarts(sites, tmp_path):
    sites.tracker.update({"_id": "vol_paris", "enableReception": False, "enableEmission": False})
    sites.write("paris", "/a.txt", "a")
    state = str(tmp_path / "state")
    paris = Agent(sites.tracker, "vol_paris", settle=0, walker=sites.walker, state_dir=state)
    paris.run_once()
    sites.tracker.delete("/a.txt")
    paris.run_once()  # the feed reports the deletion: remembered
    paris.close()
    again = Agent(sites.tracker, "vol_paris", settle=0, walker=sites.walker, state_dir=state)
    assert "/a.txt" in again.view.gone
    assert again.run_once().published == []
    again.scanner.forget()  # a full comparison honours it too
    assert again.run_once().published == []
    again.close()


def test_untrack_refuses_what_is_not_a_file_id(tracker):
    tracker.publish({"_id": "/a", "origin": "paris", "comment": "c"})
    with pytest.raises(BadRequest, match="untrack error: a file id is a path"):
        untrack(tracker, ["/a", "vol_paris"])
    assert tracker.read("/a") is not None


def test_damas_untrack_on_a_store(tmp_path):
    import damas_core

    url = f"lmdb://{tmp_path}/store"
    t = damas_core.open(url)
    t.publish(
        [
            {"_id": "/a.log", "origin": "paris", "comment": "c"},
            {"_id": "/b", "origin": "paris", "comment": "c"},
        ]
    )
    t.close()
    run = CliRunner().invoke(main, ["untrack", "--store", url, "/a.log"], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    assert json.loads(run.output) == ["/a.log"]
    t = damas_core.open(url)
    assert t.read("/a.log") is None and t.read("/b") is not None
    assert t.search("#parent:/a.log") == []
    t.close()
    shown = CliRunner().invoke(main, ["untrack", "--help"])
    assert "damas untrack /tmp/render.log" in shown.output
