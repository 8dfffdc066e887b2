"""A scan's publish calls go out while the scan goes on: two at most, taken in order,
and none still on its way once the cycle has returned, even when it failed."""

from __future__ import annotations

import threading

import pytest
from damas_core.sync import Agent
from damas_core.sync import scan_writes as agent_module
from damas_core.sync.volumes import create_volume, volume

import damas_core
from tests.sync.conftest import write_tree


@pytest.fixture
def site(tmp_path, monkeypatch):
    """``(tracker, root)``: 1000 files at paris, written 100 a call."""
    monkeypatch.setattr(agent_module, "WRITE_BATCH", 100)
    monkeypatch.setattr(agent_module, "FIRST_BATCH", 100)
    root = tmp_path / "paris"
    write_tree(root, 1000)
    tracker = damas_core.open(f"lmdb://{tmp_path}/store")
    create_volume(tracker, {"_id": "v_paris", "name": "paris", "url": f"file://{root}/"})
    yield tracker, root
    tracker.close()


def _publishers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("publish-")]


def test_two_publish_calls_go_out_at_once_and_are_taken_in_order(site, monkeypatch):
    tracker, _ = site
    real = tracker.publish
    lock = threading.Lock()
    on_way = [0]
    most = [0]
    second = threading.Event()
    calls: list[list[str]] = []

    def publish(batch):
        with lock:
            on_way[0] += 1
            most[0] = max(most[0], on_way[0])
            calls.append([e["_id"] for e in batch])
            first = len(calls) == 1
        if first:
            assert second.wait(10), "the second call did not go out while the first was on its way"
        else:
            second.set()
        try:
            return real(batch)
        finally:
            with lock:
                on_way[0] -= 1

    monkeypatch.setattr(tracker, "publish", publish)
    report = Agent(tracker, "v_paris", settle=0, progress=False).run_once()
    assert most[0] == 2 and len(calls) == 10
    # the report lists the files in the order the calls went out
    assert report.published == [i for call in calls for i in call]
    assert len(set(report.published)) == 1000
    assert len(tracker.search("origin:paris -#parent:*")) == 1000
    assert _publishers() == []


def test_a_failed_publish_call_fails_the_scan_after_the_others_end(site, monkeypatch):
    tracker, _ = site
    real = tracker.publish
    calls = [0]
    ended = threading.Event()

    def publish(batch):
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("the store is full")
        if calls[0] == 4:  # on its way when the error is taken in
            result = real(batch)
            ended.set()
            return result
        return real(batch)

    monkeypatch.setattr(tracker, "publish", publish)
    agent = Agent(tracker, "v_paris", settle=0, progress=False)
    with pytest.raises(RuntimeError, match="the store is full"):
        agent.run_once()
    assert _publishers() == []  # nothing writes for the scan once it returned
    assert ended.is_set()
    vol = volume(tracker, "v_paris")
    assert vol["exit_scan"] == 2 and "the store is full" in vol["stderr_scan"]
    # the next cycle publishes what is missing, once
    monkeypatch.setattr(tracker, "publish", real)
    agent.run_once()
    ids = tracker.search("origin:paris -#parent:*")
    assert len(ids) == len(set(ids)) == 1000


def test_a_scan_that_fails_waits_for_the_calls_on_their_way(site, monkeypatch):
    tracker, _ = site
    real = tracker.publish
    going = threading.Event()
    finished = threading.Event()

    def publish(batch):
        going.set()
        result = real(batch)
        finished.set()
        return result

    real_some = agent_module.ScanWrites.some

    def some(writes, changes):
        real_some(writes, changes)
        if going.is_set():
            raise OSError("the walk broke")

    monkeypatch.setattr(tracker, "publish", publish)
    monkeypatch.setattr(agent_module.ScanWrites, "some", some)
    with pytest.raises(OSError, match="the walk broke"):
        Agent(tracker, "v_paris", settle=0, progress=False).run_once()
    assert finished.is_set() and _publishers() == []
    assert volume(tracker, "v_paris")["exit_scan"] == 2
