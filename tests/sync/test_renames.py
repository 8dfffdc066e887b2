"""Renames across agent restarts: what the last scan saw of each file is kept in the
agent's state directory (``LastScan``), and an inode is compared with its device."""

from __future__ import annotations

from damas_core.sync.last_scan import LastScan

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
