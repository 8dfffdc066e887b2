"""Folder packages relayed through a hub, for real: a package written at one storage
reaches the hub and the other storage as a folder, byte for byte, tracked as one
element (its id ending with ``/``), never as its files.

The storages are those of tests/sync/test_hub.py (``st1``: a shell with GNU find;
``st2``: a key restricted with ``rrsync``), their own for this module: ``st1`` finds
packages by its volume's rules, ``st2`` knows them as tracked packages. The tests of
this module run in order on the same storages and tracker.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from damas_core.sync.volumes import update_volume

from .storages import storages_fixture
from .test_hub import Env

storages = storages_fixture({"st1": "find", "st2": "rrsync"})

#: package folders, hostile names among them: nothing in them is ever run
PACKAGES = ["seq", "$(touch canary) seq;x", "-rf `touch canary` seq'q\""]


def _frames(folder: str, tag: str) -> dict[str, bytes]:
    """Three frames of a package folder (relpath -> content), and a subfolder's file
    (a subfolder of a package is walked as usual: its files are elements of their own)."""
    files = {f"{folder}/{i:04d}.exr": f"{tag} {folder} frame {i}".encode() * i for i in (1, 2, 3)}
    files[f"{folder}/sub/notes.txt"] = f"{tag} notes of {folder}".encode()
    return files


def _package_files(root: dict[bytes, bytes]) -> dict[bytes, bytes]:
    return {k: v for k, v in root.items() if any(k.startswith(f"{p}/".encode()) for p in PACKAGES)}


def _hub_files(hub_root: Path) -> dict[bytes, bytes]:
    out = {}
    for path in hub_root.rglob("*"):
        if path.is_file() and ".damas-" not in str(path):
            out[bytes(path.relative_to(hub_root))] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def env(storages, tmp_path_factory):
    e = Env(storages, tmp_path_factory.mktemp("hubpackages"))
    update_volume(
        e.tracker,
        {"_id": "vol_st1", "enableDiscoveryPackages": True, "packagePatternRules": ["seq[^/]*/$"]},
    )
    e.cycle()  # connected, listed
    yield e
    e.tracker.close()


def test_a_package_written_at_the_find_storage_reaches_the_hub_and_the_rrsync_storage(
    env, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    st1, st2 = env.storages["st1"], env.storages["st2"]
    files: dict[str, bytes] = {}
    for folder in PACKAGES:
        files.update(_frames(folder, "st1"))
    st1.write(files, mtime=1_700_000_000.123456)
    r = env.relay("vol_st1", "vol_st2", "vol_hub")
    packages = sorted(f"/{p}/" for p in PACKAGES)
    subfiles = sorted(f"/{p}/sub/notes.txt" for p in PACKAGES)
    assert sorted(r["vol_st1"]["published"]) == sorted(packages + subfiles), r["vol_st1"]
    assert not r["vol_st1"]["failed"] and not r["vol_st2"]["failed"], r
    expected = {k.encode(): v for k, v in files.items()}
    assert _package_files(st2.read()) == expected
    assert _package_files(_hub_files(env.hub_root)) == expected
    for folder in PACKAGES:
        el = env.tracker.read(f"/{folder}/")
        size = sum(len(v) for k, v in files.items() if k.count("/") == 1 and k.startswith(folder))
        assert el["file_size"] == size and el["file_count"] == 3, el
        assert el["origin"] == "st1" and el["file_mtime"] == 1_700_000_000_123
        assert el["synced_st2"] == el["time"] and el["synced_hub"] == el["time"]
        assert env.tracker.read(f"/{folder}/0001.exr") is None  # one element, not its files
    # nothing ran a name: no canary anywhere
    assert b"canary" not in st1.read() and b"canary" not in st2.read()
    for where in (env.hub_root, Path.cwd(), Path.home(), Path("/")):
        assert not (where / "canary").exists(), where
    # another cycle changes nothing: no precision difference is a change
    again = env.cycle()
    for vid in ("vol_st1", "vol_st2", "vol_hub"):
        report = again[vid]
        assert not (report["published"] or report["modified"] or report["emitted"]), (vid, report)
        assert not (report["received"] or report["failed"]), (vid, report)


def test_a_frame_changed_in_a_package_travels_as_the_package(env):
    st1, st2 = env.storages["st1"], env.storages["st2"]
    st1.write({"seq/0002.exr": b"changed at st1"}, mtime=1_700_000_200.5)
    r = env.relay("vol_st1", "vol_st2", "vol_hub")
    assert r["vol_st1"]["modified"] == ["/seq/"], r["vol_st1"]
    assert st2.read()[b"seq/0002.exr"] == b"changed at st1"
    assert (env.hub_root / "seq/0002.exr").read_bytes() == b"changed at st1"
    el = env.tracker.read("/seq/")
    assert el["file_mtime"] == 1_700_000_200_500 and el["synced_st2"] == el["time"]


def test_a_package_written_at_the_rrsync_storage_travels(env):
    """A package st2 holds under a tracked package's name, listed there to the second:
    the hub's copy takes the element's mtime, so that the hub's own scan finds it the
    same version."""
    st1, st2 = env.storages["st1"], env.storages["st2"]
    files = {k.replace("seq", "seq;x"): v for k, v in _frames("seq", "st2").items()}
    st1.write({"seq;x/0001.exr": b"first at st1"}, mtime=1_700_000_300)
    env.relay("vol_st1", "vol_st2", "vol_hub")
    assert st2.read()[b"seq;x/0001.exr"] == b"first at st1"
    st2.write(files, mtime=1_700_000_400.75)
    r = env.relay("vol_st2", "vol_st1", "vol_hub")
    assert r["vol_st2"]["modified"] == ["/seq;x/"], r["vol_st2"]
    assert not r["vol_hub"]["modified"] and not r["vol_hub"]["published"], r["vol_hub"]
    got = st1.read()
    assert all(got[k.encode()] == v for k, v in files.items() if "/sub/" not in k)
    el = env.tracker.read("/seq;x/")
    assert el["file_mtime"] == 1_700_000_400_000 and el["synced_st1"] == el["time"]
    assert el["synced_hub"] == el["time"]
