"""An open stream loses its power when its account does.

``@adm2`` (an admin) follows the feed with elements; then its account changes, in the
same transaction as a write to a volume's ``rsync_env`` (an admin-only key), and a
marker element is written. Table: every account change × every way of following the
feed (Server-Sent Events and long-polls over a real server, the embedded long-poll of
a session made from a token). What may be delivered after the change is decided by
the account as it stands then: a demoted account goes on without ``rsync_env``; a
disabled, deleted, re-passworded or signed-out one gets nothing more, and its stream
ends."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests
from damas_core.backends.base import Patch

from damas_core.errors import Unauthorized
from damas_core.passwords import hash_password
from damas_core.tokens import Tokens
from damas_core.wsgi import make_app
from tests.http.test_changes import events

_HASH = hash_password("adm2-pw")
_OTHER_HASH = hash_password("another-pw")


def demote(to: str) -> Callable[[Any, str], None]:
    def change(tracker: Any, token: str) -> None:
        tracker.storage.patch_many([Patch("@adm2", set={"class": to})])

    return change


def disable(tracker: Any, token: str) -> None:
    tracker.storage.patch_many([Patch("@adm2", set={"disabled": True})])


def delete(tracker: Any, token: str) -> None:
    tracker.storage.delete_many(["@adm2"])


def change_password(tracker: Any, token: str) -> None:
    tracker.storage.patch_many([Patch("@adm2", set={"password": _OTHER_HASH})])


def revoke(tracker: Any, token: str) -> None:
    # another process's view of the store: its own cache
    Tokens(tracker).revoke(token)


#: (name, change, whether the stream goes on)
CHANGES = [
    ("admin to guest", demote("guest"), True),
    ("admin to user", demote("user"), True),
    ("disabled", disable, False),
    ("deleted", delete, False),
    ("password changed", change_password, False),
    ("token revoked", revoke, False),
]
ROWS = [pytest.param(change, goes_on, id=name) for name, change, goes_on in CHANGES]


@pytest.fixture
def setup(memory_tracker):
    tracker = memory_tracker
    tracker.storage.insert_many([{"_id": "@adm2", "class": "admin", "password": _HASH}])
    tracker.create({"_id": "/v", "name": "paris", "rsync_env": {"TOKEN": "before"}})
    return tracker


def act(tracker: Any, change: Callable[[Any, str], None], token: str) -> None:
    """The account change and a volume write in one transaction, then a marker."""
    with tracker.storage.transaction():
        change(tracker, token)
        tracker.storage.patch_many([Patch("/v", set={"rsync_env": {"TOKEN": "after"}})])
    tracker.create({"_id": "/after"})


def wait_for(condition: Callable[[], bool]) -> None:
    event = threading.Event()
    while not condition():
        event.wait(0.01)


def check_delivered(elements: list[dict], goes_on: bool) -> None:
    assert all("rsync_env" not in e for e in elements)  # never, whatever the change
    if goes_on:
        assert {"/v", "/after"} <= {e["_id"] for e in elements}
    else:
        assert elements == []


@pytest.fixture
def served(setup, serve):
    app = make_app(setup, auth="jwt", stream_check=0.2)
    url = serve(app)
    answer = requests.post(
        f"{url}/api/signIn/", data={"username": "adm2", "password": "adm2-pw"}, timeout=10
    )
    return setup, app, url, answer.json()["token"]


@pytest.mark.parametrize(("change", "goes_on"), ROWS)
def test_event_stream(served, change, goes_on):
    tracker, app, url, token = served
    headers = {"Authorization": f"Bearer {token}"}
    with requests.get(
        f"{url}/api/events/?elements=1", headers=headers, stream=True, timeout=20
    ) as r:
        stream = events(r)
        tracker.update({"_id": "/v", "n": 1})
        before = next(stream)
        assert before["data"]["element"]["rsync_env"] == {"TOKEN": "before"}  # an admin's
        act(tracker, change, token)
        delivered = []
        for event in stream:  # ends when the server closes the stream
            delivered.append(event["data"].get("element", {"_id": event["data"]["_id"]}))
            if event["data"]["_id"] == "/after":
                break
    check_delivered(delivered, goes_on)
    if not goes_on:
        wait_for(lambda: app.streams.open == 0)  # closed by the server, its slot given back


@pytest.mark.parametrize(("change", "goes_on"), ROWS)
def test_long_poll(served, change, goes_on):
    tracker, app, url, token = served
    headers = {"Authorization": f"Bearer {token}"}
    position = tracker.storage.last_seq()
    answers: list[Any] = []
    poll = threading.Thread(
        target=lambda: answers.append(
            requests.get(
                f"{url}/api/changes/?since={position}&elements=1&wait=20",
                headers=headers,
                timeout=30,
            )
        )
    )
    poll.start()
    wait_for(lambda: app.streams.open == 1)  # it waits
    act(tracker, change, token)
    poll.join()
    (answer,) = answers
    assert answer.status_code == 200
    delivered = [c["element"] for c in answer.json()["changes"] if "element" in c]
    if goes_on:
        assert all("rsync_env" not in e for e in delivered) and "/v" in {
            e["_id"] for e in delivered
        }
    else:
        assert answer.json() == {"last_seq": position, "changes": []}
    wait_for(lambda: app.streams.open == 0)


@pytest.mark.parametrize(("change", "goes_on"), ROWS)
def test_embedded_long_poll(setup, change, goes_on):
    tracker = setup
    tokens = Tokens(tracker)
    token, _ = tokens.issue("adm2")
    session = tokens.session(token)
    position = tracker.storage.last_seq()
    outcome: list[Any] = []

    def follow() -> None:
        try:
            outcome.append(session.changes(position, elements=True, wait=20))
        except Unauthorized as e:
            outcome.append(e)

    thread = threading.Thread(target=follow)
    thread.start()
    act(tracker, change, token)
    thread.join()
    (result,) = outcome
    if goes_on:
        delivered = [c["element"] for c in result["changes"] if "element" in c]
        assert all("rsync_env" not in e for e in delivered) and "/v" in {
            e["_id"] for e in delivered
        }
    else:
        assert isinstance(result, Unauthorized)


def test_an_embedded_session_follows_its_account(setup):
    """``as_user`` sessions (no token) are renewed from the account itself."""
    tracker = setup
    adm2 = tracker.as_user("adm2")
    assert adm2.changes(elements=True)["changes"][-1]["element"]["rsync_env"]
    tracker.update({"_id": "@adm2", "class": "guest"})
    assert all(
        "rsync_env" not in c.get("element", {}) for c in adm2.changes(elements=True)["changes"]
    )
    tracker.update({"_id": "@adm2", "disabled": True})
    with pytest.raises(Unauthorized):
        adm2.changes()
