"""The trust table of tests/conformance/test_trust.py over HTTP: a real waitress server
with ``auth="jwt"``, users signed in through the Python client; every refused write
answers 403 with the JSON error body naming the key, and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import damas_core
from damas_core.client import Client, connect
from damas_core.errors import Forbidden
from damas_core.permissions import REQUIRED, may
from damas_core.query.ast import All
from damas_core.wsgi import make_app
from tests.conformance.test_trust import (
    GLOBAL,
    ROWS,
    attacks,
    operation_of,
    prepare_unlock,
    setup_store,
)
from tests.http.conftest import USERS, add_users, serving


class Served:
    """One tracker served for the module, one signed-in client per user, and the last
    HTTP answer each client got."""

    def __init__(self, tracker: damas_core.Tracker, url: str) -> None:
        self.tracker = tracker
        self.clients: dict[str, Client] = {}
        self.answers: dict[str, Any] = {}
        for name in USERS:
            client = connect(url)
            client.sign_in(name, f"{name}-pw")
            client.http.hooks["response"].append(
                lambda answer, *args, name=name, **kwargs: self.answers.__setitem__(name, answer)
            )
            self.clients[name] = client

    def reset(self) -> None:
        """Everything but the users and the server's own settings goes."""
        storage = self.tracker.storage
        storage.delete_many([i for i in storage.find(All()) if i[0] not in "@~"])


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    tracker = damas_core.open("memory://")
    add_users(tracker)
    with serving(make_app(tracker, auth="jwt")) as url:
        s = Served(tracker, url)
        yield s
        for client in s.clients.values():
            client.close()
    tracker.close()


def snapshot(tracker) -> list[dict[str, Any]]:
    return [e for e in tracker.storage.scan() if not e["_id"].startswith("~")]


@pytest.mark.parametrize(("column", "attack"), ROWS, ids=[f"{c}-{a}" for c, a in ROWS])
def test_non_admins_cannot_write_what_agents_obey_over_http(served, column, attack):
    system = served.tracker
    served.reset()
    setup_store(system, column, attack)
    _, call = attacks(column)[attack]
    op = operation_of(attack)
    for name in ("gus", "ula", "eddie"):
        prepare_unlock(system, attack, column, name)
        before = snapshot(system)
        with pytest.raises(Forbidden):
            call(served.clients[name])
        answer = served.answers[name]
        assert answer.status_code == 403
        assert answer.headers["Content-Type"].startswith("application/json")
        body = answer.json()
        assert body["status"] == 403 and body["error"].startswith(f"{op} error: "), body
        if may(USERS[name], op):
            assert (GLOBAL if column == GLOBAL else repr(column)) in body["error"], body
        else:
            assert f"needs class {REQUIRED[op]}" in body["error"], body
        assert snapshot(system) == before, f"{name}: the store changed"
    prepare_unlock(system, attack, column, "ada")
    before = snapshot(system)
    result = call(served.clients["ada"])
    assert result not in (None, False, [None])
    assert snapshot(system) != before
