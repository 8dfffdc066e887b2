"""The HTTP API with ``auth="none"``: routes, body forms, status codes and bad input,
through a real waitress server (and the app called directly where a server would hide
what is tested)."""

from __future__ import annotations

import io
import time

import pytest
import requests
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client as WsgiClient

import damas_core
from damas_core.wsgi import make_app


@pytest.fixture
def api(shared_server):
    """``(tracker, base URL, requests session)`` with a fresh memory tracker."""
    switch, url = shared_server
    tracker = damas_core.open("memory://")
    switch.app = make_app(tracker, auth="none")
    with requests.Session() as http:
        yield tracker, url, http
    tracker.close()


SPECIAL_IDS = [
    "/a/b c.exr",
    "/semi;colon",
    "/what?x=1",
    "/hash#1",
    "/per%cent",
    "/com,ma",
    "/ünï/日本.txt",
]


def quote_id(i: str) -> str:
    from urllib.parse import quote

    return quote(i, safe="")


@pytest.mark.parametrize("element_id", SPECIAL_IDS)
def test_ids_in_urls_are_decoded_once(api, element_id):
    tracker, url, http = api
    tracker.create({"_id": element_id, "k": 1})
    r = http.get(f"{url}/api/read/{quote_id(element_id)}")
    assert r.status_code == 200 and r.json()["_id"] == element_id
    # Several ids: comma-separated, each encoded (an encoded comma stays in the id).
    r = http.get(f"{url}/api/read/{quote_id(element_id)},{quote_id('/missing')}")
    assert r.status_code == 207
    assert [e and e["_id"] for e in r.json()] == [element_id, None]
    r = http.get(f"{url}/api/graph/0/{quote_id(element_id)}")
    assert r.status_code == 200 and r.json()[0]["_id"] == element_id
    r = http.post(f"{url}/api/version/{quote_id(element_id)}", json={"note": "v"})
    assert r.status_code == 201 and r.json()["version"] == 2


def test_graph_holds_null_for_a_missing_id_as_damas_core(api):
    """damas-core's Python client reads graph(["/a", "/missing"]) as a 207 list with
    null in the missing id's place; the links and the nodes reached follow."""
    tracker, url, http = api
    tracker.create([{"_id": "/a"}, {"_id": "/b"}, {"_id": "l", "src_id": "/b", "tgt_id": "/a"}])
    for r in (
        http.post(f"{url}/api/graph/0", json=["/a", "/missing"]),
        http.get(f"{url}/api/graph/0/%2Fa,%2Fmissing"),
    ):
        assert r.status_code == 207
        assert [e and e["_id"] for e in r.json()] == ["/a", None, "/b", "l"]
    r = http.post(f"{url}/api/graph/0", json=["/missing", "/gone"])
    assert r.status_code == 404
    assert http.post(f"{url}/api/graph/0", json=["/a"]).status_code == 200


def test_double_encoded_percent_is_decoded_once(api):
    tracker, url, http = api
    tracker.create({"_id": "/x%2Fy"})
    assert http.get(f"{url}/api/read/%2Fx%252Fy").json()["_id"] == "/x%2Fy"


