"""Several processes on one store (LMDB and SQLite): what one `damas serve` decides
about sign-in, the other honours.

- a sign-out on A is refused on B; a demotion on A is seen on B;
- the sign-in limit is one budget: wrong passwords on A, then on B;
- two first starts racing print exactly one admin password, and it is the right one;
- revocations and settings written by processes at once lose nothing
  (compare-and-set).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import requests

import damas_core
from damas_core.tokens import Tokens

DAMAS = os.path.join(os.path.dirname(sys.executable), "damas")
BACKENDS = ["lmdb", "sqlite"]
_SERVING = re.compile(r"serving .* on (http://[\d.]+:\d+)/")


def store_url(kind: str, folder) -> str:
    return f"lmdb://{folder}/store" if kind == "lmdb" else f"sqlite:///{folder}/store.db"


def start(url: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [DAMAS, "serve", "--store", url, "--port", "0", "--threads", "2", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def address_of(process: subprocess.Popen) -> str:
    """The base URL a server printed when it started listening."""
    for line in process.stderr:
        if found := _SERVING.search(line):
            return found.group(1)
    raise AssertionError(f"the server stopped: {process.wait()}")


def stop(process: subprocess.Popen) -> str:
    process.terminate()
    out, _ = process.communicate(timeout=20)
    return out


@pytest.fixture(scope="module", params=BACKENDS)
def pair(request, tmp_path_factory) -> Iterator[tuple[str, str, str]]:
    """Two servers on one store: ``(store URL, A's URL, B's URL)``."""
    folder = tmp_path_factory.mktemp(request.param)
    secret = folder / "admin-password"
    secret.write_text("admin-pw")
    url = store_url(request.param, folder)
    first = start(url, "--admin-password-file", str(secret))
    a = address_of(first)
    second = start(url)
    b = address_of(second)
    yield url, a, b
    stop(first), stop(second)


def sign_in(base: str, name: str, password: str) -> requests.Response:
    return requests.post(
        f"{base}/api/signIn/", data={"username": name, "password": password}, timeout=30
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_both_answer_health_checks(pair):
    _, a, b = pair
    for base in (a, b):
        assert requests.get(f"{base}/healthz", timeout=10).json() == {"status": "ok"}


def test_a_sign_out_on_one_is_honoured_by_the_other(pair):
    _, a, b = pair
    token = sign_in(a, "admin", "admin-pw").json()["token"]
    assert requests.get(f"{b}/api/verify/", headers=bearer(token), timeout=10).status_code == 200
    out = requests.post(f"{a}/api/signOut/", headers=bearer(token), timeout=10)
    assert out.status_code == 200
    assert requests.get(f"{b}/api/verify/", headers=bearer(token), timeout=10).status_code == 401


def test_a_demotion_on_one_is_seen_by_the_other(pair):
    _, a, b = pair
    admin = bearer(sign_in(a, "admin", "admin-pw").json()["token"])
    user = {"_id": "@ops", "class": "admin", "password": "ops-pw"}
    assert requests.post(f"{a}/api/create/", json=user, headers=admin, timeout=10).ok
    volume = {"_id": "/vol", "name": "paris", "rsync_env": {"TOKEN": "s3cret"}}
    assert requests.post(f"{a}/api/create/", json=volume, headers=admin, timeout=10).ok
    ops = bearer(sign_in(b, "ops", "ops-pw").json()["token"])
    assert requests.get(f"{b}/api/read/%2Fvol", headers=ops, timeout=10).json()["rsync_env"]
    demote = {"_id": "@ops", "class": "guest"}
    assert requests.put(f"{a}/api/update/", json=demote, headers=admin, timeout=10).ok
    assert "rsync_env" not in requests.get(f"{b}/api/read/%2Fvol", headers=ops, timeout=10).json()
    write = requests.put(f"{b}/api/update/", json={"_id": "/vol", "n": 1}, headers=ops, timeout=10)
    assert write.status_code == 403


def test_the_sign_in_limit_is_one_budget_across_servers(pair):
    _, a, b = pair
    answers = [sign_in(a, "nobody", "wrong").status_code for _ in range(6)]
    assert answers == [401] * 5 + [429]
    assert sign_in(b, "nobody", "wrong").status_code == 429
    assert sign_in(b, "nobody", "wrong").headers["Retry-After"]


@pytest.mark.parametrize("kind", BACKENDS)
def test_two_first_starts_print_one_admin_password(kind, tmp_path):
    for trial in range(2):
        url = store_url(kind, tmp_path / str(trial))
        racing = [start(url), start(url)]
        bases = [address_of(p) for p in racing]
        outputs = [stop(p) for p in racing]
        printed = [m for out in outputs for m in re.findall(r"password: (\S+)", out)]
        assert len(printed) == 1, outputs
        with damas_core.open(url) as tracker:
            assert tracker.check_password("admin", printed[0])
        del bases


_WORKER = textwrap.dedent(
    """
    import sys, damas_core
    from damas_core.tokens import Tokens
    url, start_file = sys.argv[1], sys.argv[2]
    tracker = damas_core.open(url)
    tokens = Tokens(tracker)
    mine = sys.stdin.read().split()
    open(start_file, "a").close()
    for token in mine:
        tokens.revoke(token)
        tracker.update_setting("counter", lambda old: (old or 0) + 1)
    tracker.close()
    """
)


@pytest.mark.parametrize("kind", BACKENDS)
def test_revocations_and_settings_written_at_once_lose_nothing(kind, tmp_path):
    url = store_url(kind, tmp_path)
    with damas_core.open(url) as tracker:
        tracker.create({"_id": "@alice", "class": "user", "password": "pw"})
        tokens = Tokens(tracker)
        issued = [tokens.issue("alice")[0] for _ in range(40)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, url, str(tmp_path / f"started{i}")],
            stdin=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for i, worker in enumerate(workers):
        worker.stdin.write(" ".join(issued[i::2]))
        worker.stdin.close()
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    with damas_core.open(url) as tracker:
        assert tracker.get_setting("counter") == 40
        fresh = Tokens(tracker)
        for token in issued:
            with pytest.raises(damas_core.errors.Unauthorized, match="revoked"):
                fresh.verify(token)
