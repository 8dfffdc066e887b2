"""The trust boundary: what the sync agents obey (volumes, their controlling keys,
``rsyncGlobalParameters``) is written by admins only, whatever the writing operation.

The table drives every writing operation × every controlling key × guest, user and
editor on every backend: each write is refused (``Forbidden`` naming the key) and the
store is unchanged (a full scan before and after), while an admin's same call succeeds.
tests/http/test_trust_http.py runs the same table over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from damas_core.errors import Forbidden
from damas_core.permissions import REQUIRED, may
from damas_core.trust import GLOBAL_PARAMETERS_ID, is_volume

GLOBAL = GLOBAL_PARAMETERS_ID
#: one user per class, the same names as the HTTP tests use
USERS = {"gus": "guest", "ula": "user", "eddie": "editor", "ada": "admin"}
KEYS = ("url", "name", "rsync_args", "rsync_env", "ssh_identity_file", "ssh_options")
COLUMNS = (*KEYS, GLOBAL)

#: what an attacker writes to make a new volume, per key (``name`` alone is an ordinary
#: key: it controls only on a volume)
NEW = {
    "url": {"url": "ssh://x@127.0.0.1:1/x/"},
    "name": {"name": "fakessh", "url": "file:///etc/"},
    "rsync_args": {"rsync_args": ["-e", "sh -c 'id > /tmp/PWNED' --"]},
    "rsync_env": {"rsync_env": {"RSYNC_RSH": "sh -c 'id > /tmp/PWNED' --"}},
    "ssh_identity_file": {"ssh_identity_file": "/root/.ssh/id_ed25519"},
    "ssh_options": {"ssh_options": ["-oProxyCommand=sh -c id"]},
}
#: the volume ``vol`` of each column, as an admin made it: a volume by that key
VOLUME = {
    "url": {"url": "file:///srv/v/"},
    "name": {"name": "paris", "url": "file:///srv/paris/"},
    "rsync_args": {"rsync_args": ["-z"]},
    "rsync_env": {"rsync_env": {"RSYNC_PARTIAL_DIR": ".p"}},
    "ssh_identity_file": {"ssh_identity_file": "/srv/keys/agent"},
    "ssh_options": {"ssh_options": ["-oBatchMode=yes"]},
}
#: the value an attacker changes that key of ``vol`` to
CHANGED = {
    "url": "file:///etc/",
    "name": "tokyo",
    "rsync_args": ["--remove-source-files"],
    "rsync_env": {"RSYNC_RSH": "sh -c id"},
    "ssh_identity_file": "/etc/shadow",
    "ssh_options": ["-oProxyCommand=id"],
}

Call = Callable[[Any], Any]


def attacks(column: str) -> dict[str, tuple[str, Call]]:
    """``{operation: (id it writes, call)}`` for one column; an operation that cannot
    reach the column's target is left out (publish ids are paths, comments get fresh ids:
    neither can write rsyncGlobalParameters; see test_global_parameters_out_of_reach)."""
    if column == GLOBAL:
        change = {"_id": GLOBAL, "syncEverywhere": True}
        return {
            "create": (GLOBAL, lambda s: s.create(dict(change))),
            "upsert_new": (GLOBAL, lambda s: s.upsert(dict(change))),
            "update": (GLOBAL, lambda s: s.update(dict(change))),
            "update_unset": (GLOBAL, lambda s: s.update({"_id": GLOBAL, "timeout": None})),
            "upsert": (GLOBAL, lambda s: s.upsert(dict(change))),
            "version": (GLOBAL, lambda s: s.version(GLOBAL, {"syncEverywhere": True})),
            "lock": (GLOBAL, lambda s: s.lock(GLOBAL)),
            "unlock": (GLOBAL, lambda s: s.unlock(GLOBAL)),
            "delete": (GLOBAL, lambda s: s.delete(GLOBAL)),
        }
    new, changed = NEW[column], CHANGED[column]
    return {
        "create": ("evil", lambda s: s.create({"_id": "evil", **new})),
        "upsert_new": ("evil", lambda s: s.upsert({"_id": "evil", **new})),
        "publish": (
            "/evil",
            lambda s: s.publish({"_id": "/evil", "comment": "c", "origin": "paris", **new}),
        ),
        "comment": (None, lambda s: s.comment({"#parent": "vol", "comment": "hi", **new})),
        "update": ("vol", lambda s: s.update({"_id": "vol", column: changed})),
        "update_unset": ("vol", lambda s: s.update({"_id": "vol", column: None})),
        "update_plain": ("/f", lambda s: s.update({"_id": "/f", **new})),
        "upsert": ("vol", lambda s: s.upsert({"_id": "vol", column: changed})),
        "upsert_plain": ("/f", lambda s: s.upsert({"_id": "/f", **new})),
        "version": ("/f", lambda s: s.version("/f", new)),
        "version_volume": (None, lambda s: s.version("vol", {"comment": "v2"})),
        "lock": ("vol", lambda s: s.lock("vol")),
        "unlock": ("vol", lambda s: s.unlock("vol")),
        "delete": ("vol", lambda s: s.delete("vol")),
    }


def operation_of(attack: str) -> str:
    return attack.split("_")[0]


def setup_store(system, column: str, attack: str) -> None:
    system.create([{"_id": f"@{n}", "class": c} for n, c in USERS.items()])
    system.create({"_id": "/f", "k": 1})
    if column == GLOBAL:
        if attack not in ("create", "upsert_new"):
            system.create({"_id": GLOBAL, "syncEverywhere": False, "timeout": 60})
    else:
        system.create({"_id": "vol", **VOLUME[column]})


def snapshot(system) -> list[dict[str, Any]]:
    return list(system.storage.scan())


def prepare_unlock(system, attack: str, column: str, name: str) -> None:
    """An unlock needs a lock held by the caller: the admin sets it before the snapshot."""
    if attack == "unlock":
        system.update({"_id": GLOBAL if column == GLOBAL else "vol", "lock": name})


def assert_refused(error: Forbidden, column: str, target: str | None, user_class: str, op: str):
    assert error.status == 403
    if not may(user_class, op):  # the class check comes first: no element was looked at
        assert f"needs class {REQUIRED[op]}" in str(error)
        return
    assert (GLOBAL if column == GLOBAL else repr(column)) in str(error), str(error)
    assert error.key is not None and error.id is not None
    if target is not None:
        assert error.id == target


ROWS = [(column, attack) for column in COLUMNS for attack in attacks(column)]


@pytest.mark.parametrize(("column", "attack"), ROWS, ids=[f"{c}-{a}" for c, a in ROWS])
def test_non_admins_cannot_write_what_agents_obey(make_tracker, column, attack):
    system = make_tracker()
    setup_store(system, column, attack)
    target, call = attacks(column)[attack]
    op = operation_of(attack)
    for name in ("gus", "ula", "eddie"):
        prepare_unlock(system, attack, column, name)
        before = snapshot(system)
        session = system.as_user(name)
        with pytest.raises(Forbidden) as refused:
            call(session)
        assert_refused(refused.value, column, target, USERS[name], op)
        assert snapshot(system) == before, f"{name}: the store changed"
    prepare_unlock(system, attack, column, "ada")
    before = snapshot(system)
    result = call(system.as_user("ada"))
    assert result not in (None, False, [None])
    assert snapshot(system) != before


def test_global_parameters_out_of_reach(tracker):
    """publish needs a path id; a comment's ``_id`` is always fresh."""
    tracker.create([{"_id": "@ula", "class": "user"}, {"_id": "/f"}])
    ula = tracker.as_user("ula")
    made = ula.comment({"_id": GLOBAL, "#parent": "/f", "comment": "hi"})
    assert made["_id"] != GLOBAL and tracker.read(GLOBAL) is None


