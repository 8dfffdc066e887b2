"""The site contract: every implementation of :class:`damas_core.sync.site.Site` is
held to these tests, written once. A new kind of site adds itself to :data:`KINDS`
(a factory taking the root folder and returning a site for it).

The attacks come first: a table of hostile ids driven through every effect of the
seam. Whatever the id, nothing outside the volume root is touched: a sibling folder's
files keep their bytes and their mtimes, and nothing appears there.
"""

from __future__ import annotations

import ast
import contextlib
import os
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from damas_core.sync.rsync import Endpoint, transfer
from damas_core.sync.site import LocalSite, Refused, Site, id_refusal
from damas_core.sync.ssh_site import SshSite
from damas_core.sync.tree import Seen

from .conftest import needs_rsync
from .storages import loopback_ssh


def _ssh_site(root: Path) -> Site:
    """The folder ``root`` as a storage reached over ssh (an sshd on loopback that sees
    this machine's files, so that the tests write and check them directly)."""
    reached = loopback_ssh()
    if reached is None:
        pytest.skip("sshd is not installed (scripts/system-deps.sh: openssh-server)")
    where, ssh = reached
    site = SshSite({"_id": "v", "url": f"ssh://{where}{root}/"}, ssh_command=ssh)
    site.kind = "find"
    return site


#: the kinds of site under test: a name and a factory (root folder -> site)
KINDS: dict[str, Callable[[Path], Site]] = {
    "local-find": lambda root: LocalSite(str(root), walker="find"),
    "local-scandir": lambda root: LocalSite(str(root), walker="scandir"),
    "ssh-find": _ssh_site,
}
#: what a storage reached over ssh cannot do, each with the reason
NOT_OVER_SSH = {
    "endpoint": "an ssh endpoint is reached with the hub's ssh options: "
    "tests/sync/test_hub.py copies through it",
}


def skip_over_ssh(vol: Volume, what: str) -> None:
    if isinstance(vol.site, SshSite):
        pytest.skip(NOT_OVER_SSH[what])


class Volume:
    """A site on a root folder, beside a sibling folder ``outside`` that holds a file
    the attacks aim at, and a snapshot of that sibling to compare with."""

    def __init__(self, tmp: Path, make: Callable[[Path], Site]) -> None:
        self.base = tmp
        self.root = tmp / "root"
        self.outside = tmp / "outside"
        self.root.mkdir()
        self.outside.mkdir()
        (self.outside / "victim.txt").write_text("victim")
        (self.outside / "planted.sh").write_text("planted")
        os.utime(self.outside / "victim.txt", ns=(1_000_000_123_456_789, 1_000_000_123_456_789))
        self.site = make(self.root)
        self.before = self.snapshot()

    def write(self, file_id: str, data: str = "x", mtime_ns: int | None = None) -> Path:
        path = self.root / file_id.strip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data)
        if mtime_ns is not None:
            os.utime(path, ns=(mtime_ns, mtime_ns))
        return path

    def snapshot(self) -> dict[str, tuple[bytes, int]]:
        """Every entry under the sibling folder: its bytes and mtime (ns)."""
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.outside):
            for name in dirnames + filenames:
                path = Path(dirpath, name)
                st = path.lstat()
                data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
                out[str(path.relative_to(self.outside))] = (data, st.st_mtime_ns)
        return out

    def untouched(self) -> bool:
        return self.snapshot() == self.before


@pytest.fixture(params=list(KINDS))
def vol(request, tmp_path) -> Volume:
    return Volume(tmp_path, KINDS[request.param])


# -- the attacks -------------------------------------------------------------------------

