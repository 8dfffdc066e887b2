"""Agents over HTTP: idle cycles, cycles after changes elsewhere, a first publish.

Every figure runs an agent against a tracker served over HTTP (the WSGI app of
``damas serve`` on waitress, on a loopback port) with an LMDB store:

- an idle cycle of a mirror (receives, scans off: the tracker side of a cycle; a scan
  walks the tree as ``find`` does, measured in bench_sync) at two sizes, with the
  bytes the agent sent; the goal is a flat cost (large/small <= 1.5), <= 50 ms at the
  large size, <= 64 kB sent;
- a cycle after 1000 elements changed elsewhere (nothing to copy) against an idle cycle
  plus reading those 1000 elements from the same server;
- the first scan and publish of a tree through a ``damas serve`` process against
  ``find``, with the embedded figure beside it;
- the agent's resident memory with the large view, idle (a separate process).

Run alone with ``python -m tests.benchmarks.bench_agents [--quick]``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from damas_core.sync import Agent
from damas_core.sync.volumes import create_volume, set_global_parameters

import damas_core
from damas_core.client import connect
from damas_core.wsgi import make_app
from tests.benchmarks.bench_sync import _fig, _find, _tree
from tests.http.conftest import serving

IDLE_RUNS = 7


class _Sent:
    """WSGI middleware adding up the bytes of the requests it passes on."""

    def __init__(self, app) -> None:
        self.app = app
        self.bytes = 0

    def __call__(self, environ, start_response):
        head = sum(len(k) + len(str(v)) for k, v in environ.items() if k.startswith("HTTP_"))
        self.bytes += int(environ.get("CONTENT_LENGTH") or 0) + head + len(environ["PATH_INFO"])
        return self.app(environ, start_response)


def _store(path: Path, n: int) -> damas_core.Tracker:
    """``n`` file elements published at paris and held at tokyo, and the two volumes."""
    t = damas_core.open(f"lmdb://{path}")
    (path.parent / f"{path.name}-paris").mkdir()
    (path.parent / f"{path.name}-tokyo").mkdir()
    create_volume(t, {"_id": "v_paris", "name": "paris", "url": f"file://{path}-paris/"})
    create_volume(
        t,
        {"_id": "v_tokyo", "name": "tokyo", "url": f"file://{path}-tokyo/", "enableScans": False},
    )
    set_global_parameters(t, {"syncEverywhere": True})
    batch = 20_000
    for start in range(0, n, batch):
        t.create(
            [
                {
                    "_id": f"/d{i // 500:05d}/f{i:07d}.dat",
                    "origin": "paris",
                    "comment": "scanned at paris",
                    "file_size": 16,
                    "file_mtime": 1_700_000_000_000,
                    "time": 1_700_000_000_000,
                    "synced_paris": 1_700_000_000_000,
                    "synced_tokyo": 1_700_000_000_000,
                }
                for i in range(start, min(n, start + batch))
            ]
        )
    return t


def _idle(agent: Agent, sent: _Sent) -> tuple[float, float]:
    """The median idle cycle (s) and the bytes sent per cycle."""
    times = []
    before = sent.bytes
    for _ in range(IDLE_RUNS):
        t = time.perf_counter()
        report = agent.run_once()
        times.append(time.perf_counter() - t)
        assert not report.received and not report.failed
    return statistics.median(times), (sent.bytes - before) / IDLE_RUNS


_RSS_SCRIPT = """
import sys
from damas_core.client import connect
from damas_core.sync import Agent
agent = Agent(connect(sys.argv[1]), "v_tokyo", settle=0, progress=False)
for _ in range(3):
    agent.run_once()
for line in open("/proc/self/status"):
    if line.startswith("VmRSS:"):
        print(int(line.split()[1]) * 1024)
