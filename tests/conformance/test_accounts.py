"""Users, passwords and permissions (needs the embedded Tracker: ``system``)."""

from __future__ import annotations

import hashlib

import pytest

from damas_core.errors import BadRequest, Forbidden, NotFound
from damas_core.permissions import REQUIRED, RESTRICTED_KEYS


@pytest.fixture
def people(system):
    system.create(
        [
            {"_id": "@guest1", "class": "guest", "password": "g"},
            {"_id": "@user1", "class": "user", "password": "u"},
            {"_id": "@editor1", "class": "editor", "password": "e"},
            {"_id": "@admin1", "class": "admin", "password": "a"},
            {"_id": "@off", "class": "admin", "password": "o", "disabled": True},
        ]
    )
    return system


def test_passwords_are_hashed_and_never_read(people):
    raw = people.storage.get("@user1")["password"]
    assert raw.startswith("$argon2id$") and raw != "u"
    assert "password" not in people.read("@user1")
    assert all("password" not in e for e in people.graph("@user1"))
    assert "password" not in people.search_one("_id:@user1")
    assert all("password" not in e for e in people.search_elements("class:*"))
    with pytest.raises(BadRequest, match="'password' cannot be searched"):
        people.search("password:*")  # not even to learn who has one
    assert "password" not in people.update({"_id": "@user1", "email": "u@x"})
    assert "password" not in people.as_user("user1").user


def test_check_password(people):
    assert people.check_password("user1", "u") and people.check_password("@user1", "u")
    assert not people.check_password("user1", "wrong")
    assert not people.check_password("nobody", "u")
    assert not people.check_password("off", "o")


def test_legacy_hashes_verify_and_upgrade(system):
    system.storage.insert_many(
        [
            {"_id": "@old5", "class": "user", "password": hashlib.md5(b"pw").hexdigest()},
            {"_id": "@old1", "class": "user", "password": hashlib.sha1(b"pw").hexdigest()},
        ]
    )
    for name in ("old5", "old1"):
        fp = system.password_fingerprint(name)
        assert not system.check_password(name, "bad")
        assert system.check_password(name, "pw")
        assert system.storage.get(f"@{name}")["password"].startswith("$argon2id$")
        assert system.password_fingerprint(name) != fp
        assert system.check_password(name, "pw")


def test_as_user_unknown_and_disabled(people):
    with pytest.raises(NotFound):
        people.as_user("nobody")
    with pytest.raises(Forbidden):
        people.as_user("off")


def operation_calls():
    """One call per operation, as a user would make it."""
    return {
        "read": lambda s: s.read("/f"),
        "graph": lambda s: s.graph("/f"),
        "search": lambda s: s.search("*"),
        "search_elements": lambda s: s.search_elements("*"),
        "search_one": lambda s: s.search_one("*"),
        "search_mongo": lambda s: s.search_mongo({}),
        "create": lambda s: s.create({"_id": "/new"}),
        "publish": lambda s: s.publish({"_id": "/pub", "comment": "c", "origin": "o"}),
        "comment": lambda s: s.comment({"#parent": "/f", "comment": "c"}),
        "lock": lambda s: s.lock("/f"),
        "unlock": lambda s: s.unlock("/f"),
        "version": lambda s: s.version("/f", {"k": 1}),
        "update": lambda s: s.update({"_id": "/f", "k": 2}),
        "upsert": lambda s: s.upsert({"_id": "/f", "k": 3}),
        "delete": lambda s: s.delete("/f"),
    }


@pytest.mark.parametrize("user_class", ["guest", "user", "editor", "admin"])
@pytest.mark.parametrize("op", sorted(operation_calls()))
def test_permission_table(people, user_class, op):
    people.create({"_id": "/f"})
    session = people.as_user(f"{user_class}1")
    allowed = ["guest", "user", "editor", "admin"].index(user_class) >= [
        "guest",
        "user",
        "editor",
        "admin",
    ].index(REQUIRED[op])
    before = [people.storage.get(i) for i in ("/f", "/new", "/pub")]
    if allowed:
        operation_calls()[op](session)
    else:
        with pytest.raises(Forbidden):
            operation_calls()[op](session)
        assert [people.storage.get(i) for i in ("/f", "/new", "/pub")] == before