def test_search_in_the_url(api):
    tracker, url, http = api
    tracker.create(
        [{"_id": "/a", "origin": "paris", "n": 2}, {"_id": "/b", "origin": "paris", "n": 1}]
    )
    assert http.get(f"{url}/api/search/origin:paris").json() == ["/a", "/b"]
    r = http.get(f"{url}/api/search/origin:paris%20n%3E1")
    assert r.json() == ["/a"]
    r = http.get(f"{url}/api/search/origin:paris", params={"sort": "n", "limit": 1})
    assert r.json() == ["/b"]
    assert http.get(f"{url}/api/search_one/n:1").json()["_id"] == "/b"
    r = http.get(f"{url}/api/search_one/n:7")
    assert r.status_code == 200 and r.json() is None
    bad = http.get(f"{url}/api/search/(origin:paris")
    assert bad.status_code == 400 and bad.json()["error"].startswith("search error")
    r = http.get(f"{url}/api/search_elements/origin:paris", params={"sort": "-n", "skip": 1})
    assert r.status_code == 200 and r.json() == [tracker.read("/b")]
    bad = http.get(f"{url}/api/search_elements/origin:paris", params={"limit": "-1"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("search_elements error")


def test_create_status_codes_and_body_forms(api):
    _tracker, url, http = api
    r = http.post(f"{url}/api/create/", json={"_id": "/a"})
    assert r.status_code == 201 and r.json()["_id"] == "/a"
    r = http.post(f"{url}/api/create/", json=[{"_id": "/a"}, {"_id": "/b"}])
    assert r.status_code == 207 and r.json()[0] is None and r.json()[1]["_id"] == "/b"
    r = http.post(f"{url}/api/create/", json={"_id": "/a"})
    assert r.status_code == 409 and r.json() == {
        "error": "create error: every item already exists",
        "status": 409,
    }
    r = http.post(f"{url}/api/create/", json={"_id": ["/c", "/d"], "tag": "x"})
    assert r.status_code == 201 and [e["_id"] for e in r.json()] == ["/c", "/d"]
    # Without the trailing slash, and with a form content type (curl -d), as old clients do.
    r = http.post(
        f"{url}/api/create",
        data='{"_id": "/e"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 201


def test_read_update_delete_with_bare_string_bodies(api):
    tracker, url, http = api
    tracker.create([{"_id": "/a", "k": 1}, {"_id": "/b"}])
    r = http.post(f"{url}/api/read/", data='"/a"')
    assert r.status_code == 200 and r.json()["k"] == 1
    r = http.post(f"{url}/api/read/", json=["/a", "/zz"])
    assert r.status_code == 207
    assert http.post(f"{url}/api/read/", json="/zz").status_code == 404
    r = http.put(f"{url}/api/update/", json={"_id": "/a", "k": None, "j": 2})
    assert r.status_code == 200 and "k" not in r.json() and r.json()["j"] == 2
    assert http.put(f"{url}/api/update/", json={"_id": "/zz", "j": 2}).status_code == 404
    r = http.post(f"{url}/api/upsert/", json=[{"_id": "/a", "u": 1}, {"_id": "/new", "u": 2}])
    assert r.status_code == 200 and [e["u"] for e in r.json()] == [1, 2]
    r = http.delete(f"{url}/api/delete/", json=["/a", "/zz"])
    assert r.status_code == 207 and r.json() == ["/a", None]
    assert http.delete(f"{url}/api/delete/", json="/zz").status_code == 404


def test_publish_answers_files_then_history(api):
    _tracker, url, http = api
    one = {"_id": "/f", "comment": "first", "origin": "paris"}
    r = http.post(f"{url}/api/publish/", json=one)
    assert r.status_code == 201
    body = r.json()
    assert body[0]["_id"] == "/f" and body[1]["#parent"] == "/f" and len(body) == 2
    r = http.post(f"{url}/api/publish/", json=[one, {**one, "_id": "/g"}])
    assert r.status_code == 207
    assert [b and b.get("_id") for b in r.json()[:2]] == [None, "/g"] and r.json()[2][
        "#parent"
    ] == "/g"
    assert http.post(f"{url}/api/publish/", json=one).status_code == 409
    assert (
        http.post(
            f"{url}/api/publish/", json={"_id": "nope", "comment": "c", "origin": "o"}
        ).status_code
        == 400
    )


def test_comment_lock_unlock(api):
    tracker, url, http = api
    tracker.create([{"_id": "/a"}, {"_id": "/b"}])
    r = http.post(f"{url}/api/comment/", json={"#parent": "/a", "comment": "nice"})
    assert r.status_code == 201 and r.json()[0]["#parent"] == "/a"
    r = http.post(f"{url}/api/comment/", json={"#parent": ["/a", "/zz"], "comment": "x"})
    assert r.status_code == 207 and r.json()[1] is None
    assert (
        http.post(f"{url}/api/comment/", json={"#parent": "/zz", "comment": "x"}).status_code == 404
    )
    assert http.put(f"{url}/api/lock/", json=["/a", "/b"]).status_code == 200
    tracker.update({"_id": "/b", "lock": "someone"})
    assert http.put(f"{url}/api/lock/", data='"/b"').status_code == 409
    assert http.put(f"{url}/api/lock/", json=["/a", "/b", "/zz"]).status_code == 409
    assert tracker.read("/b")["lock"] == "someone"
    assert http.put(f"{url}/api/unlock/", json="/b").status_code == 409
    assert http.put(f"{url}/api/unlock/?force=true", json="/b").status_code == 200
    assert http.put(f"{url}/api/lock/", json="/zz").status_code == 404


def test_mounted_under_a_prefix(memory_tracker, serve):
    host = DispatcherMiddleware(
        lambda e, s: (s("404 Not Found", []), [b""])[1],
        {"/tracker": make_app(memory_tracker, auth="none")},
    )
    url = serve(host)
    memory_tracker.create({"_id": "/a/b"})
    r = requests.get(f"{url}/tracker/api/read/%2Fa%2Fb")
    assert r.status_code == 200 and r.json()["_id"] == "/a/b"
    doc = requests.get(f"{url}/tracker/api/openapi.json").json()
    assert doc["servers"] == [{"url": "/tracker"}]
    page = requests.get(f"{url}/tracker/")
    assert page.status_code == 200 and 'href="/tracker/api/openapi.json"' in page.text
    assert requests.get(f"{url}/elsewhere").status_code == 404


def test_unknown_routes_and_methods(api):
    _, url, http = api
    r = http.get(f"{url}/api/nothing")
    assert r.status_code == 404 and "openapi.json" in r.json()["error"]
    r = http.get(f"{url}/api/create/")
    assert r.status_code == 405 and r.headers["Allow"] == "POST"


def test_malformed_json_names_the_position(api):
    tracker, url, http = api
    r = http.post(
        f"{url}/api/create/",
        data=b'{"_id": "/a", "k": }',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert "malformed JSON at line 1 column 20 (char 19)" in r.json()["error"]
    assert http.post(f"{url}/api/create/", data=b"").status_code == 400
    assert tracker.search("*") == [i for i in tracker.search("*") if i.startswith("@")]


def test_very_deep_json_is_refused(api):
    tracker, url, http = api
    for depth in (150, 5000):
        body = "[" * depth + "]" * depth
        r = http.post(f"{url}/api/read/", data=body)
        assert r.status_code == 400, depth
    deep = {"_id": "/deep"}
    cur = deep
    for _ in range(80):
        cur["v"] = {}
        cur = cur["v"]
    assert http.post(f"{url}/api/create/", json=deep).status_code == 400
    assert tracker.read("/deep") is None


@pytest.mark.parametrize("bad", ["/a/../b", "/a\x00b", "/" + "x" * 5000])
def test_odd_ids_get_a_clear_status_and_change_nothing(api, bad):
    tracker, url, http = api
    r = http.post(f"{url}/api/create/", json={"_id": bad})
    # a file path with a '..' segment is not canonical (tests/http/test_paths_http.py)
    assert r.status_code == 400
    assert tracker.read("/a/../b") is None
    r = http.get(f"{url}/api/read/{quote_id(bad)}")
    assert r.status_code == 404 if ".." in bad else r.status_code == 400


def test_nul_in_url(api):
    _, url, http = api
    assert http.get(f"{url}/api/read/%2Fa%00b").status_code == 400
    assert http.get(f"{url}/api/read/%ff%fe").status_code == 400


def test_catastrophic_regex_answers_fast(api):
    tracker, url, http = api
    tracker.create({"_id": "/" + "a" * 30 + "!"})
    started = time.monotonic()
    r = http.get(f"{url}/api/search/_id:{quote_id('/(a+)+$/')}")
    assert r.status_code == 200 and r.json() == []
    r = http.post(f"{url}/api/search_mongo/", json={"query": {"_id": "REGEX_(a|aa)+$"}})
    assert r.status_code == 200
    assert time.monotonic() - started < 30  # a backtracking engine would take hours


def test_search_mongo_forms(api):
    tracker, url, http = api
    tracker.create([{"_id": "/a", "deleted": True}, {"_id": "/b", "deleted": True}, {"_id": "/c"}])
    r = http.post(
        f"{url}/api/search_mongo/",
        json={"query": {"deleted": True}, "sort": {"_id": -1}, "limit": 1, "skip": 0},
    )
    assert r.json() == {"count": 2, "ids": ["/b"]}
    r = http.post(
        f"{url}/api/search_mongo/", json={"queryobj": '{"query": {"_id": "RX_^/[ab]_RXi"}}'}
    )
    assert r.json()["ids"] == ["/a", "/b"]
    r = http.post(f"{url}/api/search_mongo/", json={"query": {"deleted": True}, "limit": "x"})
    assert r.status_code == 400


def test_body_over_the_limit_is_refused_before_reading():
    tracker = damas_core.open("memory://")
    app = make_app(tracker, auth="none", max_body_size=1000)

    class Unreadable(io.RawIOBase):
        def read(self, *a):
            raise AssertionError("the body was read")

        readinto = read

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/create/",
        "SCRIPT_NAME": "",
        "CONTENT_LENGTH": str(60 * 1024 * 1024),
        "CONTENT_TYPE": "application/json",
        "wsgi.input": Unreadable(),
        "SERVER_NAME": "x",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
    }
    statuses = []
    body = b"".join(app(environ, lambda status, headers: statuses.append(status)))
    assert statuses == ["413 Content Too Large"] and b'"status":413' in body
    # A chunked body (no Content-Length) is cut at the limit too.
    client = WsgiClient(app)
    r = client.post(
        "/api/create/",
        input_stream=io.BytesIO(b"[" + b"1," * 2000 + b"1]"),
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert r.status_code == 413
    assert tracker.search("*") == []


def test_sixty_megabytes_through_waitress(memory_tracker, serve):
    """waitress is told the same limit: it answers 413 as soon as it sees the headers."""
    import socket

    limit = 50 * 1024 * 1024
    url = serve(make_app(memory_tracker, auth="none", max_body_size=limit))
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            b"POST /api/create/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (60 * 1024 * 1024)
        )
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413") and b"application/json" in answer
    assert memory_tracker.search("*") == sorted(memory_tracker.search("*"))  # still answering


def test_the_root_is_the_dashboard(api):
    _, url, http = api
    r = http.get(url + "/")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert "Content-Security-Policy" in r.headers and "<title>" in r.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/changes/?elements=maybe"),
        ("GET", "/api/changes/?elements=2"),
        ("GET", "/api/events/?elements=nope"),
        ("PUT", "/api/unlock/?force=perhaps"),
    ],
)
def test_a_boolean_argument_that_is_neither_answers_400(api, method, path):
    """Every boolean query-string argument of the API (changes' and events' elements,
    unlock's force): a word that is neither true nor false is a 400 naming it, never
    taken for false."""
    tracker, url, http = api
    tracker.create({"_id": "/a", "lock": "damas"})
    r = http.request(method, f"{url}{path}", json="/a", timeout=10)
    assert r.status_code == 400, r.text
    name = path.split("?")[1].split("=")[0]
    assert f"{name} must be 1, true, yes, on (or empty) or 0, false, no, off" in r.json()["error"]
    assert tracker.read("/a")["lock"] == "damas"


def test_boolean_arguments_read_true_and_false(api):
    tracker, url, http = api
    tracker.create({"_id": "/a"})
    for word, has in [("1", True), ("TRUE", True), ("", True), ("0", False), ("off", False)]:
        changes = http.get(f"{url}/api/changes/?elements={word}", timeout=10).json()["changes"]
        assert ("element" in changes[0]) is has, word