#: hostile ids; each names, one way or another, a file outside the root (or is not a
#: canonical id at all). ``{outside}`` is the sibling folder's absolute path.
HOSTILE = {
    "dotdot": "/../outside/victim.txt",
    "dotdot deep": "/sub/../../outside/victim.txt",
    "dotdot package": "/../outside/",
    "absolute-looking": "/{outside}/victim.txt",
    "empty segment": "//outside/victim.txt",
    "dot segment": "/./victim.txt",
    "symlinked folder": "/link/victim.txt",
    "symlinked folder package": "/link/",
    "symlink in a folder": "/sub/deep/victim.txt",
    "newline": "/new\nline/../../outside/victim.txt",
    "control": "/a\x1bb",
    "NUL": "/a\x00b",
    "long name": "/" + "n" * 300,
    "long path": "/" + "/".join(["d" * 200] * 25),
    "relative": "outside/victim.txt",
    "root": "/",
}


def _hostile(vol: Volume, key: str) -> str:
    """The id ``key`` names, with what it needs set up in the volume: a symlinked
    folder ``/link`` pointing at the sibling, ``/sub/deep`` a symlink to it too."""
    link = vol.root / "link"
    if not link.is_symlink():
        link.symlink_to(vol.outside)
        (vol.root / "sub").mkdir()
        (vol.root / "sub" / "deep").symlink_to(vol.outside)
    return HOSTILE[key].replace("/{outside}", str(vol.outside).replace("//", "/"))


def _fetch(vol: Volume) -> Callable[[Endpoint, str], bool]:
    """A fetch for keep_both: rsync copies a file holding "incoming" into the staging
    folder under ``rel``, through the endpoint the site gives (over ssh with the
    site's ssh command, for a storage)."""
    source = vol.base / "incoming"
    ssh = vol.site.ssh_program if isinstance(vol.site, SshSite) else None

    def fetch(staging: Endpoint, rel: str) -> bool:
        assert staging.is_local == (ssh is None)
        path = source / rel.rstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("incoming")
        return transfer(Endpoint(str(source)), staging, [rel], ssh_command=ssh).returncode == 0

    return fetch


#: every effect of the seam, aimed at a hostile id ``h`` (as source and as target)
EFFECTS: dict[str, Callable[[Volume, str], object]] = {
    "look": lambda v, h: v.site.look(h),
    "exists": lambda v, h: v.site.exists(h),
    "check": lambda v, h: v.site.check(h, {"file_size": 6, "file_mtime": 1_000_000_123}),
    "move from": lambda v, h: v.site.move(h, "/moved.txt"),
    "move to": lambda v, h: v.site.move("/ok.txt", h),
    "quarantine": lambda v, h: v.site.quarantine(h, date.today(), 1),
    "remove": lambda v, h: v.site.remove(h),
    "keep both (target)": lambda v, h: v.site.keep_both(h, "/ok.conflict.txt", _fetch(v)),
    "keep both (incoming)": lambda v, h: v.site.keep_both("/ok.txt", h, _fetch(v)),
    "replace (incoming)": lambda v, h: v.site.replace(h, "/ok.txt"),
    "replace (target)": lambda v, h: v.site.replace("/ok.txt", h),
}


@pytest.mark.parametrize("effect", list(EFFECTS))
@pytest.mark.parametrize("key", list(HOSTILE))
def test_a_hostile_id_is_refused_by_every_effect(vol, effect, key):
    vol.write("/ok.txt", "ok")
    hostile = _hostile(vol, key)
    if key == "absolute-looking":
        # a canonical id: it names a path under the root, which does not exist
        with contextlib.suppress(FileNotFoundError):
            EFFECTS[effect](vol, hostile)
    elif key == "symlinked folder package" and effect in ("look", "check", "exists"):
        # a look at a symlink sees no file (nothing is followed)
        assert EFFECTS[effect](vol, hostile) in (None, False, True)
    else:
        with pytest.raises(Refused):
            EFFECTS[effect](vol, hostile)
        assert vol.site.refusal(hostile) is not None
        assert hostile not in dict(vol.site.files_from([hostile])[0])
    assert vol.untouched()
    assert not (vol.outside / "moved.txt").exists()


def test_every_hostile_id_is_refused_by_the_id_rule_or_the_root():
    assert all(
        id_refusal(h) is not None
        for k, h in HOSTILE.items()
        if k not in ("absolute-looking", "symlinked folder", "symlinked folder package")
        and k != "symlink in a folder"
    )


