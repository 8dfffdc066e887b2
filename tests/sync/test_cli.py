"""`damas sync agent` and `damas sync status` on a store, as an administrator runs them."""

from __future__ import annotations

import json

from click.testing import CliRunner
from damas_core.sync import activity

from damas_core.cli import main

from .conftest import needs_rsync


def _damas(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@needs_rsync
def test_agents_and_status_from_the_command_line(sites, tmp_path):
    store = f"lmdb://{tmp_path}/store"
    sites.tracker.update({"_id": "vol_paris", "enableEmission": False})  # lyon waits for its agent
    sites.write("paris", "/shots/a.exr", "frame a")
    sites.write("paris", "/shots/b c.exr", "frame b")
    run = _damas("sync", "agent", "vol_paris", "--once", "--settle", "0", "--store", store)
    assert run.exit_code == 0, run.output
    assert sorted(json.loads(run.output)["published"]) == ["/shots/a.exr", "/shots/b c.exr"]
    run = _damas(
        "sync", "agent", "vol_tokyo", "--once", "--settle", "0", "--walker", "scandir",
        "--store", store,
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    assert sorted(json.loads(run.output)["received"]) == ["/shots/a.exr", "/shots/b c.exr"]
    assert sites.path("tokyo", "/shots/b c.exr").read_text() == "frame b"

    shown = _damas("sync", "status", "--json", "--store", store)
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["sites"] == ["lyon", "paris", "tokyo"]
    states = {row["_id"]: row["states"] for row in data["files"]}
    assert states["/shots/a.exr"] == {
        "lyon": {"state": "queued"},
        "paris": {"state": "ok"},
        "tokyo": {"state": "ok"},
    }
    assert data["completion"]["lyon"] == {
        "files_ok": 0, "files_wanted": 2, "bytes_ok": 0, "bytes_wanted": 14,
        "states": {"ok": 0, "outdated": 0, "error": 0, "queued": 2, "waiting": 0,
                   "conflict": 0, "unwanted": 0},
        "state_bytes": {"ok": 0, "outdated": 0, "error": 0, "queued": 14, "waiting": 0,
                        "conflict": 0, "unwanted": 0},
    }  # fmt: skip
    # nothing copied to lyon yet: what is left, no rate measured, no ETA
    assert data["eta"]["lyon"] == {"files": 2, "bytes": 14, "rate": None, "eta_seconds": None}
    table = _damas("sync", "status", "--store", store, "/shots/a.exr")
    assert table.exit_code == 0, table.output
    assert "/shots/a.exr" in table.output and "b c.exr" not in table.output
    assert "queued" in table.output and "ok" in table.output


def test_agent_command_errors_are_clear(sites, tmp_path):
    store = f"lmdb://{tmp_path}/store"
    run = CliRunner().invoke(main, ["sync", "agent", "vol_nowhere", "--once", "--store", store])
    assert run.exit_code != 0 and "no volume 'vol_nowhere'" in run.output
    run = CliRunner().invoke(
        main, ["sync", "agent", "vol_paris", "--walker", "ls", "--store", store]
    )
    assert run.exit_code != 0 and "'ls' is not one of" in run.output


def test_the_agent_loop_stops_cleanly_on_sigterm(sites, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    store = f"lmdb://{tmp_path}/store"
    sites.tracker.update({"_id": "vol_paris", "sleepBetweenScans": 0.2})
    sites.write("paris", "/loop.txt", "l")
    agent = subprocess.Popen(
        [sys.executable, "-c", "from damas_core.cli import main; main()",
         "sync", "agent", "vol_paris", "--settle", "0", "--store", store],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while sites.tracker.read("/loop.txt") is None:
            assert agent.poll() is None, agent.communicate()
            assert time.monotonic() < deadline, "the agent published nothing"
            time.sleep(0.05)
        vol = sites.tracker.read("vol_paris")
        assert vol["agentStatus"] in ("scanning", "emitting", "idle")
        assert vol["lastConnectionPid"] == agent.pid
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
    assert agent.returncode == 0, err
    vol = sites.tracker.read("vol_paris")
    assert vol["agentStatus"] == "stopped" and vol["agentStartTime"] <= vol["lastConnection"]
    assert vol["rootDevice"] == os.stat(sites.roots["paris"]).st_dev


#: names rich would read as markup: a style, a closing tag that closes nothing, escapes
MARKUP_NAMES = ("/comp [wip].exr", "/take[/b]01.exr", "/[bold red]loud[/].txt", "/a\\[b].txt")


@needs_rsync
def test_status_shows_user_strings_as_they_are(sites, tmp_path):
    store = f"lmdb://{tmp_path}/store"
    t = sites.tracker
    for name in MARKUP_NAMES:
        sites.write("paris", name, "x")
    run = _damas("sync", "agent", "vol_paris", "--once", "--settle", "0", "--store", store)
    assert run.exit_code == 0, run.output
    assert sorted(json.loads(run.output)["published"]) == sorted(MARKUP_NAMES)
    t.update({"_id": "/comp [wip].exr", "lock": "[blink]bo[/]"})
    t.update(
        {"_id": "vol_paris", "stderr_scan": "[/i] cannot read [red]/x", "exit_reception": "[b]1"}
    )
    shown = CliRunner().invoke(
        main, ["sync", "status", "--store", store], env={"COLUMNS": "400"}, catch_exceptions=False
    )
    assert shown.exit_code == 0, shown.output
    for text in (*MARKUP_NAMES, "[blink]bo[/]", "[/i] cannot read [red]/x", "exit [b]1"):
        assert text in shown.output, (text, shown.output)


@needs_rsync
def test_a_single_cycle_records_its_errors_in_the_activity_log(sites, tmp_path):
    store = f"lmdb://{tmp_path}/store"
    sites.tracker.update({"_id": "vol_paris", "enableEmission": False})  # tokyo fetches it
    sites.write("paris", "/there.txt", "x")
    assert (
        _damas("sync", "agent", "vol_paris", "--once", "--settle", "0", "--store", store).exit_code
        == 0
    )
    sites.path("paris", "/there.txt").unlink()  # gone at its origin before tokyo copies it
    run = _damas("sync", "agent", "vol_tokyo", "--once", "--settle", "0", "--store", store)
    assert run.exit_code == 7, run.output  # a cycle with failures
    assert json.loads(run.output)["failed"] == {"/there.txt": 23}
    events = [e["event"] for e in activity.log(sites.tracker, ["vol_tokyo"])]
    assert events == ["errors"]
