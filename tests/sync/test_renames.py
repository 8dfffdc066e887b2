"""Renames across agent restarts: what the last scan saw of each file is kept in the
agent's state directory (``LastScan``), and an inode is compared with its device."""

from __future__ import annotations

import os
import shutil

import pytest
from damas_core.sync.last_scan import LastScan
from damas_core.sync.volumes import create_volume, set_global_parameters

from .conftest import needs_rsync

LONG = "/" + "x" * 600  # past LMDB's 511-byte keys


def test_the_last_scan_is_read_back_by_a_new_process(tmp_path):
    path = str(tmp_path / "scan")
    last = LastScan(path)
    looks = {"/a": (1, 10), "/b": (2, 20), "/seq/": (9, 90), LONG: (3, 30)}
    inodes = {"/a": (7, 1), "/b": (7, 2), "/seq/": (7, 3), LONG: (7, 4)}
    last.keep(looks, inodes)
    # the next scan: /a changed, /b went away, /c appeared, /seq/ got another inode
    looks2 = {"/a": (1, 11), "/c": (4, 40), "/seq/": (9, 90), LONG: (3, 30)}
    inodes2 = {"/a": (7, 1), "/c": (7, 5), "/seq/": (8, 3), LONG: (7, 4)}
    last.keep(looks2, inodes2)
    last.close()
    again = LastScan(path)
    ids = ["/a", "/b", "/c", "/seq/", LONG, "/never"]
    assert again.get(ids) == {i: (looks2[i], inodes2[i]) for i in ["/a", "/c", "/seq/", LONG]}
    # its first keep replaces what the store held with this scan's tree
    again.keep({"/d": (5, 50)}, {"/d": (7, 6)})
    again.close()
    third = LastScan(path)
    assert third.get([*ids, "/d"]) == {"/d": ((5, 50), (7, 6))}
    third.close()


def test_an_unchanged_scan_writes_nothing(tmp_path):
    last = LastScan(str(tmp_path / "scan"))
    looks, inodes = {"/a": (1, 10)}, {"/a": (7, 1)}
    last.keep(looks, inodes)
    stat = last._env.stat()
    last.keep(dict(looks), dict(inodes))
    assert last._env.info()["last_txnid"] == 1  # one write transaction: the first keep
    assert last._env.stat() == stat
    last.close()


def test_in_memory_the_last_scan_lives_as_long_as_the_process():
    last = LastScan()
    assert last.get(["/a"]) == {}
    last.keep({"/a": (1, 10)}, {"/a": (7, 1)})
    assert last.get(["/a"]) == {"/a": ((1, 10), (7, 1))}
    last.close()


def _restarted(sites, name: str, state: str):
    """The agent of ``name`` stopped (its state dir closed) and a new one on ``state``."""
    stopped = sites.agents.pop(name, None)
    if stopped is not None:
        stopped.close()
    return sites.agent(name, state_dir=state)


@needs_rsync
def test_a_rename_made_while_the_agent_was_stopped_is_a_move_at_the_other_sites(sites, tmp_path):
    state = str(tmp_path / "paris state")
    sites.agent("paris", state_dir=state)
    for i in range(3):
        sites.write("paris", f"/shotA/f{i}.exr", "x" * (i + 1))
    sites.write(
        "paris", "/a.txt", "aaaa"
    )  # sizes of their own: pairs that are not unique stay apart
    sites.write("paris", "/other.txt", "other")
    sites.run(rounds=2)
    set_global_parameters(sites.tracker, {"propagateDeletions": True, "maxDelete": 50})
    old = ["/a.txt", *(f"/shotA/f{i}.exr" for i in range(3))]
    new = ["/b.txt", *(f"/shotB/f{i}.exr" for i in range(3))]
    inodes = [sites.path("tokyo", i).stat().st_ino for i in old]
    sites.agents.pop("paris").close()  # stopped
    os.rename(sites.roots["paris"] / "shotA", sites.roots["paris"] / "shotB")
    os.rename(sites.path("paris", "/a.txt"), sites.path("paris", "/b.txt"))
    r = _restarted(sites, "paris", state).run_once()  # its first scan
    assert sorted(r.deleted) == old and sorted(r.published) == new
    for a, b in zip(old, new, strict=True):
        assert sites.tracker.read(a)["renamed_to"] == b
        assert sites.tracker.read(b)["renamed_from"] == a
    history = sites.tracker.search_elements("#parent:/shotA/f1.exr", sort="time")
    assert [h["comment"] for h in history] == [
        "scanned at paris",
        "renamed to /shotB/f1.exr at paris",
    ]
    tokyo = sites.run("tokyo")[0]
    assert sorted(tokyo.moved) == list(zip(old, new, strict=True)) and tokyo.trashed == []
    # moved, not copied (rsync then finds each copy the same, and it is recorded)
    assert [sites.path("tokyo", i).stat().st_ino for i in new] == inodes
    el = sites.tracker.read("/shotB/f2.exr")
    assert el["synced_tokyo"] == el["time"]
    assert not (sites.roots["tokyo"] / ".damas-trash").exists()
    sites.agents.pop("paris").close()


