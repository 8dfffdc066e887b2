"""The two walkers (GNU find beside the scan, os.scandir in it) see the same tree."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest
from damas_core.sync import Agent
from damas_core.sync import find as find_module
from damas_core.sync.scanner import Scanner
from damas_core.sync.tree import Rules, Seen, walk, walk_parts
from damas_core.sync.volumes import create_volume
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sync.conftest import write_tree

needs_find = pytest.mark.skipif(find_module.gnu_find() is None, reason="GNU find is not installed")

BAD_UTF8 = os.fsdecode(b"bad\xff")
NAMES = [
    "a",
    "b c",
    "-rf",
    "--delete",
    "new\nline",
    "ünï 🎬",
    ".hidden",
    ".x.AbC123",  # an rsync temporary file
    "x.conflict-paris-20260101T000000Z.txt",
    ".damas-partial",
    "seq",
    "Thumbs.db",
    "tmp",
    "f.txt",
    "g.bin",
    BAD_UTF8,
]
KINDS = ["file", "file", "file", "dir", "link_file", "link_dir", "fifo"]

entries = st.lists(
    st.tuples(
        st.lists(st.sampled_from(NAMES), min_size=1, max_size=3),
        st.sampled_from(KINDS),
        st.integers(0, 40),
        st.integers(1_000_000, 2_000_000_000),
    ),
    max_size=30,
)
volumes = st.fixed_dictionaries(
    {},
    optional={
        "excludePatternRules": st.lists(st.sampled_from(["tmp", r"\.txt$", "^/seq/", "b c/$"])),
        "includePatternRules": st.lists(st.sampled_from(["a", r"\.bin$", "seq"])),
        "excludedFiles": st.lists(st.sampled_from(["Thumbs.db", "/a", "/seq/", "-rf"])),
        "enableDiscoveryPackages": st.booleans(),
        "packagePatternRules": st.lists(st.sampled_from(["seq/$", "^/a/$", "/tmp/$"])),
    },
)


def build(root: Path, outside: Path, spec) -> None:
    """Make the entries of ``spec`` under ``root`` (those a file already blocks are left out)."""
    (outside / "target").write_bytes(b"secret")
    (outside / "dir").mkdir(exist_ok=True)
    for parts, kind, size, mtime in spec:
        path = root.joinpath(*parts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if os.path.lexists(path):
                continue
            if kind == "file":
                path.write_bytes(b"x" * size)
                os.utime(path, ns=(mtime * 10**9 + 123_456_789, mtime * 10**9 + 123_456_789))
            elif kind == "dir":
                path.mkdir()
            elif kind == "link_file":
                path.symlink_to(outside / "target")
            elif kind == "link_dir":
                path.symlink_to(outside / "dir", target_is_directory=True)
            else:
                os.mkfifo(path)
        except (FileExistsError, NotADirectoryError):
            continue  # a file or a link stands where a folder was asked for


def same_walks(a: dict, b: dict) -> bool:
    return a == b  # sizes, and mtimes to the nanosecond


@needs_find
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=entries, volume=volumes, tracked=st.lists(st.sampled_from(["/seq/", "/a/"])))
def test_find_and_scandir_walks_agree(spec, volume, tracked):
    tmp = Path(tempfile.mkdtemp(prefix="damas-walk-"))
    try:
        root, outside = tmp / "root", tmp / "outside"
        root.mkdir()
        outside.mkdir()
        build(root, outside, spec)
        rules = Rules.from_volume(volume, tracked)
        seen_find, seen_scandir = Seen(), Seen()
        by_find = walk(str(root), rules, seen_find, walker="find")
        by_scandir = walk(str(root), rules, seen_scandir, walker="scandir")
        assert same_walks(by_find, by_scandir), (sorted(by_find), sorted(by_scandir))
        assert seen_find.counts == seen_scandir.counts
        assert seen_find.inodes == seen_scandir.inodes  # both say which inode each file is
        assert seen_find.inodes.keys() == by_find.keys()
        for file_id, inode in seen_find.inodes.items():  # (st_dev, st_ino): the device too
            st = os.stat(root / file_id.lstrip("/"), follow_symlinks=False)
            assert inode == (st.st_dev, st.st_ino)
        assert seen_find.unread == seen_scandir.unread == set()
        assert not any(i.startswith("/outside") or "target" in i for i in by_find)
        assert BAD_UTF8 not in "".join(by_find)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("walker", ["find", "scandir"])
def test_a_missing_root_is_unread_not_empty(tmp_path, walker):
    if walker == "find" and find_module.gnu_find() is None:
        pytest.skip("GNU find is not installed")
    seen = Seen()
    assert walk(str(tmp_path / "unmounted"), seen=seen, walker=walker) == {}
    assert seen.unread == {"/"}
    assert seen.errors == ["/: No such file or directory"]
    assert seen.covers("/any/file.txt")


def test_seen_covers_what_is_under_an_unread_folder():
    seen = Seen()
    seen.failed("/shots/s01/", "Permission denied")
    assert seen.errors == ["/shots/s01/: Permission denied"]
    assert seen.covers("/shots/s01") and seen.covers("/shots/s01/a.exr")
    assert seen.covers("/shots/s01/pkg/")
    assert not seen.covers("/shots/s010/a.exr") and not seen.covers("/shots/a.exr")


def _walk_as_nobody(root: str, walker: str) -> dict:
    """The walk of ``root`` by a forked child that dropped root's rights (root reads
    every folder), as ``{"ids", "unread", "errors"}``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody")
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
            seen = Seen()
            tree = walk(root, seen=seen, walker=walker)
            out = {"ids": sorted(tree), "unread": sorted(seen.unread), "errors": seen.errors}
            os.write(write_end, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


@pytest.mark.parametrize("walker", ["find", "scandir"])
def test_a_folder_that_cannot_be_read_is_reported(walker):
    if walker == "find" and find_module.gnu_find() is None:
        pytest.skip("GNU find is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="damas-locked-"))
    locked = ["locked", "ünï 🎬", "quo'te", "back\\slash", "a': b"]
    if walker == "find":
        # find's messages quote a newline; the scandir walk never enters such a folder
        # (a name holding a control character is never tracked)
        locked.append("new\nline")
    try:
        tmp.chmod(0o755)
        (tmp / "open").mkdir()
        (tmp / "open" / "a.txt").write_text("a")
        for name in locked:
            (tmp / name).mkdir()
            (tmp / name / "b.txt").write_text("b")
            (tmp / name).chmod(0)
        seen = _walk_as_nobody(str(tmp), walker)
        assert seen["ids"] == ["/open/a.txt"]
        assert seen["unread"] == sorted(f"/{name}" for name in locked)
        assert len(seen["errors"]) == len(locked)
        assert all("Permission denied" in e for e in seen["errors"])
    finally:
        for name in locked:
            if (tmp / name).exists():
                (tmp / name).chmod(0o755)
        shutil.rmtree(tmp, ignore_errors=True)


def _find_children() -> list[int]:
    me = str(os.getpid())
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[1] == me and "(find)" in stat:
            out.append(int(pid))
    return out


@needs_find
def test_an_abandoned_listing_stops_find(tmp_path, monkeypatch):
    monkeypatch.setattr(find_module, "CHUNK", 256)
    for i in range(300):
        (tmp_path / f"file-{i:04d}.dat").write_text("x")
    parts = walk_parts(str(tmp_path), walker="find")
    assert next(parts)
    parts.close()  # the caller stops early (a failed write, say)
    assert _find_children() == []


@needs_find
def test_a_scan_writes_while_the_listing_goes_on(tmp_path, monkeypatch):
    from damas_core.sync import scan_writes as agent_module

    import damas_core

    monkeypatch.setattr(find_module, "CHUNK", 4096)
    monkeypatch.setattr(agent_module, "WRITE_BATCH", 100)
    root = tmp_path / "site"
    write_tree(root, 1000)
    tracker = damas_core.open(f"lmdb://{tmp_path}/store")
    create_volume(tracker, {"_id": "v_paris", "name": "paris", "url": f"file://{root}/"})
    sizes: list[int] = []
    scanner = Scanner("paris", str(root), settle=0, walker="find")
    changes = scanner.compare({}, {}, on_part=lambda c: sizes.append(len(c.publish)))
    assert len(sizes) > 5 and sizes == sorted(sizes) and sizes[-1] == 1000
    monkeypatch.setattr(agent_module, "FIRST_BATCH", 100)
    events: list[str] = []
    real_publish, real_some = tracker.publish, agent_module.ScanWrites.some
    monkeypatch.setattr(
        tracker, "publish", lambda b: events.append(f"publish {len(b)}") or real_publish(b)
    )
    monkeypatch.setattr(
        agent_module.ScanWrites, "some", lambda w, c: events.append("part") or real_some(w, c)
    )
    report = Agent(tracker, "v_paris", settle=0, walker="find", progress=True).run_once()
    assert sorted(report.published) == sorted(e["_id"] for e in changes.publish)
    calls = [int(e.split()[1]) for e in events if e.startswith("publish")]
    assert len(calls) == 10 and sum(calls) == 1000
    # the first files were written while find was still listing
    assert events.index("publish 100") < len(events) - 1 - events[::-1].index("part")
    by_scandir = Scanner("paris", str(root), settle=0, walker="scandir").compare({}, {})
    assert sorted(e["_id"] for e in by_scandir.publish) == sorted(report.published)
    tracker.close()


def test_walker_names_are_checked(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="walker"):
        Scanner("paris", str(tmp_path), walker="ls")
    from damas_core.sync import tree

    monkeypatch.setattr(tree, "gnu_find", lambda: None)
    with pytest.raises(ValueError, match="GNU find"):
        Scanner("paris", str(tmp_path), walker="find")
    (tmp_path / "a.txt").write_text("a")
    # auto falls back on os.scandir
    assert list(walk(str(tmp_path))) == ["/a.txt"]


@needs_find
@pytest.mark.parametrize("cut", ["mid-entry", "between entries"])
def test_a_listing_cut_short_takes_nothing_for_deleted(sites, tmp_path, monkeypatch, cut):
    """find that cannot write its whole listing (a full disk): what it did not list is
    not taken for deleted."""
    t = sites.tracker
    for i in range(40):
        sites.write("paris", f"/many/f{i:02d}.txt", str(i))
    assert len(sites.agent("paris", walker="find").run_once().published) == 40
    real = find_module.gnu_find()
    # a find whose output stops after its first entries, as on a full disk
    keep = "head -c 700" if cut == "mid-entry" else "head -z -n 40"
    fake = tmp_path / "find"
    fake.write_text(
        f'#!/bin/sh\n{real} "$@" | {keep}\n'
        'echo "find: write error: No space left on device" >&2\nexit 1\n'
    )
    fake.chmod(0o755)
    monkeypatch.setattr(find_module, "gnu_find", lambda: str(fake))
    r = sites.agent("paris").run_once()
    assert r.deleted == [] and not any(
        t.read(f"/many/f{i:02d}.txt").get("deleted") for i in range(40)
    )
    assert "find: write error: No space left on device" in r.scan_errors
    assert any("the listing stopped before its end" in e for e in r.scan_errors)
    assert t.read("vol_paris")["exit_scan"] == 1


@needs_find
def test_entries_longer_than_a_read_are_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(find_module, "CHUNK", 16)  # shorter than any entry
    deep = tmp_path.joinpath(*["d" * 200] * 10)
    deep.mkdir(parents=True)
    (deep / "leaf.txt").write_text("leaf")
    (tmp_path / "a.txt").write_text("a")
    by_find = walk(str(tmp_path), walker="find")
    assert by_find.keys() == walk(str(tmp_path), walker="scandir").keys()
    assert len(by_find) == 2
