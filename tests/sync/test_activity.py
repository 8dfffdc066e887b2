"""The activity log: what an agent's cycles record under its volume (files newly failing
and fixed, brakes, conflicts), once each, across a restart of the agent; its transfer
throughput; and ``damas sync log`` reading it back."""

from __future__ import annotations

import json
from types import SimpleNamespace

from click.testing import CliRunner
from damas_core.sync import Agent, activity
from damas_core.sync.service import Service
from damas_core.sync.status import status

from damas_core.cli import main
from tests.sync.conftest import Sites, needs_rsync


def _service(sites: Sites, name: str, state) -> Service:
    return Service(
        sites.tracker,
        f"vol_{name}",
        lambda t: Agent(t, f"vol_{name}", settle=0, walker="scandir"),
        state_dir=state,
    )


def _events(tracker, volume_id):
    return [(e["event"], e["detail"]) for e in activity.log(tracker, [volume_id])]


@needs_rsync
def test_a_cycle_records_new_failures_once_then_their_fix(tmp_path, tracker):
    sites = Sites(tmp_path, tracker, names=("paris", "tokyo"))
    # tracked at paris, but not there: tokyo's copy fails (rsync 23)
    tracker.publish({"_id": "/shot/a.exr", "origin": "paris", "comment": "c", "file_size": 5})
    state = tmp_path / "tokyo-state"
    _service(sites, "tokyo", state).run(max_cycles=1)
    assert tracker.read("/shot/a.exr").get("syncError_tokyo") == 23
    assert _events(tracker, "vol_tokyo") == [
        ("errors", {"count": 1, "failing": 1, "ids": ["/shot/a.exr"], "codes": {"23": 1}})
    ]
    # still failing, and a restarted agent (a new service on the same state): nothing new
    _service(sites, "tokyo", state).run(max_cycles=1)
    _service(sites, "tokyo", state).run(max_cycles=1)
    assert [e for e, _ in _events(tracker, "vol_tokyo")] == ["errors"]
    assert _events(tracker, "vol_paris") == []

    sites.write("paris", "/shot/a.exr", "hello")
    tracker.update(
        {"_id": "/shot/a.exr", "syncLastAttempt_tokyo": None, "syncFailures_tokyo": None}
    )
    _service(sites, "tokyo", state).run(max_cycles=1)
    assert sites.path("tokyo", "/shot/a.exr").read_text() == "hello"
    assert [e for e, _ in _events(tracker, "vol_tokyo")] == ["errors", "errors_fixed"]
    # the copy was measured: the site's throughput and the bytes it ever received
    vol = tracker.read("vol_tokyo")
    assert vol["bytes_reception_total"] == 5 and vol["rate_reception"] > 0
    eta = status(tracker)["eta"]
    assert eta["tokyo"]["files"] == 0 and eta["tokyo"]["eta_seconds"] == 0.0


def test_brakes_and_conflicts_are_recorded_when_new():
    r = SimpleNamespace(
        site="t",
        failed={},
        scan_errors=["sync error: 3 of the 4 files held at t were deleted at their origin "
                     "(75%), more than maxDelete (50%): none is removed"],
        conflicts=["/b", "/a"],
    )  # fmt: skip
    events, memory = activity.cycle_events({}, r, {})
    assert [e for e, _ in events] == ["brake", "conflict"]
    assert events[1][1] == {"count": 2, "ids": ["/a", "/b"]}
    r.conflicts = []
    assert activity.cycle_events(memory, r, {})[0] == []  # the same brake, still holding


def test_sync_log_reads_the_log_by_volume_site_and_time(tmp_path):
    url = f"lmdb://{tmp_path}/store"
    import damas_core

    t = damas_core.open(url)
    t.create([{"_id": "vol_paris", "name": "paris", "url": "file:///p/"},
              {"_id": "vol_tokyo", "name": "tokyo", "url": "file:///t/"}])  # fmt: skip
    old = activity.record(t, "vol_paris", "agent_down", {"host": "h"})
    t.update({"_id": old["_id"], "time": 1_000})  # long ago
    up = activity.record(t, "vol_paris", "agent_up")
    brake = activity.record(t, "vol_tokyo", "brake", {"message": "m"})
    # events of the same millisecond have no order: this one comes after
    t.update({"_id": brake["_id"], "time": up["time"] + 1})
    t.close()
    run = CliRunner().invoke
    out = run(main, ["sync", "log", "--store", url, "--json"])
    assert out.exit_code == 0, out.output
    assert [json.loads(x)["event"] for x in out.output.splitlines()] == [
        "agent_down", "agent_up", "brake"]  # fmt: skip
    out = run(main, ["sync", "log", "paris", "--since", "1h", "--store", url])
    assert out.exit_code == 0, out.output
    assert len(out.output.splitlines()) == 1 and "paris  agent_up" in out.output
    out = run(main, ["sync", "log", "vol_tokyo", "--store", url])
    assert "tokyo  brake" in out.output
    out = run(main, ["sync", "log", "nowhere", "--store", url])
    assert out.exit_code == 1 and "no volume or site 'nowhere'" in out.output
    out = run(main, ["sync", "log", "--since", "soon", "--store", url])
    assert out.exit_code != 0 and "neither a duration" in out.output


def test_switch_changes_name_who_made_them(tmp_path):
    from damas_core.sync.notifier import Notifier
    from damas_core.sync.volumes import update_volume

    import damas_core

    t = damas_core.open("memory://")
    t.create({"_id": "@ada", "class": "admin", "password": "pw-pw-pw-pw"})
    t.create({"_id": "vol_paris", "name": "paris", "url": "file:///p/"})
    n = Notifier(t, tmp_path / "n")
    n.run_once()
    update_volume(t.as_user("ada"), {"_id": "vol_paris", "enableReception": False})
    n.run_once()
    t.update({"_id": "vol_paris", "enableScans": False})  # a direct update: no name
    n.run_once()
    update_volume(t.as_user("ada"), {"_id": "vol_paris", "enableReception": True})
    n.run_once()
    assert _events(t, "vol_paris") == [
        ("disabled", {"switches": ["enableReception"], "by": "ada"}),
        ("disabled", {"switches": ["enableScans"], "by": None}),
        ("enabled", {"switches": ["enableReception"], "by": "ada"}),
    ]
