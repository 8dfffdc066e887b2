"""The change feed: reading it with elements, the long-poll's latency, and what idle
event streams cost the other clients of one server.

- ``changes`` returning 1000 ids after 1000 writes with ``elements=True``, against
  reading those 1000 elements in one call (goal ≤ 2×), on LMDB and SQLite;
- the long-poll latency, from a write's commit to the waiting client's answer (median
  of :data:`SAMPLES`, goal ≤ 100 ms; the "raw" column is that 100 ms budget), for a
  write made through the same server (the hub is woken at once) and for one made by
  another process on the same LMDB store (seen by the 50 ms poll of the store's
  position). The time runs from just before the write is sent, so it includes the
  write's own request;
- ``GET /api/read/ID`` throughput with 200 idle event streams open on the same server
  against none (goal: at least 0.8 of the rate, i.e. time ratio ≤ 1.25×), the best of
  :data:`ROUNDS` runs of each taken in turns. The load comes from another process, as
  in ``bench_http``.

The server is the one ``damas serve`` runs (:func:`damas_core.http.server.create_server`,
4 worker threads, its streams handed to the hub) on a loopback port in this process.

Run on its own: ``python -m tests.benchmarks.bench_feed [--quick]``.
"""

from __future__ import annotations

import http.client
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

import damas_core
from damas_core.http.server import create_server, stop_server
from damas_core.wsgi import make_app
from tests.benchmarks.bench_http import load
from tests.benchmarks.harness import best, figure, print_table

AREA = "feed"
SCALES = {"full": 10_000, "quick": 2_000}
WRITES = 1000
SAMPLES = 21
IDLE_STREAMS = 200
ROUNDS = 3
THREADS = 4
BUDGET_S = 0.100

WRITER = """
import sys
import damas_core
t = damas_core.open(sys.argv[1])
for line in sys.stdin:
    t.create({"_id": line.strip()})
    print("ok", flush=True)
t.close()
"""


@contextmanager
def serving(app: Any) -> Iterator[int]:
    server = create_server(app, host="127.0.0.1", port=0, threads=THREADS, ident="bench")
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            server.asyncore.loop(timeout=0.05, map=server._map, count=1, use_poll=True)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield server.effective_port
    finally:
        stop.set()
        thread.join(5)
        stop_server(server)


def elements_figures(tmp: str) -> Iterator[dict]:
    for name, url in (("lmdb", f"lmdb://{tmp}/elements"), ("sqlite", f"sqlite://{tmp}/e.db")):
        with damas_core.open(url) as t:
            t.create([{"_id": f"/old/{i:05}", "file_size": i} for i in range(5000)])
            mark = _position(t)
            ids = [f"/shots/{i:04}.exr" for i in range(WRITES)]
            for i in ids:  # one write each
                t.create({"_id": i, "file_size": 1234, "origin": "paris", "comment": "take"})
            assert len(t.changes(since=mark, limit=WRITES, elements=True)["changes"]) == WRITES
            ours, raw = alternating(
                lambda t=t, m=mark: t.changes(since=m, limit=WRITES, elements=True),
                lambda t=t, ids=ids: t.read(ids),
            )
            yield figure(
                AREA,
                f"changes 1000 ids with elements vs read of them ({name})",
                WRITES,
                ours_s=ours,
                raw_s=raw,
                goal=2.0,
            )


def alternating(ours: Any, raw: Any, rounds: int = 25) -> tuple[float, float]:
    """The best time of each over ``rounds`` runs taken in turn, so that a busy moment
    of the machine weighs on both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for fn, out in zip((ours, raw), times, strict=True):
            out.append(best(fn, 1))
    return min(times[0]), min(times[1])


def _position(t: Any) -> int:
    since = 0
    while True:
        answer = t.changes(since, 10_000)
        if answer["last_seq"] == since:
            return since
        since = answer["last_seq"]


def _poll(port: int, since: int, out: list[float]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", f"/api/changes/?since={since}&wait=30")
    response = conn.getresponse()
    body = response.read()
    out.append(time.perf_counter())
    assert orjson.loads(body)["changes"], body
    conn.close()


def latency_figures(tmp: str) -> Iterator[dict]:
    url = f"lmdb://{tmp}/latency"
    tracker = damas_core.open(url)
    app = make_app(tracker, auth="none")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        with serving(app) as port:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

            def through_the_server(n: int) -> None:
                conn.request(
                    "POST", "/api/create/", body=orjson.dumps({"_id": f"/lp/{n}"}),
                    headers={"Content-Type": "application/json"},
                )  # fmt: skip
                conn.getresponse().read()

            def from_another_process(n: int) -> None:
                writer.stdin.write(f"/other/{n}\n")
                writer.stdin.flush()
                writer.stdout.readline()

            for name, write in (
                ("a write through the server", through_the_server),
                ("a write by another process (LMDB)", from_another_process),
            ):
                latencies = []
                for n in range(SAMPLES):
                    since = tracker.storage.last_seq()
                    answered: list[float] = []
                    client = threading.Thread(target=_poll, args=(port, since, answered))
                    client.start()
                    while app.streams.open == 0:  # the poll is waiting on the hub
                        time.sleep(0.001)
                    time.sleep(0.01)
                    start = time.perf_counter()
                    write(n)
                    client.join(60)
                    latencies.append(answered[0] - start)
                median = statistics.median(latencies)
                yield figure(
                    AREA,
                    f"long-poll: {name} → waiting client's answer (median) vs 100 ms",
                    SAMPLES,
                    ours_s=median,
                    raw_s=BUDGET_S,
                    goal=1.0,
                )
            conn.close()
    finally:
        writer.stdin.close()
        writer.wait(30)
        tracker.close()


def _idle_streams(port: int, count: int, token: str) -> list[socket.socket]:
    request = f"GET /api/events/ HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n"
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head[:100]
        socks.append(s)
    return socks


def streams_figures(tmp: str, n: int) -> Iterator[dict]:
    tracker = damas_core.open(f"lmdb://{tmp}/streams")
    tracker.create({"_id": "@bench", "class": "user", "password": "bench-pw"})
    tracker.create({"_id": "/bench/a", "file_size": 1234})
    app = make_app(tracker, auth="jwt")
    token = app.tokens.issue("bench")[0]
    path = "/api/read/%2Fbench%2Fa"
    try:
        with serving(app) as port:
            load(port, "GET", path, "", 200, token)  # warm up
            # In turns, the best of each: a busy moment of the machine weighs on both.
            alone, crowded = [], []
            for _ in range(ROUNDS):
                alone.append(load(port, "GET", path, "", n, token))
                socks = _idle_streams(port, IDLE_STREAMS, token)
                try:
                    assert app.streams.open == IDLE_STREAMS
                    crowded.append(load(port, "GET", path, "", n, token))
                finally:
                    for s in socks:
                        s.close()
                deadline = time.monotonic() + 30
                while app.streams.open and time.monotonic() < deadline:
                    time.sleep(0.05)
            yield figure(
                AREA,
                f"GET /api/read/ID with {IDLE_STREAMS} idle event streams vs none (time)",
                n,
                ours_s=min(crowded),
                raw_s=min(alone),
                goal=1 / 0.8,
            )
    finally:
        tracker.close()


def figures(scale: str) -> Iterator[dict]:
    import logging

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        yield from elements_figures(tmp)
        yield from latency_figures(tmp)
        yield from streams_figures(tmp, SCALES[scale])


if __name__ == "__main__":
    print_table(list(figures("quick" if "--quick" in sys.argv else "full")))