# -- the reproductions, as they were reported --------------------------------------------


def test_a_comment_cannot_make_a_volume(tracker):
    tracker.create(
        [
            {"_id": "@ula", "class": "user"},
            {"_id": "vol_paris", "name": "paris", "url": "file:///srv/paris/"},
        ]
    )
    before = snapshot(tracker)
    with pytest.raises(Forbidden) as refused:
        tracker.as_user("ula").comment(
            {
                "#parent": "vol_paris",
                "comment": "hi",
                "name": "fakessh",
                "url": "ssh://x@127.0.0.1:1/x/",
                "rsync_env": {"RSYNC_RSH": "sh -c 'id > /tmp/PWNED' --"},
            }
        )
    assert refused.value.status == 403 and "'url'" in str(refused.value)
    assert snapshot(tracker) == before
    # an ordinary comment on a volume is fine
    made = tracker.as_user("ula").comment({"#parent": "vol_paris", "comment": "hi"})
    assert made["#parent"] == "vol_paris" and not is_volume(made)


def test_a_user_cannot_version_an_element_into_a_volume(tracker):
    tracker.create({"_id": "@ula", "class": "user"})
    ula = tracker.as_user("ula")
    before = snapshot(tracker)
    with pytest.raises(Forbidden, match="'url'"):
        ula.create({"_id": "vv", "url": "file:///etc/"})
    assert snapshot(tracker) == before
    # made by an admin, the element is a volume already: versioning it archives a copy
    tracker.create({"_id": "vv", "url": "file:///etc/"})
    before = snapshot(tracker)
    with pytest.raises(Forbidden, match="'url'"):
        ula.version("vv", {"name": "x"})
    assert snapshot(tracker) == before