def test_author_and_lock_owner_are_the_user(people):
    alice = people.as_user("user1")
    f = alice.publish({"_id": "/a", "comment": "c", "origin": "o"})
    assert f["author"] == "user1"
    assert alice.lock("/a") and people.read("/a")["lock"] == "user1"
    editor = people.as_user("editor1")
    assert editor.lock("/a") is False
    assert editor.unlock("/a") is False
    with pytest.raises(Forbidden):
        editor.unlock("/a", force=True)
    assert people.as_user("admin1").unlock("/a", force=True) is True


@pytest.mark.parametrize("key", sorted(RESTRICTED_KEYS))
def test_non_admins_cannot_write_restricted_keys(people, key):
    people.create({"_id": "/f"})
    editor = people.as_user("editor1")
    for call in (
        lambda: editor.create({"_id": "/g", key: "x"}),
        lambda: editor.update({"_id": "/f", key: "x"}),
        lambda: editor.upsert({"_id": "/f", key: "x"}),
        lambda: editor.upsert({"_id": "/h", key: "x"}),
        lambda: editor.version("/f", {key: "x"}),
        lambda: editor.publish({"_id": "/p", "comment": "c", "origin": "o", key: "x"}),
    ):
        with pytest.raises(Forbidden, match=key):
            call()
    assert people.read(["/g", "/h", "/p"]) == [None, None, None]
    assert key not in people.read("/f") or key in ("author", "time")
    assert people.search("#parent:/f") == []


def test_user_accounts_are_admin_only_but_self_service_works(people):
    editor = people.as_user("editor1")
    with pytest.raises(Forbidden):
        editor.update({"_id": "@user1", "password": "hacked"})
    with pytest.raises(Forbidden):
        editor.create({"_id": "@evil", "password": "x"})
    with pytest.raises(Forbidden):
        editor.delete("@user1")
    assert people.check_password("user1", "u")
    guest = people.as_user("guest1")
    assert "password" not in guest.update({"_id": "@guest1", "password": "new"})
    assert people.check_password("guest1", "new")
    with pytest.raises(Forbidden):
        guest.update({"_id": "@guest1", "class": "admin"})
    assert (
        people.as_user("admin1").update({"_id": "@user1", "class": "editor"})["class"] == "editor"
    )


def test_bad_class_value(people):
    with pytest.raises(BadRequest):
        people.create({"_id": "@x", "class": "root"})


def test_author_mode(make_tracker):
    t = make_tracker(author_mode=True)
    t.create([{"_id": "@ed", "class": "editor"}, {"_id": "@ed2", "class": "editor"}])
    ed, ed2 = t.as_user("ed"), t.as_user("ed2")
    ed.create({"_id": "/mine"})
    t.create({"_id": "/shared", "author": ["ed", "ed2"]})
    assert ed.update({"_id": "/mine", "k": 1})["k"] == 1
    with pytest.raises(Forbidden):
        ed2.update({"_id": "/mine", "k": 2})
    with pytest.raises(Forbidden):
        ed2.delete("/mine")
    assert ed2.update({"_id": "/shared", "k": 3})["k"] == 3
    assert t.read("/mine")["k"] == 1


def test_events(system):
    seen = []
    system.on("pre-create", lambda s, items: [dict(i, stamped=True) for i in items])
    system.on("create", lambda s, results: seen.append([r["_id"] for r in results if r]))

    def veto(session, ids):
        if "/keep" in ids:
            raise Forbidden("kept")

    system.on("pre-delete", veto)
    system.create({"_id": "/keep"})
    assert system.read("/keep")["stamped"] is True and seen == [["/keep"]]
    with pytest.raises(Forbidden):
        system.delete("/keep")
    assert system.read("/keep") is not None
    with pytest.raises(BadRequest):
        system.on("nope", print)


def test_settings_are_atomic(system):
    assert system.get_setting("n", 0) == 0
    for _ in range(5):
        system.update_setting("n", lambda v: (v or 0) + 1)
    assert system.get_setting("n") == 5
