"""Request bodies over the limit, sent every way, get the API's JSON 413 from the real
waitress server ``damas serve`` runs (waitress answers those itself, before the app);
lists that copy (an ``_id`` list, a ``#parent`` list, repeated ids in a read) may not
turn a small body into more than a body's worth of copies."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import orjson
import pytest
import requests

from damas_core.wsgi import make_app

LIMIT = 1000


def exchange(url: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` bytes over a fresh connection; the answer's status, headers, body."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading it all
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                lines = head.decode("latin-1").split("\r\n")
                headers = dict(line.split(": ", 1) for line in lines[1:])
                if len(body) >= int(headers.get("Content-Length", "-1")) >= 0:
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.fixture
def small(memory_tracker, serve):
    """``(tracker, url)`` served with a body limit of :data:`LIMIT` bytes."""
    return memory_tracker, serve(make_app(memory_tracker, auth="none", max_body_size=LIMIT))


def request_head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: localhost", *headers, "", ""]
    return "\r\n".join(lines).encode()


def assert_json_413(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert orjson.loads(body) == {
        "error": f"request error: the body is over the limit of {LIMIT} bytes",
        "status": 413,
    }


def test_a_content_length_over_the_limit_gets_json(small):
    tracker, url = small
    head = request_head(
        "/api/create/", "Content-Type: application/json", f"Content-Length: {10 * LIMIT}"
    )
    assert_json_413(*exchange(url, head))
    assert tracker.search("_id:/^\\//") == []


def test_a_chunked_body_over_the_limit_gets_json(small):
    tracker, url = small
    element = orjson.dumps({"_id": "/big", "data": "x" * (2 * LIMIT)})
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(element[i : i + 100]), element[i : i + 100])
        for i in range(0, len(element), 100)
    )
    head = request_head(
        "/api/create/", "Content-Type: application/json", "Transfer-Encoding: chunked"
    )
    assert_json_413(*exchange(url, head + chunks + b"0\r\n\r\n"))
    assert tracker.read("/big") is None


def test_bodies_up_to_the_limit_are_served(small):
    tracker, url = small
    element = orjson.dumps({"_id": "/fits", "data": ""})
    element = orjson.dumps({"_id": "/fits", "data": "x" * (LIMIT - len(element))})
    assert len(element) == LIMIT
    r = requests.post(
        f"{url}/api/create/", data=element, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 201 and tracker.read("/fits") is not None
    # Chunked (a generator body), within the limit once decoded.
    small_element = orjson.dumps({"_id": "/chunked"})
    r = requests.post(
        f"{url}/api/create/",
        data=iter([small_element[:5], small_element[5:]]),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 201 and tracker.read("/chunked") is not None


def test_a_malformed_request_gets_json_too(small):
    _, url = small
    status, headers, body = exchange(url, request_head("/api/create/", "Content-Length: twelve"))
    assert status == 400 and headers["content-type"] == "application/json"
    assert orjson.loads(body)["error"].startswith("request error: ")


# -- lists that copy: an _id list, a comment's #parent list, a read's repeated ids --------

MEGABYTE = "x" * 1_000_000
#: More copies of a megabyte than one call may make (MAX_COPIED_SIZE, 50 MiB).
TOO_MANY = 60


@pytest.fixture
def open_api(memory_tracker, serve):
    """``(tracker, url)`` served with the default body limit, as an anonymous admin."""
    return memory_tracker, serve(make_app(memory_tracker, auth="none"))


def post(url: str, path: str, body: object, method: str = "POST") -> requests.Response:
    return requests.request(method, f"{url}{path}", data=orjson.dumps(body), timeout=60)


def test_an_id_list_may_not_copy_more_than_a_body_holds(open_api):
    # A body of one megabyte must not make the tracker store (and answer) sixty.
    tracker, url = open_api
    ids = [f"/copy/{i}" for i in range(TOO_MANY)]
    for path in ("/api/create/", "/api/upsert/", "/api/publish/"):
        r = post(url, path, {"_id": ids, "comment": "c", "origin": "o", "big": MEGABYTE})
        assert r.status_code == 400, (path, r.status_code)
        assert "more than the 52428800 bytes one call may copy" in r.json()["error"]
    # Several elements of one call add up: two lists of half as many ids each.
    half = len(ids) // 2
    r = post(
        url,
        "/api/create/",
        [{"_id": ids[:half], "big": MEGABYTE}, {"_id": ids[half:], "big": MEGABYTE}],
    )
    assert r.status_code == 400
    assert tracker.search("_id:/^\\/copy\\//") == []
    tracker.create([{"_id": i} for i in ids])
    r = post(url, "/api/update/", {"_id": ids, "big": MEGABYTE}, "PUT")
    assert r.status_code == 400 and tracker.search("big:*") == []
    # Within the limit, an _id list unfolds as before.
    r = post(url, "/api/create/", {"_id": ["/fine/1", "/fine/2"], "big": MEGABYTE})
    assert r.status_code == 201 and [e["_id"] for e in r.json()] == ["/fine/1", "/fine/2"]


def test_a_comment_may_not_copy_more_than_a_body_holds(open_api):
    tracker, url = open_api
    tracker.create({"_id": "/f"})
    r = post(url, "/api/comment/", {"#parent": ["/f"] * TOO_MANY, "comment": MEGABYTE})
    assert r.status_code == 400 and "one call may copy" in r.json()["error"]
    assert tracker.search("#parent:/f") == []
    r = post(url, "/api/comment/", {"#parent": ["/f", "/f"], "comment": "twice"})
    assert r.status_code == 201 and len(tracker.search("#parent:/f")) == 2


def test_a_read_may_not_repeat_more_than_a_body_holds(open_api):
    # A few bytes of repeated ids must not make the server build a 60 MB answer.
    tracker, url = open_api
    tracker.create({"_id": "/big", "big": MEGABYTE})
    r = post(url, "/api/read/", ["/big"] * TOO_MANY)
    assert r.status_code == 400 and "one call may copy" in r.json()["error"]
    r = requests.get(f"{url}/api/read/" + ",".join(["%2Fbig"] * TOO_MANY), timeout=60)
    assert r.status_code == 400
    # Repeats within the limit get a copy each, as in damas-core.
    r = post(url, "/api/read/", ["/big", "/missing", "/big"])
    assert r.status_code == 207 and [e and e["_id"] for e in r.json()] == ["/big", None, "/big"]


def test_a_body_nesting_too_deep_is_refused_whole(memory_tracker, serve):
    url = serve(make_app(memory_tracker, auth="none"))
    deep: object = 1
    for _ in range(99):  # the element, its key and 99 arrays: 101 levels with the list
        deep = [deep]
    body = [{"_id": f"/flat{i}", "n": i} for i in range(1000)] + [{"_id": "/deep", "x": deep}]
    r = requests.post(f"{url}/api/create/", data=orjson.dumps(body))
    assert r.status_code == 400
    assert r.json()["error"] == "create error: the JSON body nests deeper than 100 levels"
    assert memory_tracker.search("_id:/^\\//") == []
    # one level less is the core's to judge (it caps elements at 64 levels)
    body[-1]["x"] = deep[0]
    r = requests.post(f"{url}/api/create/", data=orjson.dumps(body))
    assert r.status_code == 400 and "nests deeper than 100" not in r.json()["error"]
