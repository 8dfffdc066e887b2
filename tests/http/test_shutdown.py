"""Stopping a server inside a process that goes on (an application embedding the API, a
test run): a request still running when it stops finishes, and nothing it does
afterwards reaches the process's other connections."""

from __future__ import annotations

import socket
import threading

import requests

from damas_core.http.server import create_server, stop_server


def test_a_request_finishing_after_the_stop_writes_to_no_other_connection():
    entered, release = threading.Event(), threading.Event()

    def slow_app(environ, start_response):
        entered.set()
        release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    server = create_server(slow_app, host="127.0.0.1", port=0, threads=2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            server.asyncore.loop(timeout=0.05, map=server._map, count=1)

    looping = threading.Thread(target=loop, daemon=True)
    looping.start()
    url = f"http://127.0.0.1:{server.effective_port}/"
    client = threading.Thread(target=_quiet_get, args=(url,), daemon=True)
    client.start()
    assert entered.wait(10)
    stop.set()
    looping.join(5)
    # The request ends while the server stops; once stop_server returns, new
    # descriptors take the lowest free numbers, those the server's wake-up pipe had.
    threading.Timer(0.3, release.set).start()
    stop_server(server)
    pairs = [socket.socketpair() for _ in range(4)]
    try:
        client.join(10)  # the request has ended: its worker has done all it does
        stray = b""
        for pair in pairs:
            for end in pair:
                end.setblocking(False)
                try:
                    stray += end.recv(16)
                except BlockingIOError:
                    pass
        assert stray == b"", f"a stopped server wrote {stray!r} to another connection"
        assert not server.task_dispatcher.threads  # every worker has ended
    finally:
        for pair in pairs:
            for end in pair:
                end.close()


def _quiet_get(url: str) -> None:
    try:
        requests.get(url, timeout=10)
    except requests.RequestException:
        pass  # the server may close the connection as it stops
