"""Over HTTP, signed in as each class: queries and sorts on private keys are 400s, an
empty id list is a 400 on every id route, search_mongo bodies have one shape, a
refused lock's 409 names the holders (and so do the client and the CLI), ``{#}`` ids
are measured before they are filled in, and upsert gives each ``"null"`` its own id."""

from __future__ import annotations

import re
from urllib.parse import quote

import orjson
import pytest
import requests
from click.testing import CliRunner

from damas_core.cli import main
from damas_core.errors import Conflict
from tests.http.conftest import USERS

NAMES = list(USERS)  # gus (guest), ula (user), eddie (editor), ada (admin)


@pytest.fixture
def http(jwt_server):
    """``http(name)`` → a requests session signed in as that user; and the base URL."""
    tracker, url = jwt_server
    tracker.create({"_id": "/v", "name": "paris", "rsync_env": {"TOKEN": "s3cret"}})
    sessions = []

    def signed(name: str) -> requests.Session:
        s = requests.Session()
        answer = s.post(f"{url}/api/signIn/", json={"username": name, "password": f"{name}-pw"})
        s.headers["Authorization"] = f"Bearer {answer.json()['token']}"
        sessions.append(s)
        return s

    yield signed, url, tracker
    for s in sessions:
        s.close()


LEAKS = [
    ("search", "_id:@ada password:/^\\$argon2id/", None, "password"),
    ("search", "password.x:*", None, "password"),
    ("search_one", "#password:*", None, "#password"),
    ("search_elements", "*", "password", "password"),
    ("search", "*", '["-password"]', "password"),
    ("search", "*", '{"rsync_env.TOKEN": 1}', "rsync_env"),
    ("search", "rsync_env.TOKEN:/^s/", None, "rsync_env"),
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("route", "query", "sort", "key"), LEAKS)
def test_private_keys_cannot_be_searched_over_http(http, name, route, query, sort, key):
    signed, url, _ = http
    params = {"sort": sort} if sort else {}
    answer = signed(name).get(f"{url}/api/{route}/{quote(query, safe='')}", params=params)
    if key == "rsync_env" and USERS[name] == "admin":
        assert answer.status_code == 200
        return
    assert answer.status_code == 400
    assert f"{key!r} cannot be searched or sorted on" in answer.json()["error"]


@pytest.mark.parametrize("name", NAMES)
def test_private_keys_cannot_be_searched_through_search_mongo(http, name):
    signed, url, _ = http
    s = signed(name)
    for body in (
        {"query": {"password": {"$regex": "^\\$argon2id"}}},
        {"query": {"$or": [{"name": "x"}, {"password": "REGEX_^a"}]}},
        {"query": {}, "sort": {"password": -1}},
        {"queryobj": orjson.dumps({"query": {"password": {"$exists": True}}}).decode()},
    ):
        answer = s.post(f"{url}/api/search_mongo/", json=body)
        assert answer.status_code == 400, body
        assert answer.json()["error"].startswith("search_mongo error: 'password' cannot be")
    env = s.post(f"{url}/api/search_mongo/", json={"query": {"rsync_env": {"$exists": True}}})
    assert env.status_code == (200 if USERS[name] == "admin" else 400)
    read = s.get(f"{url}/api/read/%2Fv").json()
    assert ("rsync_env" in read) is (USERS[name] == "admin")


EMPTY = [
    ("GET", "/api/read/", None),
    ("GET", "/api/graph/0/", None),
    ("POST", "/api/read/", []),
    ("POST", "/api/graph/0/", []),
    ("POST", "/api/graph/0", []),
    ("DELETE", "/api/delete/", []),
    ("PUT", "/api/lock/", []),
    ("PUT", "/api/unlock/", []),
]


@pytest.mark.parametrize(("method", "path", "body"), EMPTY)
def test_an_empty_id_list_is_a_bad_request(http, method, path, body):
    signed, url, _ = http
    kwargs = {} if body is None else {"json": body}
    answer = signed("ada").request(method, url + path, **kwargs)
    assert answer.status_code == 400
    assert answer.json()["error"].endswith("error: no ids given (an empty list)")


