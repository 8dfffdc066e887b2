"""Operations: what monitoring costs.

- ``GET /metrics`` on a store of ``n`` tracked files and 10 sites, against ``GET
  /api/read/ID`` on the same app (goal ≤ 5×): a scrape reads the dashboard's caches,
  kept current by the change feed, not the store. Shown without goal: the scrape right
  after 100 writes, and the first scrape (the one full read).
- ``damas notify`` following an idle tracker through ``damas serve``: the CPU time of
  the notifier's process over the wall time it ran (goal ≤ 1% of a core).

Requests go over HTTP to the app served by waitress in this process, from the load
process of bench_http (keep-alive connections); the notifier is a real process. Run on its own: ``python -m tests.benchmarks.bench_ops [--quick]``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from damas_core.wsgi import make_app
from tests.benchmarks.bench_dashboard import T, build
from tests.benchmarks.bench_http import load, serving
from tests.benchmarks.harness import figure, print_table

AREA = "ops"
SCALES = {"full": (1_000_000, 5_000, 30.0), "quick": (20_000, 1_000, 6.0)}
SITES = 10


def per_request(port: int, path: str, n: int, token: str) -> float:
    """Seconds per ``GET path`` over HTTP, from the load process of bench_http (keep-alive
    connections, several clients)."""
    return load(port, "GET", path, "", n, token) / n


def scrape_figures(n: int, requests: int) -> Iterator[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        tracker = build(f"{tmp}/store", n)  # paris, tokyo, lyon: 7 more sites
        tracker.storage.insert_many(
            [{"_id": f"vol_site{i}", "name": f"site{i}", "url": f"file:///srv/site{i}/",
              "agentStatus": "idle", "lastConnection": T, "bytesTotal": 10**12,
              "bytesUsed": 10**11, "bytesRemaining": 9 * 10**11} for i in range(SITES - 3)]
        )  # fmt: skip
        tracker.storage.insert_many([{"_id": "@benchadmin", "class": "admin"}])
        try:
            app = make_app(tracker, auth="jwt")
            token, _ = app.tokens.issue("benchadmin")
            read = "/api/read/%2Fseq0000%2Ff0000001.exr"
            with serving(app) as port:
                first = per_request(port, "/metrics", 1, token)  # counts every file once
                per_request(port, read, 100, token)  # warm: connections, token cache
                raw = per_request(port, read, requests, token)
                ours = per_request(port, "/metrics", requests // 10, token)
                yield figure(AREA, f"GET /metrics ({SITES} sites) vs GET /api/read/ID", n,
                             ours_s=ours, raw_s=raw, goal=5.0)  # fmt: skip
                times = []
                for r in range(5):
                    for i in range(100):
                        tracker.update({"_id": f"/seq0000/f{i:07}.exr", "synced_lyon": T + r + 1})
                    times.append(per_request(port, "/metrics", 1, token))
                yield figure(AREA, "GET /metrics after 100 writes vs GET /api/read/ID", n,
                             ours_s=min(times), raw_s=raw, goal=None)  # fmt: skip
                yield figure(AREA, "first GET /metrics (reads every file) vs GET /api/read/ID",
                             n, ours_s=first, raw_s=raw, goal=None)  # fmt: skip
        finally:
            tracker.close()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def notifier_figure(seconds: float) -> dict:
    from tests.sync.processes import ADMIN_PW, DAMAS, Server, credentials, until

    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        server.start()
        try:
            with server.admin() as admin:
                admin.create([{"_id": f"vol_site{i}", "name": f"site{i}",
                               "url": f"file:///srv/site{i}/", "notifiedEmails": "a@b.org"}
                              for i in range(SITES)])  # fmt: skip
            creds = credentials(Path(tmp) / "creds.json", username="admin", password=ADMIN_PW)
            log = Path(tmp) / "notify.log"
            proc = subprocess.Popen(
                [DAMAS, "notify", "--server", server.url, "--credentials", str(creds),
                 "--state-dir", f"{tmp}/notify", "--log-file", str(log)],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                until(lambda: "following" in (log.read_text() if log.exists() else ""),
                      "the notifier to start", timeout=60)  # fmt: skip
                time.sleep(1.0)  # past its first round
                cpu0, wall0 = _cpu_seconds(proc.pid), time.monotonic()
                time.sleep(seconds)
                cpu, wall = _cpu_seconds(proc.pid) - cpu0, time.monotonic() - wall0
            finally:
                proc.terminate()
                proc.wait(20)
        finally:
            server.stop()
    # as a percentage of a core: the CPU seconds per 100 s of wall time
    return figure(AREA, "damas notify on an idle tracker: % of a core", SITES,
                  ours_s=cpu * 100, raw_s=wall, goal=1.0)  # fmt: skip


def figures(scale: str) -> Iterator[dict]:
    n, requests, seconds = SCALES[scale]
    yield from scrape_figures(n, requests)
    yield notifier_figure(seconds)


if __name__ == "__main__":
    print_table(list(figures("quick" if "--quick" in sys.argv else "full")))
