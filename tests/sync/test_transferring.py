"""A bucket in flight: the agent's volume records it while rsync runs (one write per
bucket), the status shows its queued files as transferring, and the record is gone once
the outcomes are recorded, or the agent stops in the middle of it."""

from __future__ import annotations

import threading

import pytest
from damas_core.sync import rsync as rs
from damas_core.sync.status import Filters, page

from .conftest import Sites, needs_rsync
from .gate import GatedRsync

pytestmark = needs_rsync


@pytest.fixture
def two_sites(tmp_path, tracker):
    return Sites(tmp_path, tracker, names=("paris", "tokyo"), walker="scandir")


def _states(tracker, site: str) -> dict[str, dict]:
    return {r["_id"]: r["states"][site] for r in page(tracker, Filters())["files"]}


def _in_thread(run):
    done: list = []
    thread = threading.Thread(target=lambda: done.append(run()), daemon=True)
    thread.start()
    return thread, done


def test_a_reception_in_flight_shows_transferring_then_ok(two_sites, tmp_path, monkeypatch):
    t = two_sites.tracker
    gate = GatedRsync(tmp_path)
    tokyo = two_sites.agent("tokyo", rsync=str(gate.program))
    t.update({"_id": "vol_paris", "enableEmission": False})  # tokyo fetches them
    for name in ("/shots/b.exr", "/shots/a.exr"):
        two_sites.write("paris", name, name)
    two_sites.run("paris")
    writes: list[dict] = []
    update = t.update

    def counting(patch, *args, **kw):
        writes.extend(patch if isinstance(patch, list) else [patch])
        return update(patch, *args, **kw)

    monkeypatch.setattr(t, "update", counting)
    thread, done = _in_thread(tokyo.run_once)
    gate.wait_started()
    vol = t.read("vol_tokyo")
    assert vol["agentStatus"] == "receiving"
    record = vol["transferring"]
    assert record["site"] == "tokyo" and record["count"] == 2
    assert record["ids"] == ["/shots/a.exr", "/shots/b.exr"]
    assert isinstance(record["since"], int) and record["since"] <= vol["lastConnection"]
    moving = {"state": "queued", "detail": "transferring"}
    assert _states(t, "tokyo") == {"/shots/a.exr": moving, "/shots/b.exr": moving}
    # no file element was written for it: the bucket is one write, on the volume
    assert [w["_id"] for w in writes if w["_id"].startswith("/")] == []
    assert sum(1 for w in writes if w.get("transferring")) == 1
    gate.open()
    thread.join(60)
    assert done[0].received == ["/shots/a.exr", "/shots/b.exr"]
    ok = {"state": "ok"}
    assert _states(t, "tokyo") == {"/shots/a.exr": ok, "/shots/b.exr": ok}
    vol = t.read("vol_tokyo")
    assert vol["agentStatus"] == "idle" and "transferring" not in vol


def test_an_emission_in_flight_shows_at_the_target_site(two_sites, tmp_path):
    """paris pushes to tokyo, whose agent is down: paris' volume records the bucket,
    and tokyo's cell shows it."""
    t = two_sites.tracker
    gate = GatedRsync(tmp_path)
    paris = two_sites.agent("paris", rsync=str(gate.program))
    two_sites.write("paris", "/plate.exr", "plate")
    thread, done = _in_thread(paris.run_once)
    gate.wait_started()
    assert t.read("vol_paris")["transferring"]["site"] == "tokyo"
    assert "transferring" not in t.read("vol_tokyo")
    assert _states(t, "tokyo") == {"/plate.exr": {"state": "queued", "detail": "transferring"}}
    assert _states(t, "paris") == {"/plate.exr": {"state": "ok"}}
    gate.open()
    thread.join(60)
    assert done[0].emitted == ["/plate.exr"]
    assert _states(t, "tokyo") == {"/plate.exr": {"state": "ok"}}
    assert "transferring" not in t.read("vol_paris")