def test_the_quarantine_and_the_staging_folder_never_follow_a_symlink_out(vol):
    vol.write("/ok.txt", "ok")
    (vol.root / ".damas-trash").symlink_to(vol.outside)
    old = vol.outside / (date.today() - timedelta(days=90)).isoformat()
    old.mkdir()
    (old / "kept.txt").write_text("kept")
    vol.before = vol.snapshot()
    assert vol.site.purge(30, date.today()) == []
    with pytest.raises(Refused):
        vol.site.quarantine("/ok.txt", date.today(), 1)
    (vol.root / ".damas-partial").symlink_to(vol.outside)
    with pytest.raises(Refused):
        vol.site.keep_both("/ok.txt", "/ok.conflict.txt", _fetch(vol))
    assert vol.untouched() and (vol.root / "ok.txt").read_text() == "ok"


def test_a_day_folder_of_the_quarantine_that_is_a_symlink_is_removed_not_followed(vol):
    trash = vol.root / ".damas-trash"
    trash.mkdir()
    (trash / "2000-01-01").symlink_to(vol.outside)
    assert vol.site.purge(30, date.today()) == ["2000-01-01"]
    assert not (trash / "2000-01-01").is_symlink() and vol.untouched()


def test_a_leading_dash_is_an_ordinary_name(vol):
    vol.write("/-rf", "dash")
    assert vol.site.move("/-rf", "/--delete")
    assert vol.site.quarantine("/--delete", date(2026, 1, 1), 1) == (
        "/.damas-trash/2026-01-01/--delete"
    )
    assert (vol.root / ".damas-trash/2026-01-01/--delete").read_text() == "dash"
    assert vol.untouched()


# -- the contract ------------------------------------------------------------------------


def test_walk_lists_files_and_leaves_out_symlinks_and_reserved_names(vol):
    vol.write("/a.txt", "aa", mtime_ns=1_600_000_000_123_456_789)
    vol.write("/d/b.txt", "bbb")
    vol.write("/.damas-trash/2026-01-01/x.txt")
    vol.write("/.damas-partial/y.txt")
    (vol.root / "link").symlink_to(vol.outside)
    (vol.root / "file_link").symlink_to(vol.outside / "victim.txt")
    tree = vol.site.walk()
    assert sorted(tree) == ["/a.txt", "/d/b.txt"]
    precision = vol.site.precision_ns
    assert tree["/a.txt"][0] == 2
    assert tree["/a.txt"][1] // precision == 1_600_000_000_123_456_789 // precision


def test_look_and_check(vol):
    vol.write("/a.txt", "aa", mtime_ns=1_600_000_000_123_456_789)
    look = vol.site.look("/a.txt")
    assert look is not None and look[0] == 2
    assert vol.site.look("/missing.txt") is None
    assert vol.site.exists("/a.txt") and not vol.site.exists("/missing.txt")
    assert vol.site.check("/a.txt", {"file_size": 2, "file_mtime": 1_600_000_000_123})
    assert not vol.site.check("/a.txt", {"file_size": 3, "file_mtime": 1_600_000_000_123})
    assert not vol.site.check("/missing.txt", {"file_size": 2, "file_mtime": 1_600_000_000_123})
    (vol.root / "file_link").symlink_to(vol.root / "a.txt")
    assert vol.site.look("/file_link") is None


def _listings(site: Site) -> list[Site]:
    """The site, and for a storage reached over ssh the same storage listed by
    ``rsync --list-only`` too (what a storage restricted with rrsync allows)."""
    if not isinstance(site, SshSite):
        return [site]
    by_rsync = SshSite(site.volume, ssh_command=site.ssh_program)
    by_rsync.kind = "rsync"
    return [site, by_rsync]


def _digest(site: Site) -> bytes | None:
    with site.start_listing() as listing:
        return None if listing is None else listing.wait_digest()