def test_the_client_answers_an_empty_list_as_the_library_does(signed_in):
    client = signed_in("ada")
    assert client.read([]) == [] and client.delete([]) == [] and client.graph([]) == []
    assert client.lock([]) is True and client.unlock([]) is True


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"qeury": {"name": "paris"}}, "unknown key 'qeury' in the body"),
        ({"name": "paris"}, "unknown key 'name' in the body"),
        ({"query": {}, "limt": 1, "skp": 2}, "unknown keys 'limt', 'skp' in the body"),
        ({}, "the body needs a query"),
        ({"sort": "name"}, "the body needs a query"),
        ({"queryobj": '{"qeury": {}}'}, "unknown key 'qeury' in the body"),
        ({"queryobj": '{"query": {}}', "limit": 1}, "unknown key 'queryobj' in the body"),
        ({"queryobj": {"query": {}}}, "queryobj must be a JSON string"),
        ({"queryobj": "[1]"}, "the body is an object"),
        ([{"query": {}}], "the body is an object"),
    ],
)
def test_search_mongo_bodies_have_one_shape(http, body, error):
    signed, url, _ = http
    answer = signed("ula").post(f"{url}/api/search_mongo/", json=body)
    assert answer.status_code == 400
    assert error in answer.json()["error"]


def test_search_mongo_accepts_both_body_forms(http):
    signed, url, _ = http
    s = signed("ula")
    full = {"query": {"name": "paris"}, "sort": "_id", "limit": 5, "skip": 0}
    assert s.post(f"{url}/api/search_mongo/", json=full).json() == {"count": 1, "ids": ["/v"]}
    form = {"queryobj": orjson.dumps(full).decode()}
    assert s.post(f"{url}/api/search_mongo/", json=form).json() == {"count": 1, "ids": ["/v"]}
    # damas-core also reads it from an HTML form post (URL-encoded)
    assert s.post(f"{url}/api/search_mongo/", data=form).json() == {"count": 1, "ids": ["/v"]}
    extra = s.post(f"{url}/api/search_mongo/", data={**form, "limit": "1"})
    assert extra.status_code == 400 and "holds queryobj alone, not 'limit'" in extra.text
    assert s.post(f"{url}/api/search_mongo/", json={"query": {}}).json()["count"] == 5


def test_a_refused_lock_names_the_holders(http, signed_in):
    signed, url, tracker = http
    tracker.create([{"_id": "/a"}, {"_id": "/b"}])
    assert signed("ula").put(f"{url}/api/lock/", json="/a").json() is True
    answer = signed("eddie").put(f"{url}/api/lock/", json=["/b", "/a"])
    assert answer.status_code == 409
    assert answer.json() == {
        "error": "lock error: '/a' is locked by @ula",
        "status": 409,
        "locked": {"/a": "@ula"},
    }
    assert "lock" not in tracker.read("/b")
    unlock = signed("eddie").put(f"{url}/api/unlock/", json="/a")
    assert unlock.status_code == 409 and unlock.json()["locked"] == {"/a": "@ula"}
    client = signed_in("eddie")
    assert client.lock(["/b", "/a"]) is False
    with pytest.raises(Conflict) as e:
        client.lock(["/b", "/a"], strict=True)
    assert e.value.locked == {"/a": "@ula"} and "locked by @ula" in str(e.value)


def test_damas_lock_says_who_holds_it(http, tmp_path, monkeypatch):
    signed, url, tracker = http
    tracker.create({"_id": "/a"})
    signed("ula").put(f"{url}/api/lock/", json="/a")
    monkeypatch.setenv("DAMAS_CONFIG_DIR", str(tmp_path / "cfg"))
    runner = CliRunner()
    assert runner.invoke(main, ["-s", url, "signin", "eddie", "eddie-pw"]).exit_code == 0
    result = runner.invoke(main, ["-s", url, "lock", "/a"])
    assert result.exit_code == 49
    assert "damas: lock error: '/a' is locked by @ula" in result.output
    assert "already exist" not in result.output


def test_an_id_of_many_placeholders_is_a_quick_bad_request(http):
    signed, url, tracker = http
    s = signed("eddie")
    before = tracker.search("*")
    for route in ("create", "upsert"):
        answer = s.post(f"{url}/api/{route}/", json={"_id": "{#}" * 20000})
        assert answer.status_code == 400
        assert re.search(r"_id longer than 4096 characters once its 20000 \{#\}", answer.text)
    assert tracker.search("*") == before


def test_upsert_gives_each_null_its_own_id(http):
    signed, url, tracker = http
    answer = signed("eddie").post(f"{url}/api/upsert/", json={"_id": ["null", "null"], "c": "d"})
    assert answer.status_code == 200
    ids = [e["_id"] for e in answer.json()]
    assert len(set(ids)) == 2 and "null" not in ids
    assert sorted(tracker.search("c:d")) == sorted(ids)