def test_each_bucket_records_itself_and_its_outcomes_before_the_next(two_sites, monkeypatch):
    """Two priorities are two buckets: while the second runs, the first is recorded ok
    and only the second is in flight."""
    t = two_sites.tracker
    t.update({"_id": "vol_paris", "enableEmission": False})
    two_sites.write("paris", "/urgent.exr", "u")
    two_sites.write("paris", "/later.exr", "l")
    two_sites.run("paris")
    t.update({"_id": "/urgent.exr", "sync_priority": 5})
    seen: list[dict] = []
    transfer = rs.transfer

    def looking(src, dst, rels, **kw):
        seen.append(
            {"record": t.read("vol_tokyo").get("transferring"), "states": _states(t, "tokyo")}
        )
        return transfer(src, dst, rels, **kw)

    monkeypatch.setattr(rs, "transfer", looking)
    assert sorted(two_sites.run("tokyo")[0].received) == ["/later.exr", "/urgent.exr"]
    assert [s["record"]["ids"] for s in seen] == [["/urgent.exr"], ["/later.exr"]]
    moving = {"state": "queued", "detail": "transferring"}
    assert seen[0]["states"] == {"/urgent.exr": moving, "/later.exr": {"state": "queued"}}
    assert seen[1]["states"] == {"/urgent.exr": {"state": "ok"}, "/later.exr": moving}
    assert "transferring" not in t.read("vol_tokyo")


def test_a_bucket_aborted_in_flight_leaves_no_record(two_sites, monkeypatch):
    """rsync interrupted (as a second SIGTERM does): nothing of the bucket is synced,
    the agent records stopped, and its volume no longer says the bucket runs."""
    t = two_sites.tracker
    t.update({"_id": "vol_paris", "enableEmission": False})
    two_sites.write("paris", "/a.exr", "a")
    two_sites.run("paris")
    tokyo = two_sites.agent("tokyo")
    during: list = []

    def interrupted(*args, **kw):
        during.append(t.read("vol_tokyo").get("transferring"))
        raise KeyboardInterrupt

    monkeypatch.setattr(rs, "transfer", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tokyo.run(max_cycles=1)
    assert during[0]["ids"] == ["/a.exr"]
    vol = t.read("vol_tokyo")
    assert vol["agentStatus"] == "stopped" and "transferring" not in vol
    assert _states(t, "tokyo") == {"/a.exr": {"state": "queued"}}
    assert "synced_tokyo" not in t.read("/a.exr")


def test_a_cycle_failing_in_flight_records_error_and_no_bucket(two_sites, monkeypatch):
    t = two_sites.tracker
    t.update({"_id": "vol_paris", "enableEmission": False})
    two_sites.write("paris", "/a.exr", "a")
    two_sites.run("paris")
    tokyo = two_sites.agent("tokyo")

    def failing(*args, **kw):
        assert t.read("vol_tokyo")["transferring"]["ids"] == ["/a.exr"]
        raise OSError("the disk went away")

    monkeypatch.setattr(rs, "transfer", failing)
    states: list = []
    monkeypatch.setattr(tokyo, "_stop", _StopWhenWaiting(t, states))
    tokyo.run()
    assert states == [("error", False)]  # the error status removed the record
    assert "the disk went away" in t.read("vol_tokyo")["stderr_scan"]


class _StopWhenWaiting(threading.Event):
    """An agent's stop flag that notes the volume's status, and whether it records a
    bucket, when the loop waits for the next cycle; then stops it."""

    def __init__(self, tracker, states: list) -> None:
        super().__init__()
        self.tracker, self.states = tracker, states

    def wait(self, timeout: float | None = None) -> bool:
        vol = self.tracker.read("vol_tokyo")
        self.states.append((vol["agentStatus"], "transferring" in vol))
        self.set()
        return True


def test_only_admins_write_a_bucket_record(two_sites):
    """A volume is admin-only to write, its record of a bucket too: a user cannot make
    files look transferring (agents sign in as admins)."""
    from damas_core.sync.transferring import bucket_record

    from damas_core.errors import Forbidden

    t = two_sites.tracker
    t.create({"_id": "@eddie", "class": "editor"})
    with pytest.raises(Forbidden, match="only admins may change volumes"):
        t.as_user("eddie").update(
            {"_id": "vol_tokyo", "transferring": bucket_record("tokyo", ["/a"], 1)}
        )
    assert "transferring" not in t.read("vol_tokyo")
