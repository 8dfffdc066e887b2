"""The change feed over HTTP, on a real waitress server configured as ``damas serve``
configures it: long-polls on ``GET /api/changes/``, Server-Sent Events on
``GET /api/events/`` (resumed with ``Last-Event-ID``), the bound on open streams, read
permissions, and ``damas changes`` (``--follow``) in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
import requests
from werkzeug.test import Client as WsgiClient

import damas_core
from damas_core.client import connect
from damas_core.errors import TooManyStreams
from damas_core.wsgi import make_app

DAMAS = [os.path.join(os.path.dirname(sys.executable), "damas")]


def events(response: requests.Response) -> Iterator[dict]:
    """The events of an SSE response, as ``{"event", "id", "data"}`` (comments skipped)."""
    current: dict = {}
    for raw in response.iter_lines():
        line = raw.decode()
        if line == "":
            if "event" in current or "data" in current:
                yield current
            current = {}
        elif line.startswith(":") or line.startswith("retry:"):
            continue
        else:
            name, _, value = line.partition(": ")
            current[name] = orjson.loads(value) if name == "data" else value


def take(stream: Iterator[dict], count: int) -> list[dict]:
    return [next(stream) for _ in range(count)]


def later(write, delay: float = 0.3) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay), write()))
    thread.start()
    return thread


@pytest.fixture
def open_server(serve):
    """``(tracker, url, app)`` for a memory tracker served with ``auth="none"``."""
    opened = []

    def start(**options):
        retention = options.pop("tombstone_retention", "30d")
        threads = options.pop("threads", 4)
        tracker = damas_core.open("memory://", tombstone_retention=retention)
        opened.append(tracker)
        app = make_app(tracker, auth="none", **options)
        return tracker, serve(app, threads=threads), app

    yield start
    for t in opened:
        t.close()


# -- long-poll ------------------------------------------------------------------------------


def test_long_poll_answers_when_a_write_commits(open_server):
    tracker, url, _ = open_server()
    tracker.create({"_id": "/a"})
    with connect(url) as client:
        mark = client.changes()["last_seq"]
        writer = later(lambda: tracker.create({"_id": "/b"}))
        started = time.monotonic()
        answer = client.changes(since=mark, wait=30, elements=True)
        writer.join()
    assert [(c["_id"], c["deleted"]) for c in answer["changes"]] == [("/b", False)]
    assert answer["changes"][0]["element"] == tracker.read("/b")
    assert time.monotonic() - started < 20  # answered on the write, not at the end


def test_long_poll_answers_empty_when_the_wait_ends(open_server):
    tracker, url, _ = open_server()
    tracker.create({"_id": "/a"})
    with connect(url) as client:
        assert client.changes(since=1, wait=0.3) == {"last_seq": 1, "changes": []}
        assert client.changes(since=0, wait=0.3)["changes"][0]["_id"] == "/a"


@pytest.mark.parametrize(
    "query", ["since=-1", "since=x", "limit=0", "limit=10001", "wait=abc", "wait=-1", "wait=nan"]
)
def test_bad_arguments_are_400(open_server, query):
    _, url, _ = open_server()
    r = requests.get(f"{url}/api/changes/?{query}", timeout=10)
    assert r.status_code == 400
    assert r.json()["error"].startswith("changes error:")


def test_events_refuse_a_bad_position(open_server):
    _, url, _ = open_server()
    r = requests.get(f"{url}/api/events/?since=x", timeout=10)
    assert r.status_code == 400 and r.json()["error"].startswith("events error:")


# -- Server-Sent Events ---------------------------------------------------------------------


def test_an_event_stream_sends_each_change_and_resumes_with_last_event_id(open_server):
    tracker, url, _ = open_server()
    tracker.create([{"_id": "/a"}, {"_id": "/b"}])
    with requests.get(f"{url}/api/events/?since=0", stream=True, timeout=20) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "text/event-stream"
        stream = events(r)
        first = take(stream, 2)
        assert [(e["event"], e["id"], e["data"]["_id"]) for e in first] == [
            ("change", "1", "/a"),
            ("change", "2", "/b"),
        ]
        tracker.update({"_id": "/a", "n": 1})
        (moved,) = take(stream, 1)
        assert moved["data"] == {"seq": 3, "_id": "/a", "deleted": False}
    tracker.delete("/b")  # while no one listens
    tracker.create({"_id": "/c"})
    # A browser reconnects with the id of the last event it got (and the same URL).
    headers = {"Last-Event-ID": moved["id"]}
    with requests.get(f"{url}/api/events/?since=0", headers=headers, stream=True, timeout=20) as r:
        missed = take(events(r), 2)
    assert [(e["data"]["_id"], e["data"]["deleted"]) for e in missed] == [
        ("/b", True),
        ("/c", False),
    ]


def test_an_event_stream_without_a_position_starts_now(open_server):
    tracker, url, _ = open_server()
    tracker.create({"_id": "/old"})
    with requests.get(f"{url}/api/events/?elements=1", stream=True, timeout=20) as r:
        stream = events(r)
        later(lambda: tracker.create({"_id": "/new", "k": 1}), 0.2)
        (event,) = take(stream, 1)
    assert event["data"]["_id"] == "/new"
    assert event["data"]["element"] == tracker.read("/new")


def test_an_event_stream_behind_dropped_tombstones_gets_reset(open_server):
    tracker, url, _ = open_server(tombstone_retention=0)
    tracker.create([{"_id": "/a"}, {"_id": "/b"}])
    tracker.delete("/a")
    time.sleep(0.01)
    assert tracker.feed.compact() == 1
    with requests.get(f"{url}/api/events/?since=1", stream=True, timeout=20) as r:
        stream = events(r)
        (reset,) = take(stream, 1)
        assert reset["event"] == "reset" and reset["data"]["reset"] is True
        assert reset["id"] == str(reset["data"]["last_seq"])  # a reconnect resumes after it
        tracker.create({"_id": "/c"})
        (after,) = take(stream, 1)
    assert after["data"]["_id"] == "/c"


def test_heartbeats_keep_an_idle_stream_talking(open_server):
    _, url, app = open_server()
    app.streams.heartbeat = 0.2
    with requests.get(f"{url}/api/events/", stream=True, timeout=20) as r:
        lines = r.iter_lines()
        seen = [next(lines) for _ in range(6)]
    assert b": keep-alive" in seen


def test_open_streams_do_not_hold_worker_threads(open_server):
    tracker, url, app = open_server(threads=2)
    tracker.create({"_id": "/a"})
    streams = [requests.get(f"{url}/api/events/", stream=True, timeout=20) for _ in range(6)]
    with ThreadPoolExecutor(4) as pool:
        polls = [
            pool.submit(requests.get, f"{url}/api/changes/?since=1&wait=20", timeout=30)
            for _ in range(4)
        ]
        time.sleep(0.3)
        # Ten streams and polls are open on two worker threads; reads still get answers.
        for _ in range(10):
            r = requests.get(f"{url}/api/read/%2Fa", timeout=10)
            assert r.status_code == 200
        assert app.streams.open == 10
        tracker.create({"_id": "/b"})
        assert all(p.result().json()["changes"][0]["_id"] == "/b" for p in polls)
    for s in streams:
        s.close()


def test_streams_beyond_the_bound_get_503(open_server):
    _, url, app = open_server(max_streams=2)
    first = [requests.get(f"{url}/api/events/", stream=True, timeout=20) for _ in range(2)]
    assert [r.status_code for r in first] == [200, 200]
    refused = requests.get(f"{url}/api/events/", timeout=10)
    assert refused.status_code == 503
    assert "streams are open" in refused.json()["error"]
    assert requests.get(f"{url}/api/changes/?wait=5", timeout=10).status_code == 503
    with connect(url) as client, pytest.raises(TooManyStreams):
        client.changes(wait=5)
    assert requests.get(f"{url}/api/changes/", timeout=10).status_code == 200  # no wait
    first[0].close()
    deadline = time.monotonic() + 15
    while app.streams.open > 1 and time.monotonic() < deadline:
        time.sleep(0.1)  # the hub notices the closed connection
    again = requests.get(f"{url}/api/events/", stream=True, timeout=20)
    assert again.status_code == 200
    again.close()
    first[1].close()


def test_a_client_that_does_not_read_is_dropped_without_stalling_the_others(
    open_server, monkeypatch
):
    from damas_core.http import hub

    monkeypatch.setattr(hub, "STALL", 1.0)  # 30 s in service
    tracker, url, app = open_server()
    port = int(url.rsplit(":", 1)[1])
    stuck = socket.create_connection(("127.0.0.1", port), timeout=20)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b"GET /api/events/?elements=1 HTTP/1.1\r\nHost: t\r\n\r\n")
    with requests.get(f"{url}/api/events/", stream=True, timeout=20) as r:
        stream = events(r)
        big = "x" * 200_000
        for i in range(60):  # 12 MB of elements the stuck client never reads
            tracker.create({"_id": f"/big/{i}", "blob": big})
            (event,) = take(stream, 1)  # the reading client gets each one meanwhile
            assert event["data"]["_id"] == f"/big/{i}"
        deadline = time.monotonic() + 15
        while app.streams.open > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert app.streams.open == 1  # the stuck one was dropped once it took nothing
    stuck.close()


def test_a_slow_reader_gets_a_long_backlog_at_its_own_pace(open_server):
    tracker, url, _ = open_server()
    big = "y" * 50_000
    tracker.create([{"_id": f"/b/{i:04}", "blob": big} for i in range(400)])  # 20 MB
    with requests.get(f"{url}/api/events/?since=0&elements=1", stream=True, timeout=30) as r:
        got = []
        for event in events(r):
            got.append(event["data"]["_id"])
            if len(got) % 50 == 0:
                time.sleep(0.2)  # slower than the hub could write
            if len(got) == 400:
                break
    assert got == [f"/b/{i:04}" for i in range(400)]


def test_the_plain_wsgi_app_streams_by_blocking(memory_tracker):
    app = make_app(memory_tracker, auth="none")
    memory_tracker.create({"_id": "/a"})
    response = WsgiClient(app).get("/api/events/?since=0", buffered=False)
    assert response.status_code == 200
    body = b""
    chunks = response.iter_encoded()
    while b'"_id":"/a"' not in body:
        body += next(chunks)
    response.close()
    assert app.streams.open == 0


# -- permissions ----------------------------------------------------------------------------


def test_a_guest_reads_the_feed(jwt_server, signed_in):
    _, url = jwt_server
    gus = signed_in("gus")
    answer = gus.changes(elements=True)
    users = [c for c in answer["changes"] if c["_id"].startswith("@")]
    assert users and all("password" not in c["element"] for c in users)
    assert not any(c["_id"].startswith("~") for c in answer["changes"])
    headers = {"Authorization": f"Bearer {gus.token}"}
    with requests.get(f"{url}/api/events/?since=0", headers=headers, stream=True, timeout=20) as r:
        assert r.status_code == 200
        assert take(events(r), 1)[0]["event"] == "change"


def test_without_a_token_the_feed_is_401(jwt_server):
    _, url = jwt_server
    for path in ("/api/changes/", "/api/changes/?wait=5", "/api/events/"):
        r = requests.get(url + path, timeout=10)
        assert r.status_code == 401, path


def test_a_revoked_token_ends_its_event_stream(memory_tracker, serve):
    app = make_app(memory_tracker, auth="jwt")
    app.streams.heartbeat = 0.2
    url = serve(app)
    ula = connect(url)
    ula.sign_in("ula", "ula-pw")
    headers = {"Authorization": f"Bearer {ula.token}"}
    with requests.get(f"{url}/api/events/", headers=headers, stream=True, timeout=20) as r:
        assert r.status_code == 200
        ula.sign_out()
        lines = list(r.iter_lines())  # ends: the next heartbeat finds the token revoked
    assert all(not line.startswith(b"id:") for line in lines)
    ula.close()


# -- damas changes ------------------------------------------------------------------------


def _env(**extra) -> dict:
    env = dict(os.environ, **extra)
    env.pop("DAMAS_SERVER", None)
    env.pop("DAMAS_TOKEN", None)
    return env


def _lines(process: subprocess.Popen, count: int) -> list[dict]:
    return [orjson.loads(process.stdout.readline()) for _ in range(count)]


def test_damas_changes_follow_prints_a_write_on_the_server(open_server, tmp_path):
    tracker, url, _ = open_server()
    tracker.create({"_id": "/a"})
    follow = subprocess.Popen(
        [*DAMAS, "-s", url, "changes", "--follow", "--elements"],
        stdout=subprocess.PIPE,
        env=_env(DAMAS_CONFIG_DIR=str(tmp_path)),
    )
    try:
        (first,) = _lines(follow, 1)
        assert first["_id"] == "/a" and first["element"]["_id"] == "/a"
        tracker.update({"_id": "/a", "n": 2})
        (second,) = _lines(follow, 1)
        assert second["_id"] == "/a" and second["element"]["n"] == 2
    finally:
        follow.terminate()
        follow.wait(10)


def test_damas_changes_on_a_store_prints_and_follows(tmp_path):
    url = f"lmdb://{tmp_path}/store"
    with damas_core.open(url) as t:
        t.create([{"_id": "/a"}, {"_id": "/b"}])
        t.delete("/a")
    once = subprocess.run(
        [*DAMAS, "--store", url, "changes", "--since", "1"],
        capture_output=True,
        env=_env(),
        timeout=60,
    )
    assert once.returncode == 0, once.stderr
    assert [orjson.loads(line)["_id"] for line in once.stdout.splitlines()] == ["/b", "/a"]
    follow = subprocess.Popen(
        [*DAMAS, "--store", url, "changes", "--follow", "--since", "3"],
        stdout=subprocess.PIPE,
        env=_env(),
    )
    try:
        time.sleep(0.5)
        with damas_core.open(url) as t:  # another process writes
            t.create({"_id": "/c"})
        (line,) = _lines(follow, 1)
        assert line["_id"] == "/c"
    finally:
        follow.terminate()
        follow.wait(10)


# -- damas serve ----------------------------------------------------------------------------


def _serve(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [*DAMAS, "serve", "--port", "0", "--auth", "none", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "serving" in line:
            return proc, line.split(" on ")[1].split()[0].rstrip("/")
    proc.kill()
    raise AssertionError("damas serve did not start")


WRITER = """
import sys
import damas_core
with damas_core.open(sys.argv[1]) as t:
    t.create({"_id": sys.argv[2]})
"""


def test_damas_serve_streams_writes_from_another_process_and_bounds_streams(tmp_path):
    store = f"lmdb://{tmp_path}/data"
    proc, url = _serve("--store", store, "--max-streams", "2")
    try:
        with requests.get(f"{url}/api/events/?since=0", stream=True, timeout=20) as r:
            stream = events(r)
            with connect(url) as client:
                mark = client.changes()["last_seq"]
                # Another process writes to the server's store: the stream and a
                # long-poll (the second slot) both see it.
                writer = later(
                    lambda: subprocess.run(
                        [sys.executable, "-c", WRITER, store, "/from-elsewhere"], check=True
                    ),
                    0.5,
                )
                answer = client.changes(since=mark, wait=30)
                writer.join()
                assert [c["_id"] for c in answer["changes"]] == ["/from-elsewhere"]
                (event,) = take(stream, 1)
                assert event["data"]["_id"] == "/from-elsewhere"
                # Both slots taken: one more stream is refused.
                with requests.get(f"{url}/api/events/", stream=True, timeout=20) as second:
                    assert second.status_code == 200
                    refused = requests.get(f"{url}/api/events/", timeout=10)
                    assert refused.status_code == 503
    finally:
        proc.terminate()
        proc.wait(10)