def test_a_listing_digest_names_the_very_same_listing(vol):
    """A listing made by find (here or over ssh) has a digest: the same again while
    nothing changed, another one for a nanosecond of mtime or a rename. A walk with no
    listing to go back to (scandir) has none, so that its scans always read the tree."""
    vol.write("/a.txt", "a", mtime_ns=1_600_000_000_000_000_001)
    vol.write("/d/b.txt", "b")
    first = _digest(vol.site)
    if isinstance(vol.site, LocalSite) and vol.site.walker == "scandir":
        assert first is None
        return
    assert first is not None and _digest(vol.site) == first
    os.utime(vol.root / "a.txt", ns=(1_600_000_000_000_000_002,) * 2)
    second = _digest(vol.site)
    assert second not in (None, first)
    (vol.root / "d" / "b.txt").rename(vol.root / "d" / "c.txt")
    assert _digest(vol.site) not in (None, first, second)


def test_a_package_looks_like_the_sum_of_its_direct_files(vol):
    vol.write("/seq/1.exr", "aa", mtime_ns=1_000_000_000_000_000_000)
    vol.write("/seq/2.exr", "bbb", mtime_ns=1_000_000_002_000_000_000)
    vol.write("/seq/sub/3.exr", "cccc")
    vol.write("/seq/.2.exr.AbC123", "rsync's temporary file")
    (vol.root / "seq/link.exr").symlink_to(vol.outside / "victim.txt")
    (vol.root / "empty").mkdir()
    (vol.root / "seqlink").symlink_to(vol.root / "seq")
    (vol.root / "plain.txt").write_text("a file")
    for site in _listings(vol.site):
        assert site.look("/seq/") == (5, 1_000_000_002_000_000_000), site.precision_ns
        assert site.look("/empty/") == (0, 0)
        assert site.look("/missing/") is None and site.look("/plain.txt/") is None
        assert site.look("/seqlink/") is None  # a symlink is not followed


def test_a_walk_with_package_rules_gives_each_package_as_one_look(vol):
    """A package is one look in the walk, the sum of its direct files as the site's
    look gives it, with its file count; its subfolders are walked as usual; a folder
    already tracked as a package is one without a rule."""
    vol.write("/seq/1.exr", "aa", mtime_ns=1_000_000_000_000_000_000)
    vol.write("/seq/2.exr", "bbb", mtime_ns=1_000_000_002_000_000_000)
    vol.write("/seq/sub/3.exr", "cccc", mtime_ns=1_000_000_003_000_000_000)
    vol.write("/shots/$(touch canary) seq;x/f'1.exr", "dd", mtime_ns=1_000_000_004_000_000_000)
    vol.write("/tracked/a.exr", "e", mtime_ns=1_000_000_005_000_000_000)
    vol.write("/other/b.txt", "ffffff", mtime_ns=1_000_000_006_000_000_000)
    volume = {"enableDiscoveryPackages": True, "packagePatternRules": ["seq[^/]*/$"]}
    for site in _listings(vol.site):
        seen = Seen()
        tree = site.walk(site.scan_rules(volume, ["/tracked/"]), seen)
        assert tree == {
            "/seq/": (5, 1_000_000_002_000_000_000),
            "/seq/sub/3.exr": (4, 1_000_000_003_000_000_000),
            "/shots/$(touch canary) seq;x/": (2, 1_000_000_004_000_000_000),
            "/tracked/": (1, 1_000_000_005_000_000_000),
            "/other/b.txt": (6, 1_000_000_006_000_000_000),
        }, site.precision_ns
        assert seen.counts == {"/seq/": 2, "/shots/$(touch canary) seq;x/": 1, "/tracked/": 1}
        assert not seen.errors and not seen.unread
        assert tree["/seq/"] == site.look("/seq/")
        hostile = "/shots/$(touch canary) seq;x/"
        assert site.look(hostile) == tree[hostile] and site.exists(hostile)
    # nothing ran a name: no canary where a shell would have made it
    for where in (vol.root, Path.cwd(), Path.home(), Path("/")):
        assert not (where / "canary").exists(), where


