"""The change feed's answers are bounded in bytes as well as in entries: over many
large elements, ``changes?since=0&limit=10000&elements=1`` stops early with
``"more": true`` and the ``last_seq`` to read on from, every page under the bound (an
entry larger than the bound comes alone), nothing skipped; the HTTP answer is streamed
(chunked, no ``Content-Length``). Embedded and over a real server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import requests

import damas_core
from damas_core.errors import BadRequest
from damas_core.wsgi import make_app

BOUND = 100_000
BIG = "x" * 12_000  # eight of them fill a page
HUGE = "y" * 150_000  # larger than the bound: a page of its own


@pytest.fixture(scope="module")
def tracker() -> Iterator[damas_core.Tracker]:
    t = damas_core.open("memory://", changes_max_bytes=BOUND)
    t.create([{"_id": f"/big/{n:03}", "data": BIG} for n in range(40)])
    t.create({"_id": "/huge", "data": HUGE})
    t.create([{"_id": f"/small/{n:03}"} for n in range(300)])
    t.delete([f"/big/{n:03}" for n in range(0, 40, 7)])  # tombstones among them
    t.update({"_id": "/big/001", "data": BIG + "!"})  # its latest change comes last
    yield t
    t.close()


def expected(tracker: damas_core.Tracker) -> dict[str, int]:
    """Each id's latest seq, read from the store without any bound."""
    _, entries = tracker.storage.changes(0, 100_000)
    return {id: seq for seq, id, _ in entries}


def read_all(page: Callable[[int], tuple[dict[str, Any], int]]) -> list[tuple[dict, int]]:
    """Every page from 0 to the end: ``(answer, its size in bytes)``."""
    pages, since = [], 0
    while True:
        answer, size = page(since)
        pages.append((answer, size))
        if not answer.get("more"):
            assert answer["last_seq"] >= since
            return pages
        assert answer["last_seq"] > since, "no progress"
        since = answer["last_seq"]


def check(tracker: damas_core.Tracker, pages: list[tuple[dict, int]]) -> None:
    seen: dict[str, int] = {}
    for answer, size in pages:
        entries = answer["changes"]
        assert entries, "a page stopped by its size holds something"
        if size > BOUND:  # only an entry larger than the bound, alone
            assert len(entries) == 1 and entries[0]["_id"] == "/huge", size
        if answer.get("more"):
            assert answer["last_seq"] == entries[-1]["seq"]
        for c in entries:
            assert c["_id"] not in seen
            seen[c["_id"]] = c["seq"]
            if not c["deleted"]:
                assert c["element"] == tracker.read(c["_id"])
    assert seen == expected(tracker), "an entry was skipped or repeated"
    assert len(pages) > 5  # the bound cut the feed, not the limit


def test_embedded_pages_are_bounded_and_nothing_is_skipped(tracker):
    def page(since: int) -> tuple[dict[str, Any], int]:
        answer = tracker.changes(since, 10_000, elements=True)
        return answer, len(orjson.dumps(answer))

    check(tracker, read_all(page))
    # without elements the same bound holds (ids may be 4 kB long)
    answer = tracker.changes(0, 10_000)
    assert "more" not in answer and len(answer["changes"]) == len(expected(tracker))


def test_http_pages_are_bounded_streamed_and_nothing_is_skipped(tracker, serve):
    url = serve(make_app(tracker, auth="none"))
    with requests.Session() as http:

        def page(since: int) -> tuple[dict[str, Any], int]:
            r = http.get(
                f"{url}/api/changes/",
                params={"since": since, "limit": 10_000, "elements": 1},
                timeout=30,
            )
            assert r.status_code == 200
            assert "Content-Length" not in r.headers
            assert r.headers.get("Transfer-Encoding") == "chunked"
            return r.json(), len(r.content)

        check(tracker, read_all(page))


def test_the_bound_is_checked():
    with pytest.raises(BadRequest, match="changes_max_bytes"):
        damas_core.open("memory://", changes_max_bytes=10)
