"""A private state directory (damas notify's, the agents' activity memory): made 0700,
files 0600 written atomically, and refused when an attacker swapped in a symlink or
opened it to others."""

from __future__ import annotations

import os
import stat

import pytest
from damas_core.sync.statefile import StateDir, StateDirError


def test_files_are_private_and_replaced_whole(tmp_path):
    d = StateDir(tmp_path / "state")
    d.write("a.json", {"seq": 1})
    d.write("a.json", {"seq": 2})
    assert d.read("a.json") == {"seq": 2}
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "state" / "a.json").st_mode) == 0o600
    assert os.listdir(tmp_path / "state") == ["a.json"]  # no temporary file left


def test_a_symlinked_directory_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    os.symlink(tmp_path / "elsewhere", tmp_path / "state")
    with pytest.raises(StateDirError, match="not a directory"):
        StateDir(tmp_path / "state").write("a.json", {})
    assert os.listdir(tmp_path / "elsewhere") == []


def test_a_readable_directory_keeps_its_files_private(tmp_path):
    (tmp_path / "state").mkdir()
    os.chmod(tmp_path / "state", 0o755)  # as systemd's StateDirectory makes it
    StateDir(tmp_path / "state").write("a.json", {})
    assert stat.S_IMODE(os.stat(tmp_path / "state" / "a.json").st_mode) == 0o600


def test_a_directory_others_may_write_is_refused(tmp_path):
    (tmp_path / "state").mkdir()
    os.chmod(tmp_path / "state", 0o777)
    with pytest.raises(StateDirError, match="lets other users write"):
        StateDir(tmp_path / "state").write("a.json", {})
    assert os.listdir(tmp_path / "state") == []


def test_a_state_file_swapped_for_a_symlink_is_not_followed(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text('{"seq": 99}')
    d = StateDir(tmp_path / "state")
    d.check()
    os.symlink(secret, tmp_path / "state" / "a.json")
    with pytest.raises(StateDirError, match=r"a\.json"):
        d.read("a.json")
    d.write("a.json", {"seq": 1})  # replaced by a file, the target untouched
    assert secret.read_text() == '{"seq": 99}' and d.read("a.json") == {"seq": 1}