def test_move(vol):
    vol.write("/a.txt", "a")
    vol.write("/b.txt", "b")
    assert vol.site.move("/a.txt", "/new/folder/a.txt")
    assert (vol.root / "new/folder/a.txt").read_text() == "a"
    assert not vol.site.move("/a.txt", "/c.txt")  # gone
    assert not vol.site.move("/b.txt", "/new/folder/a.txt")  # taken
    assert (vol.root / "b.txt").read_text() == "b"


def test_quarantine_keeps_both_when_a_path_is_trashed_twice_a_day(vol):
    day = date(2026, 12, 1)
    vol.write("/d/a.txt", "one")
    assert vol.site.quarantine("/d/a.txt", day, 5) == "/.damas-trash/2026-12-01/d/a.txt"
    vol.write("/d/a.txt", "two")
    assert vol.site.quarantine("/d/a.txt", day, 6) == "/.damas-trash/2026-12-01/d/a.txt.6"
    assert vol.site.walk() == {}
    with pytest.raises(FileNotFoundError):
        vol.site.quarantine("/d/a.txt", day, 7)


def test_purge_removes_old_day_folders_only(vol):
    for day in ("2026-01-01", "2026-12-01", "notes"):
        vol.write(f"/.damas-trash/{day}/x.txt")
    assert vol.site.purge(30, date(2026, 12, 5)) == ["2026-01-01"]
    assert sorted(p.name for p in (vol.root / ".damas-trash").iterdir()) == ["2026-12-01", "notes"]


def test_remove(vol):
    vol.write("/a.txt")
    vol.write("/seq/1.exr")
    assert vol.site.remove("/a.txt") and vol.site.remove("/seq/")
    assert not vol.site.remove("/a.txt")
    assert vol.site.walk() == {}


@needs_rsync
def test_keep_both_and_replace(vol):
    vol.write("/a.txt", "mine")
    assert vol.site.keep_both("/a.txt", "/a.conflict.txt", _fetch(vol))
    assert (vol.root / "a.conflict.txt").read_text() == "incoming"
    assert not vol.site.keep_both("/a.txt", "/b.conflict.txt", lambda ep, rel: False)
    assert not (vol.root / "b.conflict.txt").exists()
    assert not list((vol.root / ".damas-partial").iterdir())  # staging removed
    vol.site.replace("/a.conflict.txt", "/a.txt")
    assert (vol.root / "a.txt").read_text() == "incoming"
    with pytest.raises(FileNotFoundError):
        vol.site.replace("/a.conflict.txt", "/a.txt")
    # a package: the folder is replaced as a whole
    vol.write("/seq/1.exr", "mine")
    vol.write("/seq.c/1.exr", "theirs")
    vol.site.replace("/seq.c/", "/seq/")
    assert (vol.root / "seq/1.exr").read_text() == "theirs" and not (vol.root / "seq.c").exists()


def test_files_from_names_paths_from_the_root(vol):
    kept, refused = vol.site.files_from(["/a b.txt", "/seq/", "/#notes", "/x/../y"])
    assert kept == [("/a b.txt", "a b.txt"), ("/seq/", "seq/"), ("/#notes", "#notes")]
    assert list(refused) == ["/x/../y"]


@needs_rsync
def test_the_endpoint_is_what_rsync_copies_from(vol, tmp_path):
    skip_over_ssh(vol, "endpoint")
    vol.write("/#notes.txt", "hash")
    vol.write("/;x", "semicolon")
    vol.write("/d/a b.txt", "space")
    kept, _ = vol.site.files_from(["/#notes.txt", "/;x", "/d/a b.txt"])
    dst = tmp_path / "dst"
    dst.mkdir()
    result = transfer(vol.site.endpoint(), Endpoint(str(dst)), [rel for _, rel in kept])
    assert result.returncode == 0, result.stderr
    assert (dst / "#notes.txt").read_text() == "hash" and (dst / ";x").read_text() == "semicolon"
    assert (dst / "d/a b.txt").read_text() == "space"