def test_a_new_file_with_the_same_look_but_another_inode_is_not_a_rename(sites, tmp_path):
    state = str(tmp_path / "paris state")
    sites.agent("paris", state_dir=state)
    sites.write("paris", "/a.txt", "aaa")
    sites.write("paris", "/keep.txt", "k")
    sites.run("paris")
    sites.agents.pop("paris").close()
    old, new = sites.path("paris", "/a.txt"), sites.path("paris", "/b.txt")
    # made while the old one exists, so that it cannot get its inode number back
    shutil.copy2(old, new)
    assert os.stat(old).st_mtime_ns == os.stat(new).st_mtime_ns
    old.unlink()
    r = _restarted(sites, "paris", state).run_once()
    assert r.deleted == ["/a.txt"] and r.published == ["/b.txt"]
    assert "renamed_to" not in sites.tracker.read("/a.txt")
    assert sites.tracker.read("/b.txt")["comment"] == "scanned at paris"
    sites.agents.pop("paris").close()


def test_an_inode_number_of_another_device_is_not_the_same_file(sites, tmp_path):
    state = str(tmp_path / "paris state")
    sites.agent("paris", state_dir=state)
    sites.write("paris", "/a.txt", "aaa")
    sites.write("paris", "/keep.txt", "k")
    sites.run("paris")
    sites.agents.pop("paris").close()
    # what the last scan saw of /a.txt: the same look and inode number, on another device
    last = LastScan(os.path.join(state, "scan"))
    ((look, (device, number)),) = last.get(["/a.txt"]).values()
    assert (device, number) == (os.stat(sites.path("paris", "/a.txt")).st_dev, number)
    last.keep({"/a.txt": look}, {"/a.txt": (device + 1, number)})
    last.close()
    os.rename(sites.path("paris", "/a.txt"), sites.path("paris", "/b.txt"))
    r = _restarted(sites, "paris", state).run_once()
    assert r.deleted == ["/a.txt"] and r.published == ["/b.txt"]
    assert "renamed_to" not in sites.tracker.read("/a.txt")
    sites.agents.pop("paris").close()


def test_a_scan_stopped_before_its_end_leaves_the_one_before(sites, tmp_path, monkeypatch):
    state = str(tmp_path / "paris state")
    sites.agent("paris", state_dir=state)
    sites.write("paris", "/a.txt", "aaa")
    sites.write("paris", "/keep.txt", "k")
    sites.run("paris")
    # the next scan stops before it keeps what it saw (a crash; here its store fails)
    sites.write("paris", "/c.txt", "c")

    def crash(*args):
        raise OSError("no space left on device")

    monkeypatch.setattr(LastScan, "keep", crash)
    with pytest.raises(OSError, match="no space"):
        sites.run("paris")
    monkeypatch.undo()
    sites.agents.pop("paris").close()
    os.rename(sites.path("paris", "/a.txt"), sites.path("paris", "/b.txt"))
    r = _restarted(sites, "paris", state).run_once()
    assert r.deleted == ["/a.txt"] and r.published == ["/b.txt"]
    assert sites.tracker.read("/a.txt")["renamed_to"] == "/b.txt"
    sites.agents.pop("paris").close()


