"""No query is an oracle for what reads hide: ``password`` (from everyone) and
``rsync_env`` (from non-admins) cannot be searched or sorted on, reads leave them
out, and the tracker's own settings element never shows in any answer. Every class,
every search entry point, every backend."""

from __future__ import annotations

import pytest

from damas_core.errors import BadRequest
from damas_core.operations.common import check_queryable
from damas_core.passwords import hash_password
from damas_core.query import parse

CLASSES = ("guest", "user", "editor", "admin")

#: (search-language query, the key the refusal names)
TEXT_QUERIES = [
    ("_id:@admin password:/^\\$argon2id/", "password"),
    ("password:*", "password"),
    ("password.x:1", "password"),
    ("#password:x", "#password"),
    ("password<z", "password"),
    ("-password:*", "password"),
    ("NOT password:x", "password"),
    ("(kind:volume OR password:/^a/)", "password"),
    ("rsync_env:*", "rsync_env"),
    ("rsync_env.TOKEN:/^s/", "rsync_env"),
    ("name:paris rsync_env.TOKEN>r", "rsync_env"),
    ("#rsync_env:x", "#rsync_env"),
]

#: (MongoDB-style query, the key the refusal names)
MONGO_QUERIES = [
    ({"password": {"$regex": "^\\$argon2id"}}, "password"),
    ({"password": "REGEX_^\\$argon"}, "password"),
    ({"password": {"$exists": True}}, "password"),
    ({"password": {"$gt": ""}}, "password"),
    ({"password.x": 1}, "password"),
    ({"$or": [{"kind": "volume"}, {"password": "x"}]}, "password"),
    ({"$nor": [{"password": "x"}]}, "password"),
    ({"kind": {"$exists": True}, "password": {"$in": ["a", "b"]}}, "password"),
    ({"rsync_env.TOKEN": {"$regex": "^s"}}, "rsync_env"),
    ({"$and": [{"rsync_env": {"$exists": True}}]}, "rsync_env"),
]

#: (sort, the key the refusal names), in every accepted form
SORTS = [
    ("password", "password"),
    ("-password", "password"),
    ({"password": 1}, "password"),
    ([["password", -1]], "password"),
    (["password", -1], "password"),
    (["name", "-password.x"], "password"),
    ("rsync_env.TOKEN", "rsync_env"),
    ({"name": 1, "rsync_env": -1}, "rsync_env"),
]


def refused(key: str, user_class: str) -> bool:
    """Whether a query on ``key`` is refused for ``user_class``."""
    return key.lstrip("#") == "password" or user_class != "admin"


@pytest.fixture(scope="module")
def argon2_hash() -> str:
    return hash_password("pw")  # once: argon2 is slow on purpose


@pytest.fixture
def store(tracker, argon2_hash):
    """Users of every class with argon2 hashes, and a volume with a secret rsync_env."""
    tracker.storage.insert_many(
        [{"_id": f"@{c}", "class": c, "password": argon2_hash} for c in CLASSES]
    )
    tracker.create(
        {"_id": "/v", "kind": "volume", "name": "paris", "rsync_env": {"TOKEN": "s3cret"}}
    )
    tracker.set_setting("probe", {"secret": "xyz"})  # the settings element exists
    return tracker


@pytest.mark.parametrize("user_class", CLASSES)
@pytest.mark.parametrize(("query", "key"), TEXT_QUERIES)
def test_text_queries_on_private_keys_are_refused(store, user_class, query, key):
    session = store.as_user(user_class)
    calls = [
        lambda: session.search(query),
        lambda: session.search_elements(query),
        lambda: session.search_one(query),
        lambda: session.search(parse(query)),  # an AST built by the caller
    ]
    for call in calls:
        if refused(key, user_class):
            with pytest.raises(BadRequest, match=f"{key!r} cannot be searched or sorted on"):
                call()
        else:
            call()  # an admin may search rsync_env


