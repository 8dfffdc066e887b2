"""``damas signin`` against a real ``damas serve``, with the real ``damas`` command: the
server is remembered with the token, so the next commands need no ``-s``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

DAMAS = os.path.join(os.path.dirname(sys.executable), "damas")


@pytest.fixture
def damas_serve(tmp_path: Path) -> Iterator[str]:
    """A ``damas serve`` process on a free port, with @admin's password ``admin-pw``;
    yields its URL."""
    secret = tmp_path / "admin-pw"
    secret.write_text("admin-pw\n")
    command = [DAMAS, "serve", "--store", f"lmdb://{tmp_path}/data", "--port", "0"]
    proc = subprocess.Popen(
        [*command, "--admin-password-file", str(secret), "--max-body-size", "1000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        line = ""
        while "serving" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line, "damas serve stopped"
        yield line.split(" on ")[1].split()[0].rstrip("/")
    finally:
        proc.terminate()
        proc.wait(10)


def damas(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``damas`` command with a private config folder and no server variables."""
    env = {k: v for k, v in os.environ.items() if k not in ("DAMAS_SERVER", "DAMAS_TOKEN")}
    env["DAMAS_CONFIG_DIR"] = str(config)
    return subprocess.run(
        [DAMAS, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.slow
def test_signin_remembers_the_server(damas_serve, tmp_path):
    url, config = damas_serve, tmp_path / "cfg"
    assert damas(config, "search", "*").returncode == 3  # nobody at localhost:8090
    signin = damas(config, "-s", url, "signin", "admin", "admin-pw")
    assert signin.returncode == 0, signin.stderr
    created = damas(config, "create", '{"_id": "/a"}')
    assert created.returncode == 0, created.stderr
    assert orjson.loads(created.stdout)["author"] == "admin"
    search = damas(config, "search", "*")
    assert search.returncode == 0 and "/a" in orjson.loads(search.stdout)
    assert orjson.loads(damas(config, "verify").stdout)["_id"] == "@admin"
    # -s still wins over the remembered server.
    assert damas(config, "-s", "http://127.0.0.1:9", "verify").returncode == 3
    # Signed out: the server is still the remembered one, which now says 401.
    assert damas(config, "signout").returncode == 0
    assert damas(config, "search", "*").returncode == 41


@pytest.mark.slow
def test_damas_serve_answers_a_large_body_in_json(damas_serve, tmp_path):
    import requests

    r = requests.post(
        f"{damas_serve}/api/signIn/",
        data=orjson.dumps({"username": "admin", "password": "x" * 2000}),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413 and r.headers["Content-Type"] == "application/json"
    assert r.json() == {
        "error": "request error: the body is over the limit of 1000 bytes",
        "status": 413,
    }