"""


@contextmanager
def _damas_serve(store: str, tmp: Path) -> Iterator[str]:
    """``damas serve --auth none`` on ``store`` in its own process; yields its URL."""
    log = tmp / "serve.log"
    damas = str(Path(sys.executable).with_name("damas"))
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [damas, "serve", "--store", store, "--port", "0", "--auth", "none"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while "serving" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"damas serve did not start: {log.read_text()[-500:]}")
            time.sleep(0.05)
        line = next(x for x in log.read_text().splitlines() if "serving" in x)
        port = int(line.split(" on ")[1].split()[0].rstrip("/").rsplit(":", 1)[1])
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def figures(scale: str) -> Iterator[dict]:
    small, large = (100_000, 1_000_000) if scale == "full" else (2_000, 20_000)
    n_tree = 100_000 if scale == "full" else 5_000
    tmp = Path(tempfile.mkdtemp(prefix="damas-bench-agents-"))
    try:
        idle: dict[int, float] = {}
        for n in (small, large):
            tracker = _store(tmp / f"store{n}", n)
            sent = _Sent(make_app(tracker, auth="none"))
            with serving(sent) as url, connect(url) as client:
                agent = Agent(client, "v_tokyo", settle=0, progress=False)
                t = time.perf_counter()
                agent.run_once()  # the first cycle reads every element once
                first = time.perf_counter() - t
                agent.run_once()  # reads back its own first status writes
                idle[n], per_cycle = _idle(agent, sent)
                yield _fig(
                    f"agent first cycle over HTTP (reads {n:,} elements)", n, first, 0, "", None
                )
                yield _fig(
                    f"idle agent cycle over HTTP ({per_cycle / 1024:.1f} kB sent, goal <= 64 kB)",
                    n,
                    idle[n],
                    idle[small],
                    "<= 1.5x smallest; <= 50 ms" if n == large else "",
                    (idle[n] / idle[small] <= 1.5 and idle[n] <= 0.05 and per_cycle <= 65536)
                    if n == large
                    else None,
                )
                if n == large:
                    # 1000 elements changed elsewhere (a key nothing copies for)
                    ids = sorted(agent.view.files)[:: max(1, n // 1000)][:1000]
                    tracker.update([{"_id": i, "note": "reviewed"} for i in ids])
                    t = time.perf_counter()
                    report = agent.run_once()
                    after = time.perf_counter() - t
                    assert not report.received and not report.failed
                    t = time.perf_counter()
                    client.read(ids)
                    read = time.perf_counter() - t
                    yield _fig(
                        "cycle after 1000 changes elsewhere vs idle + reading them",
                        n,
                        after,
                        idle[n] + read,
                        "<= 2x",
                        after <= 2 * (idle[n] + read),
                    )
                    run = subprocess.run(
                        [sys.executable, "-c", _RSS_SCRIPT, url],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    rss = int(run.stdout.strip().splitlines()[-1])
                    row = _fig(
                        f"agent RSS idle, {rss / 2**20:.0f} MB (goal <= 400 MB)", n, 0, 0, "", None
                    )
                    row["rss_bytes"] = rss
                    row["ok"] = rss <= 400 * 2**20
                    yield row
            tracker.close()

        # first scan + publish of a tree through the server, and embedded
        root = tmp / "tree"
        _tree(root, n_tree)
        os.sync()
        _find(root)
        raw = min(_find(root) for _ in range(3))
        timings = {}
        for how in ("http", "embedded"):
            tracker = damas_core.open(f"lmdb://{tmp}/publish-{how}")
            create_volume(
                tracker,
                {
                    "_id": "v_paris",
                    "name": "paris",
                    "url": f"file://{root}/",
                    "enableReception": False,
                    "enableEmission": False,
                },
            )
            if how == "http":
                # a `damas serve` process of its own, as in production: the server's
                # work is on another core than the agent's
                tracker.close()
                with (
                    _damas_serve(f"lmdb://{tmp}/publish-{how}", tmp) as url,
                    connect(url) as client,
                ):
                    agent = Agent(client, "v_paris", settle=0, progress=False)
                    t = time.perf_counter()
                    report = agent.run_once()
                    timings[how] = time.perf_counter() - t
                tracker = damas_core.open(f"lmdb://{tmp}/publish-{how}")
            else:
                agent = Agent(tracker, "v_paris", settle=0, progress=False)
                t = time.perf_counter()
                report = agent.run_once()
                timings[how] = time.perf_counter() - t
            assert len(report.published) == n_tree
            tracker.close()
        yield _fig(
            f"first scan + publish over HTTP vs find (embedded {timings['embedded'] / raw:.1f}x)",
            n_tree,
            timings["http"],
            raw,
            "<= 8x",
            timings["http"] / raw <= 8,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    from tests.benchmarks.bench_sync import _verdict

    scale = "quick" if "--quick" in sys.argv else "full"
    for fig in figures(scale):
        print(
            f"{fig['figure']:<72} n={fig['n']:<8} ours={fig['ours_s']:.3f}s raw={fig['raw_s']:.3f}s "
            f"ratio={fig['ratio']:.2f} goal {fig['goal'] or '-'} {_verdict(fig['ok'])}"
        )
    sys.stdout.flush()
    os._exit(0)
