"""The dashboard's files page: server time for a page of 100 files × 3 sites.

Each store is an LMDB store of ``n`` tracked files and three volumes. The page is
answered by the WSGI app itself (a signed-in request with a JWT cookie, the whole page
rendered), so the figure is the server's time without the network:

- against ``search_elements`` of the same 100 files on the same store, on the large
  store (goal ≤ 3×), for the first page of every file and for the first page of a folder
  (``?prefix=``, a search of the folder's key range); and, without goal, the first page
  right after its 100 files changed, when every row is made again (a row is kept
  between pages while its file is unchanged);
- the first page of every file, and of a folder, on the large store against the
  10k-file store (goal ≤ 1.5×);
- a state filter's page (``?state=error``, one file in 50), large against small (goal
  ≤ 1.5×);
- the sites page (completion per site) and the folder view (completion per folder),
  large against small: a page after the first, and one right after 100 writes (goal
  ≤ 1.5×); the first sites page, which counts every file once, is shown without goal.

Run on its own: ``python -m tests.benchmarks.bench_dashboard [--quick]``.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from damas_core.sync.status import files_node
from werkzeug.test import EnvironBuilder

import damas_core
from damas_core.passwords import hash_password
from damas_core.wsgi import make_app
from tests.benchmarks.harness import best, figure, once, print_table

AREA = "dashboard"
SCALES = {"full": (10_000, 1_000_000), "quick": (1_000, 20_000)}
T = 1_700_000_000_000
_BATCH = 50_000


def build(path: str, n: int) -> Any:
    """An LMDB store of ``n`` files at paris, copied to tokyo, wanted at lyon, where one
    in 50 failed."""
    tracker = damas_core.open(f"lmdb://{path}")
    tracker.storage.insert_many(
        [{"_id": f"vol_{s}", "name": s, "url": f"file:///srv/{s}/"} for s in ("paris", "tokyo", "lyon")]
        + [{"_id": "@bench", "class": "user", "password": hash_password("bench-pw")}]
    )  # fmt: skip
    for start in range(0, n, _BATCH):
        tracker.storage.insert_many(
            [
                {"_id": f"/seq{i // 1000:04}/f{i:07}.exr", "origin": "paris", "comment": "c",
                 "author": "bench", "file_size": i, "time": T, "synced_tokyo": T,
                 "sync_lyon": True, **({"syncError_lyon": 23} if i % 50 == 49 else {})}
                for i in range(start, min(n, start + _BATCH))
            ]
        )  # fmt: skip
    return tracker


def page_timer(
    tracker: Any, query: str = "", path: str = "/", rows: int | None = 100, app: Any = None
) -> Any:
    """A function answering ``GET <path>?<query>`` through the app (``rows``: the file
    rows the page must show; ``app``: an app already made, to keep its caches)."""
    app = app or make_app(tracker, auth="jwt")
    token, _ = app.tokens.issue("bench")
    environ = EnvironBuilder(
        path=path, query_string=query, headers={"Cookie": f"token={token}"}
    ).get_environ()
    statuses: list[str] = []

    def run() -> bytes:
        body = b"".join(app(dict(environ), lambda status, headers: statuses.append(status)))
        assert statuses.pop().startswith("200"), body[:300]
        return body

    # the rows are counted once, before any timing (the same page comes each time); that
    # first call also compiles the templates and reads the secret
    assert rows is None or run().count(b'<tr data-file="') == rows

    run.app = app  # type: ignore[attr-defined]
    return run


def touch(tracker: Any, n: int, round: int) -> None:
    """``n`` files copied to lyon, one write each (the changes a page then catches up on)."""
    for i in range(n):
        tracker.update({"_id": f"/seq0000/f{i:07}.exr", "synced_lyon": T + round})


def figures(scale: str) -> Iterator[dict]:
    small, large = SCALES[scale]
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (small, large):
            tracker = build(f"{tmp}/store{n}", n)
            try:
                page = page_timer(tracker)
                times[n] = best(page, 15)  # a few ms each: the best of many is steady
                last = f"/seq{(n - 1) // 1000:04}/"  # the last folder: no early stop helps
                folder = page_timer(tracker, "prefix=" + last)
                times["folder", n] = best(folder, 15)
                # completion per site and per folder: counted once, then kept by the feed
                sites = page_timer(tracker, path="/sites", rows=None, app=page.app)
                times["sites first", n] = once(sites)
                tree = page_timer(tracker, "prefix=/", path="/folders", rows=None, app=page.app)
                tree()
                # one file in 50 is in error: a small store has fewer than a page of them
                errors = page_timer(tracker, "state=error", rows=min(100, n // 50), app=page.app)
                times["errors", n] = best(errors, 5)
                times["sites", n] = best(sites, 5)
                times["folders", n] = best(tree, 5)
                times["sites after 100 changes", n] = after_changes(tracker, sites, 100, 5)
                if n == large:
                    node = files_node()
                    raw = best(lambda t=tracker, q=node: t.search_elements(q, "_id", 0, 101))
                    yield figure(AREA, "files page 100×3 vs search_elements", n,
                                 ours_s=times[n], raw_s=raw, goal=3.0)  # fmt: skip
                    # each row made again: the page right after its 100 files changed
                    fresh = after_changes(tracker, page, 100, 5)
                    yield figure(AREA, "files page after its 100 files changed vs search_elements",
                                 n, ours_s=fresh, raw_s=raw, goal=None)  # fmt: skip
                    # the page's own cost over the store's: ids in order, then the elements
                    bare = best(lambda t=tracker: t.read(t.search("*", None, 0, 101)))
                    yield figure(AREA, "files page 100×3 vs search + read of 101 ids", n,
                                 ours_s=times[n], raw_s=bare, goal=None)  # fmt: skip
                    # a folder's page: a search of the folder's key range
                    node = files_node("*", last)
                    raw = best(lambda t=tracker, q=node: t.search_elements(q, "_id", 0, 101), 15)
                    yield figure(AREA, "folder page 100×3 vs search_elements", n,
                                 ours_s=times["folder", n], raw_s=raw, goal=3.0)  # fmt: skip
            finally:
                tracker.close()
    yield figure(AREA, f"files page at {large:,} vs at {small:,}", large,
                 ours_s=times[large], raw_s=times[small], goal=1.5)  # fmt: skip
    yield figure(AREA, f"folder page at {large:,} vs at {small:,}", large,
                 ours_s=times["folder", large], raw_s=times["folder", small], goal=1.5)  # fmt: skip
    # the folder view of / lists one folder per 1,000 files: its time follows that list
    yield figure(AREA, f"folders page of / at {large:,} vs at {small:,}", large,
                 ours_s=times["folders", large], raw_s=times["folders", small],
                 goal=None)  # fmt: skip
    for name in ("errors", "sites", "sites after 100 changes"):
        yield figure(AREA, f"{name} page at {large:,} vs at {small:,}", large,
                     ours_s=times[name, large], raw_s=times[name, small], goal=1.5)  # fmt: skip
    # the one full read, at the first completion page after the app starts
    yield figure(AREA, f"first sites page at {large:,} vs at {small:,}", large,
                 ours_s=times["sites first", large], raw_s=times["sites first", small],
                 goal=None)  # fmt: skip


def after_changes(tracker: Any, page: Any, n: int, repeat: int) -> float:
    """The best time of ``page`` right after ``n`` writes (untimed), of ``repeat`` tries."""
    times = []
    for r in range(repeat):
        touch(tracker, n, r + 1)
        times.append(once(page))
    return min(times)


if __name__ == "__main__":
    print_table(list(figures("quick" if "--quick" in sys.argv else "full")))