def test_presence_and_capacity(vol):
    problem, keys = vol.site.presence({"_id": "v"})
    assert problem is None
    cap = vol.site.capacity()
    if cap is not None:
        assert set(cap) == {"bytesTotal", "bytesUsed", "bytesRemaining"}
        assert cap["bytesTotal"] >= cap["bytesUsed"] >= 0 and cap["bytesRemaining"] >= 0
    vol.root.rename(vol.base / "gone")
    problem, _ = vol.site.presence({"_id": "v", **keys})
    assert problem is not None and "not mounted" in problem


#: names the remote shell would read as code, were they not quoted word by word
SHELL_NAMES = ["/$(touch canary)", "/`touch canary`", "/a;touch canary", "/q'u\"o", "/-rf", "/#x"]


@needs_rsync
def test_shell_metacharacters_are_names_for_every_effect(vol, monkeypatch, tmp_path):
    """Every effect takes each name as a name: nothing runs, the canary beside the
    files neither appears nor disappears, and an id with a newline is refused."""
    monkeypatch.chdir(tmp_path)
    vol.write("/canary", "alive")
    for i, name in enumerate(SHELL_NAMES):
        vol.write(name, name)
        assert vol.site.look(name) is not None and vol.site.exists(name)
        moved = f"{name}.moved {i}"
        assert vol.site.move(name, moved)
        kept = vol.site.quarantine(moved, date(2026, 1, 1), i)
        assert (vol.root / kept.lstrip("/")).read_text() == name
        vol.write(name, name)
        incoming = f"{name}.conflict {i}"
        assert vol.site.keep_both(name, incoming, _fetch(vol))
        assert (vol.root / incoming.lstrip("/")).read_text() == "incoming"
        vol.site.replace(incoming, name)
        assert (vol.root / name.lstrip("/")).read_text() == "incoming"
        assert not vol.site.exists(incoming)
        assert vol.site.remove(name) and not vol.site.exists(name)
    with pytest.raises(Refused):
        vol.site.remove("/new\nline")
    assert (vol.root / "canary").read_text() == "alive"
    assert not (tmp_path / "canary").exists() and not Path("/canary").exists()
    assert sorted(vol.site.walk()) == ["/canary"] and vol.untouched()


# -- nothing else touches a volume's files -------------------------------------------------

#: the engine's modules: they reach a volume's files through a site only
ENGINE = (
    "agent", "conflicts", "copies", "deletions", "planner", "record", "report",
    "scan_writes", "scanner", "state",
)  # fmt: skip
#: what the engine may use of ``os`` (nothing that names a path)
OS_ALLOWED = {"getpid"}
#: the listing's and the filesystem's modules, the site's own tools
SITE_TOOLS = {"tree": {"Look", "Inode", "Rules", "Seen", "CONFLICT_MARK", "parent_of", "same_look"}}


def _engine_source(name: str) -> ast.Module:
    import damas_core.sync

    path = Path(damas_core.sync.__path__[0]) / f"{name}.py"
    return ast.parse(path.read_text())


@pytest.mark.parametrize("name", ENGINE)
def test_the_engine_touches_no_path_itself(name):
    tree = _engine_source(name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            assert node.attr in OS_ALLOWED, f"{name}.py uses os.{node.attr}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name not in ("shutil", "pathlib", "tempfile"), (name, alias.name)
        if isinstance(node, ast.ImportFrom):
            assert node.module not in ("os", "os.path", "shutil", "pathlib", "tempfile"), name
            if node.level == 1 and node.module == "find":
                raise AssertionError(f"{name}.py lists a volume itself (find)")
            if node.level == 1 and node.module in SITE_TOOLS:
                extra = {a.name for a in node.names} - SITE_TOOLS[node.module]
                assert not extra, f"{name}.py takes {extra} from {node.module}: ask the site"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id != "open", f"{name}.py opens a file itself"
