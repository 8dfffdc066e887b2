"""The administrator's commands (``damas volume``, ``params``, ``user``, ``conflicts``)
through the real ``damas`` command, on a store and against a real ``damas serve``:
the same outputs and exit codes, validation before anything is written, passwords
never taken as arguments."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import orjson
import pytest

import damas_core
from damas_core.operations.users import authenticate
from tests.sync.processes import DAMAS, Server

pytestmark = pytest.mark.slow


class Damas:
    """Runs ``damas`` on a store (``--store``) or against a server (a token in the
    environment); ``store`` is the store's URL either way, to look at what was written."""

    def __init__(self, tmp: Path, mode: str) -> None:
        self.tmp = tmp
        self.env = {k: v for k, v in os.environ.items() if k not in ("DAMAS_SERVER", "DAMAS_TOKEN")}
        self.env["DAMAS_CONFIG_DIR"] = str(tmp / "config")
        self.server: Server | None = None
        if mode == "server":
            self.server = Server(tmp)
            self.server.start()
            with self.server.admin() as admin:
                self.env["DAMAS_TOKEN"] = admin.token
            self.env["DAMAS_SERVER"] = self.server.url
            self.prefix: list[str] = []
            self.store = self.server.store
        else:
            self.store = f"lmdb://{tmp}/store"
            self.prefix = ["--store", self.store]

    def __call__(self, *args: str, stdin: str = "", env: dict | None = None):
        return subprocess.run(
            [DAMAS, *self.prefix, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env={**self.env, **(env or {})},
            check=False,
        )

    def json(self, *args: str, stdin: str = ""):
        done = self(*args, stdin=stdin)
        assert done.returncode == 0, done.stderr
        return orjson.loads(done.stdout)

    def read(self, element_id: str):
        with damas_core.open(self.store) as t:
            return t.read(element_id)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


@pytest.fixture(params=["store", "server"])
def damas(request, tmp_path):
    d = Damas(tmp_path, request.param)
    yield d
    d.close()


def test_volumes_are_added_changed_listed_and_removed(damas, tmp_path):
    url = f"file://{tmp_path}/paris/"
    made = damas.json("volume", "add", "vol_paris", "paris", url, "settleTime=5")
    assert made["name"] == "paris" and made["settleTime"] == 5
    assert damas("volume", "add", "vol_paris", "paris", url).returncode == 49
    changed = damas.json("volume", "set", "vol_paris", "enableEmission=false", "rsync_args=-z")
    assert changed["enableEmission"] is False and changed["rsync_args"] == "-z"
    assert "settleTime" not in damas.json("volume", "set", "vol_paris", "settleTime=null")
    # refused before anything is written, naming the key
    for bad in (
        ["rsync_args=--delete"],
        ["name=Not A Name"],
        ["url=http://x/"],
        ["sleepBetweenScans=-1"],
    ):
        done = damas("volume", "set", "vol_paris", *bad)
        assert done.returncode == 40, done.stderr
        assert bad[0].split("=")[0] in done.stderr
    assert damas("volume", "add", "vol_bad", "x", url).returncode == 40
    assert damas.read("vol_bad") is None
    assert damas.read("vol_paris")["rsync_args"] == "-z"
    damas.json(
        "volume", "add", "vol_tokyo", "tokyo", "ssh://sync@tokyo/srv/p/", '{"ssh_port": 2222}'
    )
    listed = damas("-l", "volume", "list")
    assert [orjson.loads(line)["_id"] for line in listed.stdout.splitlines()] == [
        "vol_paris",
        "vol_tokyo",
    ]
    assert damas("volume", "set", "vol_lyon", "enableScans=false").returncode == 44
    # an element that is not a volume is not removed as one
    damas("create", '{"_id": "notes", "text": "keep"}')
    assert damas("volume", "rm", "notes").returncode == 40
    assert damas.read("notes") is not None
    assert damas.json("volume", "rm", "vol_tokyo") == "vol_tokyo"
    assert damas("volume", "rm", "vol_tokyo").returncode == 44


def test_global_parameters_are_read_and_set(damas):
    assert damas.json("params", "get")["sleepBetweenScans"] == 60  # the default
    damas.json("params", "set", "syncEverywhere=true", "sleepBetweenScans=30")
    assert damas.json("params", "get", "sleepBetweenScans") == 30
    assert damas.json("params", "get", "syncEverywhere") is True
    done = damas("params", "set", "rsync_args=--delete")
    assert done.returncode == 40 and "--delete" in done.stderr
    assert damas("params", "get", "nope").returncode == 44
    damas.json("params", "set", '{"sleepBetweenScans": null}')
    assert damas.json("params", "get", "sleepBetweenScans") == 60


def test_users_are_added_listed_disabled_and_get_passwords_never_as_arguments(damas, tmp_path):
    made = damas.json("user", "add", "alice", "--class", "editor", stdin="first-pw\n")
    assert made["_id"] == "@alice" and "password" not in made
    assert damas("user", "add", "alice", stdin="x\n").returncode == 49
    # a password given as an argument is refused: there is no such argument
    assert damas("user", "add", "bob", "bob-pw").returncode == 1
    assert damas.read("@bob") is None
    assert damas("user", "add", "bad/name", stdin="x\n").returncode == 40
    assert damas("user", "add", "carol", stdin="\n").returncode == 1  # empty
    secret = tmp_path / "pw"
    secret.write_text("carol-pw\n")
    damas.json("user", "add", "carol", "--password-file", str(secret))
    users = damas.json("user", "list")
    assert "@alice" in [u["_id"] for u in users] and all("password" not in u for u in users)

    with damas_core.open(damas.store) as t:
        assert authenticate(t, "alice", "first-pw") is not None
        assert authenticate(t, "carol", "carol-pw") is not None
    damas.json("user", "passwd", "alice", stdin="second-pw\n")
    assert damas("user", "passwd", "nobody", stdin="x\n").returncode == 44
    with damas_core.open(damas.store) as t:
        assert authenticate(t, "alice", "first-pw") is None
        assert authenticate(t, "alice", "second-pw") is not None
    assert damas.json("user", "disable", "alice")["disabled"] is True
    with damas_core.open(damas.store) as t:
        assert authenticate(t, "alice", "second-pw") is None
    assert "disabled" not in damas.json("user", "disable", "--enable", "alice")


def test_a_password_that_looks_like_a_damas_core_digest_still_signs_in(damas):
    hexlike = "5f4dcc3b5aa765d61d8327deb882cf99"  # 32 hex characters, as an md5 digest
    damas.json("user", "add", "dora", stdin=hexlike + "\n")
    with damas_core.open(damas.store) as t:
        assert t.storage.get("@dora")["password"].startswith("$argon2id$")
        assert authenticate(t, "dora", hexlike) is not None
    refused = damas("user", "passwd", "dora", stdin="a" * 40 + "\n")
    assert refused.returncode == 1 and "damas-core digest" in refused.stderr


def test_conflicts_are_listed_and_resolved(damas, tmp_path):
    root = tmp_path / "paris"
    root.mkdir()
    damas.json("volume", "add", "vol_paris", "paris", f"file://{root}/")
    (root / "a.txt").write_text("ours")
    (root / "a.conflict-tokyo-x.txt").write_text("theirs")
    conflict = {"time": 1, "from": "tokyo", "incoming": "/a.conflict-tokyo-x.txt"}
    element = {"_id": "/a.txt", "origin": "tokyo", "comment": "new", "file_size": 6}
    damas.json("publish", orjson.dumps(element).decode())
    damas.json("update", orjson.dumps({"_id": "/a.txt", "conflict_paris": conflict}).decode())
    listed = damas.json("conflicts", "list")
    assert [(c["_id"], c["site"], c["incoming"]) for c in listed] == [
        ("/a.txt", "paris", "/a.conflict-tokyo-x.txt")
    ]
    assert damas("conflicts", "resolve", "/a.txt", "paris", "--keep", "both").returncode == 1
    assert damas("conflicts", "resolve", "/b.txt", "paris", "--keep", "local").returncode == 44
    damas.json("conflicts", "resolve", "/a.txt", "paris", "--keep", "incoming")
    assert (root / "a.txt").read_text() == "theirs"
    assert not (root / "a.conflict-tokyo-x.txt").exists()
    assert damas.json("conflicts", "list") == []


def test_against_a_server_only_an_admin_writes_volumes_and_users(tmp_path):
    damas = Damas(tmp_path, "server")
    try:
        assert damas.server is not None
        with damas.server.admin() as admin:
            admin.create({"_id": "@ula", "class": "user", "password": "ula-pw"})
            from damas_core.client import connect

            with connect(damas.server.url) as ula:
                ula.sign_in("ula", "ula-pw")
                as_ula = {"DAMAS_TOKEN": ula.token}
        url = f"file://{tmp_path}/p/"
        assert damas("volume", "add", "vol_p", "ppp", url, env=as_ula).returncode == 43
        assert damas("params", "set", "syncEverywhere=true", env=as_ula).returncode == 43
        assert (
            damas("user", "add", "eve", "--class", "admin", stdin="x\n", env=as_ula).returncode
            == 43
        )
        assert damas.read("vol_p") is None and damas.read("@eve") is None
        # a user changes their own password
        assert damas("user", "passwd", "ula", stdin="new-pw\n", env=as_ula).returncode == 0
        with damas.server.admin() as admin:
            assert admin.read("@ula") is not None
    finally:
        damas.close()


@pytest.mark.parametrize(
    "command",
    [
        ["volume"], ["volume", "add"], ["volume", "set"], ["volume", "rm"], ["volume", "list"],
        ["params"], ["params", "get"], ["params", "set"],
        ["user"], ["user", "add"], ["user", "passwd"], ["user", "disable"], ["user", "list"],
        ["conflicts"], ["conflicts", "list"], ["conflicts", "resolve"],
        ["sync", "agent"], ["sync", "status"],
    ],
)  # fmt: skip
def test_every_admin_command_has_help_with_examples(command):
    done = subprocess.run([DAMAS, *command, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Examples:" in done.stdout
    assert f"damas {' '.join(command[:1])}" in done.stdout.split("Examples:")[1]
