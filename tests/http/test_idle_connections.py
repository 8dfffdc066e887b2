"""Idle connections cannot crowd requests out of ``damas serve``'s server: a crowd of
TCP connections that send nothing (more than the server's connection limit) does not
keep a plain request from its answer, a connection that sends no whole request is
closed after the idle timeout, and one that trickles its headers is too. The failure
condition is a generous socket timeout, never an elapsed time."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

import damas_core
from damas_core.http.streams import MAX_STREAMS
from damas_core.wsgi import make_app

#: More idle connections than the server may hold (its limit is max_streams + 100).
CROWD = MAX_STREAMS + 150
#: How long a request may take before the test calls it stuck.
PATIENCE = 60


@pytest.fixture
def served(serve) -> Iterator[tuple[damas_core.Tracker, str]]:
    tracker = damas_core.open("memory://")
    tracker.create({"_id": "/a"})
    yield tracker, serve(make_app(tracker, auth="none"), idle_timeout=2)
    tracker.close()


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


@contextlib.contextmanager
def crowd(url: str, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that send nothing (those the kernel's backlog cannot take
    are given up)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.settimeout(0.5)
            try:
                sock.connect(address(url))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def test_a_crowd_of_idle_connections_does_not_keep_a_request_waiting(served):
    _, url = served
    with crowd(url, CROWD) as idle:
        assert len(idle) > MAX_STREAMS + 100 - 10  # the server is full
        r = requests.get(f"{url}/api/read/%2Fa", timeout=PATIENCE)
        assert r.status_code == 200 and r.json()["_id"] == "/a"
        r = requests.get(f"{url}/api/read/%2Fa", timeout=PATIENCE)  # and again
        assert r.status_code == 200


def test_a_connection_sending_nothing_is_closed(served):
    _, url = served
    with socket.create_connection(address(url), timeout=PATIENCE) as sock:
        assert sock.recv(100) == b""  # closed by the server, with nothing said


def test_a_connection_trickling_its_headers_is_closed(served):
    _, url = served
    with socket.create_connection(address(url), timeout=PATIENCE) as sock:
        sock.settimeout(0.5)
        closed = False
        for _ in range(4 * PATIENCE):  # one byte every half second, never a whole request
            try:
                sock.sendall(b"X")
                if sock.recv(100) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:  # reset: closed too
                closed = True
                break
        assert closed


def answer(sock: socket.socket) -> bytes:
    """One HTTP answer read from ``sock`` (its body has a Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed before answering"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))[15:]
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head.split(b"\r\n")[0]


def test_a_kept_alive_connection_waits_from_its_last_answer(served):
    """The timeout runs from the last answer: requests a little less than the timeout
    apart, longer than it in all, are all served on one connection, then it is closed."""
    _, url = served
    with socket.create_connection(address(url), timeout=PATIENCE) as sock:
        for _ in range(3):
            sock.sendall(b"GET /api/read/%2Fa HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer(sock) == b"HTTP/1.1 200 OK"
            time.sleep(1.2)  # the server closes connections idle for 2 s
        assert sock.recv(100) == b""


def test_damas_serve_defaults_to_the_servers_idle_timeout():
    from damas_core.cli.serve import serve
    from damas_core.http.server import IDLE_TIMEOUT

    option = next(p for p in serve.params if p.name == "idle_timeout")
    assert option.default == IDLE_TIMEOUT