def test_a_first_run_has_no_last_scan_to_compare_with(sites, tmp_path):
    sites.write("paris", "/a.txt", "aaa")
    sites.write("paris", "/keep.txt", "k")
    sites.run("paris")
    sites.agents.pop("paris")  # no state dir: what it saw goes with it
    os.rename(sites.path("paris", "/a.txt"), sites.path("paris", "/b.txt"))
    r = _restarted(sites, "paris", str(tmp_path / "new state")).run_once()
    assert r.deleted == ["/a.txt"] and r.published == ["/b.txt"]
    assert "renamed_to" not in sites.tracker.read("/a.txt")
    sites.agents.pop("paris").close()


@needs_rsync
@pytest.mark.slow
def test_what_a_killed_agent_kept_makes_its_restart_see_the_renames(tmp_path):
    """``damas sync agent`` processes: paris's first cycle is killed (SIGKILL) while it
    receives, after its scan; files renamed while it is down are moves at tokyo."""
    from damas_core.sync.volumes import update_volume

    from tests.sync.processes import ADMIN_PW, AgentProcess, Server, credentials, until

    server = Server(tmp_path)
    server.start()
    agents: list[AgentProcess] = []
    try:
        roots = {}
        with server.admin() as admin:
            for name in ("paris", "tokyo"):
                roots[name] = tmp_path / f"site {name}"
                roots[name].mkdir()
                create_volume(
                    admin, {"_id": f"vol_{name}", "name": name, "url": f"file://{roots[name]}/"}
                )
            set_global_parameters(
                admin, {"syncEverywhere": True, "retryDelay": 0, "propagateDeletions": True}
            )
            # paris fetches tokyo's big file slowly: its first cycle is still receiving
            # when it is killed
            update_volume(admin, {"_id": "vol_paris", "rsync_args": ["--bwlimit=2048"]})
            update_volume(admin, {"_id": "vol_tokyo", "enableEmission": False})
        (roots["tokyo"] / "big.bin").write_bytes(os.urandom(24 * 1024 * 1024))
        (roots["paris"] / "shotA").mkdir()
        for i in range(3):
            (roots["paris"] / "shotA" / f"f{i}.exr").write_text("x" * (i + 1))
        creds = credentials(tmp_path / "agent.json", username="admin", password=ADMIN_PW)

        def once(name: str) -> dict:
            agent = AgentProcess(tmp_path, f"vol_{name}", server.url, creds, "--once")
            agents.append(agent)
            assert agent.proc.wait(120) == 0, agent.text()
            with server.admin() as admin:
                return admin.read(f"vol_{name}")

        once("tokyo")  # publishes big.bin
        paris = AgentProcess(tmp_path, "vol_paris", server.url, creds)  # its first run
        agents.append(paris)

        def receiving() -> bool:
            with server.admin() as admin:
                return admin.read("vol_paris").get("agentStatus") == "receiving"

        until(receiving, "paris's first reception", every=0.05)
        paris.kill()
        with server.admin() as admin:
            update_volume(admin, {"_id": "vol_paris", "rsync_args": None})
        once("tokyo")  # receives shotA
        old = [f"/shotA/f{i}.exr" for i in range(3)]
        new = [f"/shotB/f{i}.exr" for i in range(3)]
        inodes = [(roots["tokyo"] / i[1:]).stat().st_ino for i in old]
        os.rename(roots["paris"] / "shotA", roots["paris"] / "shotB")  # paris is down
        once("paris")  # the same state dir, a new process
        with server.admin() as admin:
            for a, b in zip(old, new, strict=True):
                assert admin.read(a)["renamed_to"] == b
                assert admin.read(b)["renamed_from"] == a
        once("tokyo")
        assert [(roots["tokyo"] / i[1:]).stat().st_ino for i in new] == inodes  # moved
        assert not (roots["tokyo"] / "shotA").exists() or not any(
            (roots["tokyo"] / "shotA").iterdir()
        )
        assert not (roots["tokyo"] / ".damas-trash").exists()
    finally:
        for agent in agents:
            agent.kill()
        server.stop()
