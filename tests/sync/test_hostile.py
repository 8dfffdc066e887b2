"""Hostile names and paths: nothing leaves a volume, odd names travel intact."""

from __future__ import annotations

import os

import pytest
from damas_core.schemas import validate
from damas_core.sync.rsync_options import check_user_args
from damas_core.sync.site import id_refusal
from damas_core.sync.volumes import create_volume, update_volume

from damas_core.errors import BadRequest, Forbidden

from .conftest import needs_rsync

NAMES = [
    "/with space/a b.txt",
    "/#notes.txt",
    "/;x",
    "/dir/#hash;semi",
    "/-rf",
    "/--delete",
    "/dir/-e x",
    "/ünï/çødé 🎬.exr",
    "/.hidden",
]


@needs_rsync
def test_hostile_names_travel_intact(sites):
    sites.run()
    for i, name in enumerate(NAMES):
        sites.write("paris", name, f"content {i}")
    r = sites.run("paris", "tokyo")
    assert sorted(r[0].published) == sorted(NAMES)
    for i, name in enumerate(NAMES):
        assert sites.path("tokyo", name).read_text() == f"content {i}", name
    assert not r[1].failed


def test_names_holding_a_control_character_are_never_tracked(sites):
    # not canonical file ids: the tracker would refuse them, agents never act on them
    for name in ("/new\nline.txt", "/tab\tx", "/dir\x1b/a.txt"):
        sites.write("paris", name, "x")
    sites.write("paris", "/ok.txt", "ok")
    r = sites.run("paris")[0]
    assert r.published == ["/ok.txt"]


@needs_rsync
def test_symlinks_out_of_the_volume_are_never_followed(sites, tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("s")
    os.symlink(secret, sites.roots["paris"] / "escape")
    os.symlink(secret / "key", sites.roots["paris"] / "key_link")
    sites.write("paris", "/ok.txt", "ok")
    sites.run()
    assert sites.tracker.read("/escape/key") is None and sites.tracker.read("/key_link") is None
    # an id published by hand through a symlinked folder is refused, not copied
    sites.tracker.publish(
        {
            "_id": "/escape/key",
            "origin": "paris",
            "comment": "by hand",
            "file_size": 1,
            "file_mtime": 1.0,
        }
    )
    r = sites.run("tokyo")[0]
    assert "/escape/key" in r.refused
    assert not (sites.roots["tokyo"] / "escape").exists()
    # a destination folder that is a symlink out of the volume is refused too
    os.symlink(secret, sites.roots["lyon"] / "out")
    sites.write("paris", "/out/x.txt", "x")
    sites.run("paris")
    r = sites.run("lyon")[0]
    assert "/out/x.txt" in r.refused
    assert not (secret / "x.txt").exists()


@pytest.mark.parametrize(
    "bad", ["/a/../../etc/passwd", "/..", "relative", "/a//b", "/./a", "/a\x00b", "/"]
)
def test_unsafe_ids_are_never_passed_to_rsync(bad):
    assert id_refusal(bad) is not None


@needs_rsync
def test_dotdot_id_is_refused_by_the_agent(sites):
    sites.run()
    sites.tracker.create(
        {"_id": "/x/../../outside", "origin": "paris", "time": 1, "file_size": 1, "file_mtime": 1.0}
    )
    r = sites.run("tokyo")[0]
    assert "/x/../../outside" in r.refused and r.rsync_calls == 0


def test_volume_rsync_args_cannot_smuggle_options():
    for bad in (
        ["--delete"],
        ["-e", "sh"],
        ["--rsh=sh"],
        ["/etc/"],
        ["--rsync-path=rm -rf /"],
        ["--files-from=/x"],
    ):
        with pytest.raises(BadRequest):
            check_user_args(bad, where="v")


def test_volume_schema_and_admin_keys(tracker):
    with pytest.raises(BadRequest) as e:
        create_volume(tracker, {"_id": "v", "name": "Bad Name", "url": "file:///p/"})
    assert e.value.key == "name"
    with pytest.raises(BadRequest) as e:
        create_volume(tracker, {"_id": "v", "name": "good", "url": "http://x/"})
    assert e.value.key == "url"
    with pytest.raises(BadRequest) as e:
        create_volume(
            tracker,
            {"_id": "v", "name": "good", "url": "file:///p/", "syncAmountReception": "many"},
        )
    assert e.value.key == "syncAmountReception"
    assert tracker.read("v") is None  # nothing written
    create_volume(tracker, {"_id": "v", "name": "good", "url": "file:///p/"})
    tracker.create({"_id": "@ed", "class": "editor"})
    ed = tracker.as_user("ed")
    # valid writes, refused by the core: only admins write volumes, whatever the key
    for key, value in (
        ("url", "file:///elsewhere/"),
        ("rsync_args", ["-z"]),
        ("rsync_env", {"TZ": "UTC"}),
        ("ssh_port", 2222),
        ("sleepBetweenScans", 5),
    ):
        with pytest.raises(Forbidden) as e:
            update_volume(ed, {"_id": "v", key: value})
        assert repr(key) in str(e.value)
    assert tracker.read("v")["url"] == "file:///p/"
    assert not {"rsync_args", "rsync_env", "ssh_port", "sleepBetweenScans"} & set(tracker.read("v"))
    # the same rule holds on the generic write paths
    for call in (
        lambda: ed.update({"_id": "v", "url": "file:///elsewhere/"}),
        lambda: ed.upsert({"_id": "v", "rsync_args": ["-e", "sh"]}),
        lambda: ed.create({"_id": "v2", "name": "evil", "url": "file:///etc/"}),
    ):
        with pytest.raises(Forbidden):
            call()
    assert tracker.read("v2") is None
    assert tracker.read("v")["url"] == "file:///p/"
    update_volume(tracker, {"_id": "v", "url": "file:///q/"})
    assert tracker.read("v")["url"] == "file:///q/"


def test_file_schema_names_the_key():
    validate("file", {"_id": "/a", "sync_priority": 3, "sync_paris": True, "synced_paris": 5})
    for key, value in (
        ("synced_paris", "yesterday"),
        ("sync_paris", 1),
        ("file_size", -1),
        ("syncError_x_y", "a"),
    ):
        with pytest.raises(BadRequest) as e:
            validate("file", {"_id": "/a", key: value})
        assert e.value.key == key
    with pytest.raises(BadRequest) as e:
        validate("rsyncGlobalParameters", {"_id": "rsyncGlobalParameters", "syncEverywhere": "yes"})
    assert e.value.key == "syncEverywhere"