@pytest.mark.parametrize("user_class", CLASSES)
@pytest.mark.parametrize(("query", "key"), MONGO_QUERIES)
def test_mongo_queries_on_private_keys_are_refused(store, user_class, query, key):
    session = store.as_user(user_class)
    if refused(key, user_class):
        with pytest.raises(BadRequest, match=f"search_mongo error: {key!r} cannot be searched"):
            session.search_mongo(query)
    else:
        assert session.search_mongo(query)["count"] in (0, 1)


@pytest.mark.parametrize("user_class", CLASSES)
@pytest.mark.parametrize(("sort", "key"), SORTS)
def test_sorts_on_private_keys_are_refused(store, user_class, sort, key):
    session = store.as_user(user_class)
    calls = [
        lambda: session.search("*", sort=sort),
        lambda: session.search_elements("*", sort=sort),
        lambda: session.search_mongo({}, sort=sort),
    ]
    for call in calls:
        if refused(key, user_class):
            with pytest.raises(BadRequest, match=f"{key!r} cannot be searched or sorted on"):
                call()
        else:
            call()


def test_the_refusal_says_why(store):
    with pytest.raises(BadRequest) as e:
        store.as_user("guest").search("_id:@admin password:/^a/")
    assert str(e.value) == (
        "search error: 'password' cannot be searched or sorted on: reads never return it"
    )
    assert e.value.key == "password"
    with pytest.raises(BadRequest, match="only admins read it"):
        store.as_user("editor").search("rsync_env:*")


def test_keys_that_only_look_alike_are_searchable(store):
    store.create({"_id": "/x", "old": {"password": "p"}, "passwords": 2, "rsync": 1})
    user = store.as_user("user")
    assert user.search("old.password:p") == ["/x"]  # a nested key is not the account's
    assert user.search("passwords:2 rsync:1") == ["/x"]
    assert "/x" in user.search("*", sort="passwords")


def test_change_feed_filters_are_checked_by_the_same_rule(store):
    user = store.as_user("user")
    check_queryable(user, parse("name:paris"), (("time", -1),), "changes")
    with pytest.raises(BadRequest, match="changes error: 'rsync_env'"):
        check_queryable(user, parse("name:paris"), (("rsync_env.TOKEN", 1),), "changes")
    check_queryable(store, parse("rsync_env:*"), (), "changes")  # admins read it


@pytest.mark.parametrize("user_class", CLASSES)
def test_reads_leave_rsync_env_to_admins(store, user_class):
    session = store.as_user(user_class)
    admin = user_class == "admin"
    for seen in (
        session.read("/v"),
        session.read(["/v"])[0],
        session.search_elements("name:paris")[0],
        session.search_one("name:paris"),
        session.graph("/v")[0],
    ):
        assert "password" not in seen
        assert ("rsync_env" in seen) is admin
    assert "password" not in session.read("@user")
    assert "password" not in session.user


def test_graph_leaves_rsync_env_to_admins(store):
    store.create({"_id": "/l", "src_id": "/src", "tgt_id": "/v"})
    store.create({"_id": "/src", "rsync_env": {"TOKEN": "t2"}})
    for user_class in CLASSES:
        nodes = store.as_user(user_class).graph("/v")
        assert {n["_id"] for n in nodes} == {"/v", "/src", "/l"}
        assert any("rsync_env" in n for n in nodes) is (user_class == "admin")


def test_the_settings_element_never_shows(store):
    user = store.as_user("user")
    everything = user.search("*")
    assert "~damas" not in everything
    assert user.search_mongo({})["count"] == len(everything)
    assert user.search_mongo({"probe": {"$exists": True}}) == {"count": 0, "ids": []}
    assert user.search("probe:*") == []
    assert user.search_one("probe:*") is None
    assert user.read("~damas") is None
    # paging over everything walks the visible elements exactly once
    paged = [i for skip in range(len(everything)) for i in user.search("*", skip=skip, limit=1)]
    assert paged == everything
    assert user.search("*", sort="-_id") == everything[::-1]