def test_an_editor_cannot_name_a_url_after_a_site(tracker):
    tracker.create(
        [
            {"_id": "@eddie", "class": "editor"},
            {"_id": "vol_paris", "name": "paris", "url": "file:///srv/paris/"},
        ]
    )
    eddie = tracker.as_user("eddie")
    before = snapshot(tracker)
    with pytest.raises(Forbidden, match="'url'"):
        eddie.create({"_id": "mine", "url": "file:///home/eddie/"})
    assert snapshot(tracker) == before
    tracker.create({"_id": "mine", "url": "file:///home/eddie/"})
    before = snapshot(tracker)
    with pytest.raises(Forbidden, match="'name'"):
        eddie.update({"_id": "mine", "name": "paris"})
    assert snapshot(tracker) == before


# -- what counts as a volume -------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/",
        "FILE:///etc/",
        " file:///etc/",
        "\tSsH://x@h/p/",
        "ssh://x@h:1/p/",
        "file:/etc/",
        "file:etc",
        "\x00ssh://x@h/p/",
        "fi\tle:///etc/",
        ["http://a/", "file:///etc/"],
    ],
)
def test_volume_urls_are_recognised_generously(tracker, url):
    tracker.create({"_id": "@eddie", "class": "editor"})
    before = snapshot(tracker)
    with pytest.raises(Forbidden, match="'url'"):
        tracker.as_user("eddie").create({"_id": "evil", "url": url})
    assert snapshot(tracker) == before


def test_ordinary_urls_and_names_stay_ordinary(tracker):
    tracker.create([{"_id": "@eddie", "class": "editor"}, {"_id": "@ula", "class": "user"}])
    eddie, ula = tracker.as_user("eddie"), tracker.as_user("ula")
    assert eddie.create({"_id": "doc", "url": "https://example.com/", "name": "site"})
    assert eddie.update({"_id": "doc", "name": "other", "url": "http://x/"})["name"] == "other"
    f = ula.publish({"_id": "/a.exr", "comment": "c", "origin": "paris", "name": "shot"})
    assert ula.lock("/a.exr") and ula.unlock("/a.exr")
    assert ula.version("/a.exr", {"comment": "v2"})["comment"] == "v2"
    assert ula.comment({"#parent": "/a.exr", "comment": "nice"})["author"] == "ula"
    assert f["name"] == "shot"


@pytest.mark.parametrize("key", ["rsync_anything", "ssh_port", "ssh_known_hosts", "rsync_path"])
def test_every_rsync_and_ssh_key_controls(tracker, key):
    tracker.create([{"_id": "@eddie", "class": "editor"}, {"_id": "/f"}])
    before = snapshot(tracker)
    with pytest.raises(Forbidden, match=repr(key)):
        tracker.as_user("eddie").update({"_id": "/f", key: "x"})
    assert snapshot(tracker) == before


def test_a_refused_element_refuses_the_whole_call(tracker):
    tracker.create({"_id": "@eddie", "class": "editor"})
    before = snapshot(tracker)
    with pytest.raises(Forbidden, match="'url'"):
        tracker.as_user("eddie").create([{"_id": "/ok"}, {"_id": "evil", "url": "file:///"}])
    assert snapshot(tracker) == before


def test_a_self_service_write_cannot_touch_the_account_class(tracker):
    tracker.create({"_id": "@ula", "class": "user"})
    ula = tracker.as_user("ula")
    assert ula.update({"_id": "@ula", "email": "u@x"})["email"] == "u@x"
    before = snapshot(tracker)
    for call in (
        lambda: ula.lock("@ula"),
        lambda: ula.version("@ula", {"email": "v@x"}),
        lambda: ula.update({"_id": "@ula", "rsync_env": {"A": "b"}}),
    ):
        with pytest.raises(Forbidden):
            call()
    assert snapshot(tracker) == before
