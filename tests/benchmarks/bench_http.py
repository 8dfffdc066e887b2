"""The HTTP API under waitress, against a bare WSGI app on the same server settings.

Both apps are served by waitress (4 threads) on a loopback port in this process; the
load comes from a separate process (``python -m tests.benchmarks.bench_http --load``)
running client threads, each with one keep-alive ``http.client`` connection, sending a
fixed number of requests. ``ours_s`` / ``raw_s`` is the time for those requests against
the tracker / against a bare app answering a constant JSON body:

- ``GET /api/read/ID``: one element read per request, signed in with a JWT, on an
  LMDB store (goal: at least 0.6 of the bare app's rate, i.e. ratio ≤ 1.67×);
- ``POST /api/create/``: one element created per request (no goal; for the record).

Run on its own: ``python -m tests.benchmarks.bench_http [--quick]``.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import damas_core
from damas_core.http.server import create_server, stop_server
from damas_core.wsgi import make_app
from tests.benchmarks.harness import figure, print_table

AREA = "http"
SCALES = {"full": 20_000, "quick": 2_000}
CLIENTS = 4
THREADS = 4
TIME_LIMIT = 300.0  # seconds per load run, whatever happens


def bare_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The reference: a constant JSON element, no parsing, no storage."""
    body = b'{"_id":"/bench/a","file_size":1234,"author":"bench","time":1700000000000}'
    if environ.get("CONTENT_LENGTH"):
        environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


@contextmanager
def serving(app: Any) -> Iterator[int]:
    server = create_server(app, host="127.0.0.1", port=0, threads=THREADS, ident="bench")
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            server.asyncore.loop(timeout=0.05, map=server._map, count=1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield server.effective_port
    finally:
        stop.set()
        thread.join(5)
        stop_server(server)


def load(port: int, method: str, path: str, body: str, n: int, token: str) -> float:
    """Run the load generator in another process; seconds for ``n`` requests."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bench_http", "--load", str(port), method, path, body, str(n), token],
        capture_output=True, text=True, timeout=TIME_LIMIT + 30, check=True,
    )  # fmt: skip
    return float(out.stdout.strip())


def generate(port: int, method: str, path: str, body: str, n: int, token: str) -> float:
    """The load generator: ``CLIENTS`` threads with keep-alive connections."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = body.encode() if body else None
    share = [n // CLIENTS + (1 if i < n % CLIENTS else 0) for i in range(CLIENTS)]
    errors: list[str] = []
    deadline = time.monotonic() + TIME_LIMIT

    def worker(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(count):
            if time.monotonic() > deadline:
                errors.append("time limit")
                return
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status >= 300:
                errors.append(f"HTTP {response.status}")
                return
        conn.close()

    threads = [threading.Thread(target=worker, args=(c,)) for c in share]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"load failed: {errors[0]}")
    return elapsed


def figures(scale: str) -> Iterator[dict]:
    import logging

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth" notes
    n = SCALES[scale]
    with tempfile.TemporaryDirectory() as tmp:
        tracker = damas_core.open(f"lmdb://{tmp}/store")
        tracker.create({"_id": "@bench", "class": "user", "password": "bench-pw"})
        tracker.create({"_id": "/bench/a", "file_size": 1234})
        app = make_app(tracker, auth="jwt")
        token = app.tokens.issue("bench")[0]
        with serving(app) as ours, serving(bare_app) as raw:
            # Warm both up (connections, caches), then measure.
            load(ours, "GET", "/api/read/%2Fbench%2Fa", "", 200, token)
            load(raw, "GET", "/api/read/%2Fbench%2Fa", "", 200, token)
            ours_s = load(ours, "GET", "/api/read/%2Fbench%2Fa", "", n, token)
            raw_s = load(raw, "GET", "/api/read/%2Fbench%2Fa", "", n, token)
            yield figure(
                AREA, "GET /api/read/ID (jwt)", n, ours_s=ours_s, raw_s=raw_s, goal=1 / 0.6
            )
            body = '{"_id": "/bench/{#}", "file_size": 1}'
            ours_s = load(ours, "POST", "/api/create/", body, n, token)
            raw_s = load(raw, "POST", "/api/create/", body, n, token)
            yield figure(AREA, "POST /api/create/ (jwt)", n, ours_s=ours_s, raw_s=raw_s, goal=None)
        tracker.close()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        port, method, path, body, n, token = sys.argv[2:8]
        print(generate(int(port), method, path, body, int(n), token))
    else:
        print_table(list(figures("quick" if "--quick" in sys.argv else "full")))
