"""An agent's state directory and credentials: its own, private, never written through
a link, and nothing private kept there in clear."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from damas_core.sync import Agent
from damas_core.sync.exits import EXIT_CREDENTIALS, ServiceError
from damas_core.sync.service import Credentials
from damas_core.sync.state_dir import StateLock
from damas_core.sync.volumes import create_volume

import damas_core

NOBODY = 65534


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target = tmp_path / "precious"
    target.write_text("keep me")
    (state / "agent.lock").symlink_to(target)
    with pytest.raises(ServiceError, match="symlink") as e, StateLock(state):
        pass
    assert e.value.exit_code == EXIT_CREDENTIALS
    assert target.read_text() == "keep me"


def test_a_state_dir_others_may_write_is_refused(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    with pytest.raises(ServiceError, match=r"0777.*chmod 700") as e, StateLock(state):
        pass
    assert e.value.exit_code == EXIT_CREDENTIALS
    assert not (state / "agent.lock").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a folder to another user")
def test_a_state_dir_another_user_owns_is_refused(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    with pytest.raises(ServiceError, match=f"uid {NOBODY}") as e, StateLock(state):
        pass
    assert e.value.exit_code == EXIT_CREDENTIALS
    assert not (state / "agent.lock").exists()


def test_what_the_agent_keeps_is_private_and_holds_no_rsync_env(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_text("a")
    state = tmp_path / "state"
    state.mkdir(mode=0o755)  # a service manager's default
    t = damas_core.open("memory://")
    create_volume(
        t,
        {"_id": "v", "name": "paris", "url": f"file://{root}/", "rsync_env": "TZ=Pacific/Chatham"},
    )
    agent = Agent(t, "v", settle=0, state_dir=str(state))
    with StateLock(state):
        agent.run_once()
    agent.close()
    for folder in ("view", "scan"):
        assert _mode(state / folder) == 0o700, folder
        for file in (state / folder).iterdir():
            assert _mode(file) == 0o600, file
    assert _mode(state / "agent.lock") == 0o600
    assert b"Pacific/Chatham" not in (state / "view" / "data.mdb").read_bytes()
    # a restarted agent reads the volumes again: its rsync_env is there for rsync
    again = Agent(t, "v", settle=0, state_dir=str(state))
    again.run_once()
    assert again.view.volume("v")["rsync_env"] == "TZ=Pacific/Chatham"
    again.close()


def test_stores_left_readable_by_an_earlier_version_are_made_private(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    state = tmp_path / "state"
    (state / "view").mkdir(parents=True, mode=0o755)
    t = damas_core.open("memory://")
    create_volume(t, {"_id": "v", "name": "paris", "url": f"file://{root}/"})
    Agent(t, "v", state_dir=str(state)).close()
    (state / "view" / "data.mdb").chmod(0o644)
    (state / "view").chmod(0o755)
    Agent(t, "v", state_dir=str(state)).close()
    assert _mode(state / "view") == 0o700 and _mode(state / "view" / "data.mdb") == 0o600


def test_a_credentials_file_that_is_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "credentials.json"
    os.mkfifo(fifo, 0o600)

    def writer() -> None:
        # without the check the agent would wait for this writer, then read it
        try:
            with open(fifo, "w") as f:
                f.write('{"username": "agent", "password": "pw"}')
        except OSError:
            pass

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        with pytest.raises(ServiceError, match="not a regular file") as e:
            Credentials.load(fifo)
        assert e.value.exit_code == EXIT_CREDENTIALS
    finally:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer go
        thread.join()
        os.close(fd)
