"""The ``damas`` command line: on a store (``--store``) and against a real server, with
damas-core's exit codes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import orjson
import pytest
from click.testing import CliRunner

import damas_core
from damas_core.cli import COMMANDS, main
from damas_core.wsgi import make_app
from tests.http.conftest import add_users


@pytest.fixture
def run(tmp_path, monkeypatch):
    """``run(*args, input=None)`` → click Result, with a private config dir."""
    monkeypatch.setenv("DAMAS_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.delenv("DAMAS_SERVER", raising=False)
    monkeypatch.delenv("DAMAS_TOKEN", raising=False)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def store(tmp_path):
    return f"lmdb://{tmp_path}/store"


def test_store_mode_operations_and_exit_codes(run, store):
    r = run("--store", store, "create", '{"_id": "/a", "k": 1}')
    assert r.exit_code == 0 and orjson.loads(r.stdout)["_id"] == "/a"
    assert run("--store", store, "create", '{"_id": "/a"}').exit_code == 49
    r = run("--store", store, "read", "/a", "/b")
    assert r.exit_code == 7 and orjson.loads(r.stdout)[1] is None and "Multi-Status" in r.stderr
    assert run("--store", store, "read", '"/zz"').exit_code == 44
    assert run("--store", store, "create", '{"_id": ').exit_code == 40
    r = run("--store", store, "update", '{"_id": "/a", "k": null, "j": 2}')
    assert r.exit_code == 0 and orjson.loads(r.stdout) == {**orjson.loads(r.stdout), "j": 2}
    r = run("--store", store, "-l", "search", "j:2")
    assert r.exit_code == 0 and r.stdout == "/a\n"
    r = run("--store", store, "search_mongo", '{"j": 2}', '{"_id": 1}', "0", "0")
    assert orjson.loads(r.stdout) == {"count": 1, "ids": ["/a"]}
    r = run("--store", store, "publish", '{"_id": "/f", "comment": "c", "origin": "o"}')
    assert r.exit_code == 0 and orjson.loads(r.stdout)["origin"] == "o"
    assert run("--store", store, "lock", "/f").exit_code == 0
    assert run("--store", store, "lock", "/nope").exit_code == 44  # as the server: 404
    assert run("--store", store, "unlock", "/f").exit_code == 0
    r = run("--store", store, "comment", '{"#parent": "/f", "comment": "ok"}')
    assert r.exit_code == 0 and orjson.loads(r.stdout)["#parent"] == "/f"
    r = run("--store", store, "version", "/f", '{"file": "v2"}')
    assert r.exit_code == 0 and orjson.loads(r.stdout)["file"] == "v2"
    r = run("--store", store, "graph", "/f")
    assert r.exit_code == 0 and orjson.loads(r.stdout)[0]["_id"] == "/f"
    assert run("--store", store, "delete", "/a").exit_code == 0
    assert run("--store", store, "delete", "/a").exit_code == 44
    assert run("--store", store, "search", "(").exit_code == 40


def test_standard_input(run, store):
    run("--store", store, "create", '[{"_id": "/a"}, {"_id": "/b"}]')
    ids = run("--store", store, "-l", "search", "*").stdout
    assert ids == "/a\n/b\n"
    r = run("--store", store, "read", "-", input=ids)  # one id per line
    assert r.exit_code == 0 and [e["_id"] for e in orjson.loads(r.stdout)] == ["/a", "/b"]
    r = run("--store", store, "read", "-", input='["/a"]')  # or JSON
    assert r.exit_code == 0 and len(orjson.loads(r.stdout)) == 1
    r = run("--store", store, "-q", "create", input='{"_id": "/c"}')  # no argument: stdin
    assert r.exit_code == 0 and r.stdout == ""


def test_usage_errors_exit_1(run, store):
    assert run("bogus").exit_code == 1
    assert run("--store", store, "create").exit_code == 1
    assert run("--store", store, "signin", "a", "b").exit_code == 1
    assert run("--store", store, "search_mongo", "{}", "null", "x").exit_code == 1


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - {"copy", "export", "import", "sync"}))
def test_every_command_has_help_with_examples(run, command):
    r = run(command, "--help")
    assert r.exit_code == 0 and "Examples:" in r.stdout, command


def test_server_mode_signin_token_file_and_exit_codes(run, shared_server, tmp_path):
    switch, url = shared_server
    tracker = damas_core.open("memory://")
    add_users(tracker)
    switch.app = make_app(tracker, auth="jwt")
    assert run("-s", url, "read", "/a").exit_code == 41  # not signed in
    r = run("-s", url, "signin", "ula", "ula-pw", "2h")
    assert r.exit_code == 0
    token = r.stdout.strip()
    files = {f.name: f for f in (tmp_path / "cfg").iterdir()}
    token_name = next(name for name in files if name.startswith("token-"))
    assert sorted(files) == ["server", token_name]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files.values())
    assert files[token_name].read_text().strip() == token
    assert files["server"].read_text().strip() == url
    r = run("-s", url, "create", '{"_id": "/a"}')
    assert r.exit_code == 0 and orjson.loads(r.stdout)["author"] == "ula"
    assert run("-s", url, "create", '{"_id": "/a"}').exit_code == 49
    assert run("-s", url, "read", '["/a", "/b"]').exit_code == 7
    assert run("-s", url, "read", "/b").exit_code == 44
    assert run("-s", url, "delete", "/a").exit_code == 43  # a user may not delete
    r = run("-s", url, "verify")
    assert r.exit_code == 0 and orjson.loads(r.stdout)["_id"] == "@ula"
    assert run("-s", url, "signout").exit_code == 0
    assert [f.name for f in (tmp_path / "cfg").iterdir()] == ["server"]  # no token left
    # The token was revoked on the server, not only forgotten here.
    r = run("-s", url, "--token", token, "verify")
    assert r.exit_code == 41 and "revoked" in r.stderr
    assert run("-s", url, "signin", "ula", "wrong").exit_code == 41
    tracker.close()


def test_environment_variables(run, shared_server, monkeypatch):
    switch, url = shared_server
    tracker = damas_core.open("memory://")
    add_users(tracker)
    app = switch.app = make_app(tracker, auth="jwt")
    monkeypatch.setenv("DAMAS_SERVER", url)
    monkeypatch.setenv("DAMAS_TOKEN", app.tokens.issue("eddie")[0])
    r = run("-l", "verify")
    assert r.exit_code == 0 and '"@eddie"' in r.stdout
    tracker.close()


def test_unreachable_server_exits_3(run):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run("-s", f"http://127.0.0.1:{port}", "read", "/a")
    assert r.exit_code == 3 and "unreachable" in r.stderr


@pytest.mark.slow
def test_damas_serve_creates_the_admin_once(tmp_path):
    store = f"lmdb://{tmp_path}/data"
    damas = os.path.join(os.path.dirname(sys.executable), "damas")

    def start(*extra: str) -> tuple[subprocess.Popen, str, list[str]]:
        proc = subprocess.Popen(
            [damas, "serve", "--store", store, "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "serving" in line:
                return proc, line.split(" on ")[1].split()[0].rstrip("/"), out
        proc.kill()
        raise AssertionError("damas serve did not start")

    proc, url, _ = start()
    try:
        from damas_core.client import connect

        proc.stdout.flush()
        first = proc.stdout.readline()
        assert "@admin" in first
        password = first.rsplit(": ", 1)[1].strip()
        client = connect(url)
        assert client.sign_in("admin", password)["user"]["class"] == "admin"
        assert client.create({"_id": "/x"})["author"] == "admin"
        r = client.http.get(url + "/")
        assert r.status_code == 200 and "openapi.json" in r.text
    finally:
        proc.terminate()
        proc.wait(10)
    # Second start: an admin exists, nothing is created or printed.
    proc, url, _ = start()
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    assert "@admin" not in out


@pytest.mark.slow
def test_damas_serve_admin_password_file(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("from-a-file\n")
    damas = os.path.join(os.path.dirname(sys.executable), "damas")
    proc = subprocess.Popen(
        [
            damas,
            "serve",
            "--store",
            f"lmdb://{tmp_path}/d",
            "--port",
            "0",
            "--admin-password-file",
            str(secret),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = ""
        while "serving" not in line:
            line = proc.stderr.readline()
            assert line, "damas serve did not start"
        url = line.split(" on ")[1].split()[0].rstrip("/")
        from damas_core.client import connect

        assert connect(url).sign_in("admin", "from-a-file")["user"]["_id"] == "@admin"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "from-a-file" not in out
