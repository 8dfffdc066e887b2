"""Resolving a conflict changes the files only once the tracker took the write: a user
who may not update leaves both copies and the element as they were."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from damas_core.sync import Agent, resolve

from damas_core.errors import Forbidden

from .conftest import needs_rsync

pytestmark = needs_rsync


@pytest.fixture
def conflict(sites):
    """``/c.txt`` changed at paris and at tokyo: tokyo keeps both copies."""
    t = sites.tracker
    t.create([{"_id": "@taro", "class": "user"}, {"_id": "@eda", "class": "editor"}])
    sites.write("paris", "/c.txt", "base", mtime=1_000_000)
    sites.run(rounds=2)
    sites.write("paris", "/c.txt", "paris edit")
    edited = sites.write("tokyo", "/c.txt", "tokyo edit, longer")
    os.utime(edited, ns=(time.time_ns() + 10**6,) * 2)
    sites.run("paris", "tokyo")
    sites.run("tokyo")  # fetches paris's copy next to tokyo's
    el = t.read("/c.txt")
    info = el["conflict_tokyo"]
    assert info["incoming"] and sites.path("tokyo", info["incoming"]).read_text() == "paris edit"
    return sites, el


@pytest.mark.parametrize("keep", ["local", "incoming"])
def test_a_user_who_may_not_update_changes_nothing(conflict, keep):
    sites, before = conflict
    incoming = sites.path("tokyo", before["conflict_tokyo"]["incoming"])
    with pytest.raises(Forbidden, match="@taro"):
        resolve(sites.tracker.as_user("taro"), "/c.txt", "tokyo", keep=keep)
    assert incoming.read_text() == "paris edit"  # still there, still pointed at
    assert sites.path("tokyo", "/c.txt").read_text() == "tokyo edit, longer"
    assert sites.tracker.read("/c.txt") == before


def test_an_editor_keeps_the_incoming_copy(conflict):
    sites, before = conflict
    incoming = sites.path("tokyo", before["conflict_tokyo"]["incoming"])
    el = resolve(sites.tracker.as_user("eda"), "/c.txt", "tokyo", keep="incoming")
    assert "conflict_tokyo" not in el and not incoming.exists()
    assert sites.path("tokyo", "/c.txt").read_text() == "paris edit"
    sites.run("tokyo")
    assert sites.tracker.read("/c.txt")["synced_tokyo"] >= el["time"]


def test_a_file_operation_that_fails_puts_the_element_back(conflict):
    sites, before = conflict
    incoming = sites.path("tokyo", before["conflict_tokyo"]["incoming"])
    # a folder where the incoming copy was: it cannot replace the local file
    incoming.unlink()
    incoming.mkdir()
    (incoming / "inside").write_text("x")
    with pytest.raises(OSError):
        resolve(sites.tracker, "/c.txt", "tokyo", keep="incoming")
    assert sites.tracker.read("/c.txt") == before
    assert sites.path("tokyo", "/c.txt").read_text() == "tokyo edit, longer"
    shutil.rmtree(incoming)


def test_a_package_kept_from_the_incoming_copy(sites):
    sites.tracker.publish({"_id": "/seq/", "origin": "paris", "comment": "a package"})
    sites.write("paris", "/seq/a.exr", "a", mtime=1_000_000)
    sites.run(rounds=2)
    sites.write("paris", "/seq/a.exr", "paris a")
    edited = sites.write("tokyo", "/seq/a.exr", "tokyo a, longer")
    os.utime(edited, ns=(time.time_ns() + 10**6,) * 2)
    sites.run("paris", "tokyo")
    sites.run("tokyo")
    info = sites.tracker.read("/seq/")["conflict_tokyo"]
    assert info["incoming"]
    resolve(sites.tracker, "/seq/", "tokyo", keep="incoming")
    assert sites.path("tokyo", "/seq/a.exr").read_text() == "paris a"
    assert not sites.path("tokyo", info["incoming"]).exists()
    assert not list((sites.roots["tokyo"] / ".damas-partial").glob("resolve-*"))


def test_the_incoming_copy_is_fetched_with_the_volumes_rsync_args(sites):
    """The copy kept beside a conflicting one is fetched with the same rsync options as
    every other copy (here --chmod, whose effect shows on the fetched file)."""
    t = sites.tracker
    t.update({"_id": "vol_tokyo", "rsync_args": "--chmod=F600"})
    sites.write("paris", "/c.txt", "base", mtime=1_000_000)
    os.chmod(sites.path("paris", "/c.txt"), 0o644)
    sites.run(rounds=2)
    assert sites.path("tokyo", "/c.txt").stat().st_mode & 0o777 == 0o600
    edited = sites.write("paris", "/c.txt", "paris edit")
    os.chmod(edited, 0o644)
    edited = sites.write("tokyo", "/c.txt", "tokyo edit, longer")
    os.utime(edited, ns=(time.time_ns() + 10**6,) * 2)
    sites.run("paris", "tokyo")
    sites.run("tokyo")
    incoming = t.read("/c.txt")["conflict_tokyo"]["incoming"]
    assert sites.path("tokyo", incoming).read_text() == "paris edit"
    assert sites.path("tokyo", incoming).stat().st_mode & 0o777 == 0o600


class Interleaved:
    """The tracker, running ``between()`` once just before the first write of a scan's
    new versions: another agent's whole cycle between this scan's reading of the
    tracker and its writing."""

    def __init__(self, tracker, between) -> None:
        self._tracker = tracker
        self._between = between

    def update(self, elements, *args, expect=None, **kwargs):
        if expect is not None and self._between is not None:
            between, self._between = self._between, None
            between()
        return self._tracker.update(elements, *args, expect=expect, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tracker, name)


def test_two_sites_changing_a_file_at_once_lose_no_version(sites):
    """tokyo's scan finds its copy changed and writes a new version while paris's
    version of the same file is written: tokyo's write expects the version it compared
    with, finds paris's there and is not made; its next cycle records the conflict and
    keeps both copies. Without it, tokyo's version would overwrite paris's, and
    paris's copy would then be replaced by tokyo's."""
    t = sites.tracker
    sites.write("paris", "/c.txt", "base", mtime=1_000_000)
    sites.run(rounds=2)
    sites.write("paris", "/c.txt", "paris edit")
    sites.write("tokyo", "/c.txt", "tokyo edit, longer")
    sites.agents["tokyo"] = Agent(
        Interleaved(t, lambda: sites.run("paris")), "vol_tokyo", settle=0, walker=sites.walker
    )
    raced = sites.run("tokyo")[0]
    assert "/c.txt" in raced.waiting and "/c.txt" not in raced.modified
    el = t.read("/c.txt")
    assert el["file_size"] == len("paris edit") and el["modified_paris"] == el["time"]
    sites.run("tokyo", "paris")
    el = t.read("/c.txt")
    assert el["file_size"] == len("paris edit")
    incoming = el["conflict_tokyo"]["incoming"]
    assert sites.path("tokyo", incoming).read_text() == "paris edit"
    assert sites.path("tokyo", "/c.txt").read_text() == "tokyo edit, longer"
    assert sites.path("paris", "/c.txt").read_text() == "paris edit"
