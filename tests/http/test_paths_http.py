"""The path table of tests/unit/test_paths.py over HTTP: a real waitress server with
``auth="jwt"``, an editor and an admin signed in through the Python client; every
hostile path answers 400 with the JSON error body naming it, and nothing is written."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

import damas_core
from damas_core.client import Client, connect
from damas_core.wsgi import make_app
from tests.http.conftest import add_users, serving
from tests.unit.test_paths import ATTACKS, LEGACY, LEGACY_WRITES, PATHS, refused, seed


class Served:
    def __init__(self, tracker: damas_core.Tracker, url: str) -> None:
        self.tracker = tracker
        self.url = url
        self.clients: dict[str, Client] = {}
        for name in ("eddie", "ada"):
            client = connect(url)
            client.sign_in(name, f"{name}-pw")
            self.clients[name] = client


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    tracker = damas_core.open("memory://")
    add_users(tracker)
    seed(tracker)
    with serving(make_app(tracker, auth="jwt")) as url:
        s = Served(tracker, url)
        yield s
        for client in s.clients.values():
            client.close()
    tracker.close()


@pytest.fixture(params=["eddie", "ada"])
def client(request, served) -> Client:
    return served.clients[request.param]


@pytest.mark.parametrize("bad", PATHS, ids=repr)
@pytest.mark.parametrize("attack", [a[1] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_hostile_paths_answer_400_and_write_nothing(served, client, attack, bad):
    refused(served.tracker, lambda: attack(client, bad), bad)


@pytest.mark.parametrize("write", [w[1] for w in LEGACY_WRITES], ids=[w[0] for w in LEGACY_WRITES])
def test_a_stored_non_canonical_element_is_only_read_and_deleted(served, client, write):
    refused(served.tracker, lambda: write(client), LEGACY)


def test_the_error_body_names_the_path(served):
    token = served.clients["ada"].token
    answer = requests.post(
        f"{served.url}/api/create/",
        json={"_id": "/../outside/victim.txt", "origin": "paris"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 400
    body: dict[str, Any] = answer.json()
    assert body["status"] == 400
    assert body["error"].startswith(
        "create error: '/../outside/victim.txt' is not a canonical file path: it has a '..' segment"
    )
    # the version route takes its id in the URL, percent-encoded
    answer = requests.post(
        f"{served.url}/api/version/%2Fmine",
        json={"renamed_to": "/../outside/planted.sh", "deleted": True},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 400 and "renamed_to '/../outside/planted.sh'" in answer.text
    answer = requests.post(
        f"{served.url}/api/version/{LEGACY.replace('/', '%2F')}",
        json={},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 400 and "delete it" in answer.json()["error"]
    assert served.clients["eddie"].read(LEGACY)["_id"] == LEGACY
