"""Incremental cycles: an agent reads the tracker once, then only what the change feed
reports, over a real server on LMDB; its view survives a restart in its state dir."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import orjson
from damas_core.sync import Agent
from damas_core.sync.tracker_api import TrackerAPI
from damas_core.sync.view import TrackerView, is_file

import damas_core
from damas_core.client import connect
from damas_core.wsgi import make_app
from tests.http.conftest import serving

from .conftest import needs_rsync


class Counted:
    """A WSGI app that records each request: (method, path, bytes in, bytes out, answer)."""

    def __init__(self, app) -> None:
        self.app = app
        self.calls: list[tuple[str, str, int, int, bytes]] = []

    def __call__(self, environ, start_response):
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = b"".join(self.app(environ, start_response))
        self.calls.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], size, len(body), body))
        return [body]

    def paths(self) -> list[str]:
        return [p for _, p, *_ in self.calls]

    def file_elements_read(self) -> list[str]:
        """Ids of file elements the answers carried (reads, searches, the feed)."""
        out = []
        for _, path, _, _, body in self.calls:
            if not body.startswith((b"{", b"[")) or path.startswith(
                ("/api/update", "/api/publish")
            ):
                continue
            answer = orjson.loads(body)
            items = answer.get("changes", []) if isinstance(answer, dict) else answer
            for item in items:
                el = item.get("element", item) if isinstance(item, dict) else None
                if isinstance(el, dict) and isinstance(el.get("_id"), str) and is_file(el):
                    out.append(el["_id"])
        return out


@contextmanager
def served(tracker) -> Iterator[tuple[Counted, object]]:
    app = Counted(make_app(tracker, auth="none"))
    with serving(app) as url, connect(url) as client:
        yield app, client


@needs_rsync
def test_idle_cycles_read_only_an_empty_feed_page(sites):
    for i in range(30):
        sites.write("paris", f"/d{i % 3}/f{i}.txt", str(i))
    with served(sites.tracker) as (app, client):
        assert isinstance(client, TrackerAPI) and isinstance(sites.tracker, TrackerAPI)
        paris = Agent(client, "vol_paris", settle=0, walker=sites.walker)
        tokyo = Agent(client, "vol_tokyo", settle=0, walker=sites.walker)
        assert len(paris.run_once().published) == 30  # and emitted: tokyo's agent is down
        tokyo.run_once()
        assert len(list(sites.roots["tokyo"].rglob("*.txt"))) == 30
        for _ in range(2):  # each reads back what the other wrote
            paris.run_once()
            tokyo.run_once()
        app.calls.clear()
        for _ in range(3):
            assert not paris.run_once().published
            assert not tokyo.run_once().received
        assert app.file_elements_read() == []
        assert not any(p.startswith(("/api/search", "/api/read")) for p in app.paths())
        assert app.paths().count("/api/changes/") == 6
        sent = sum(size for _, _, size, _, _ in app.calls) / 6
        assert sent < 4096  # bytes per idle cycle: the agent's own status writes
        # a change elsewhere: the next cycle reads that element, and fetches the file
        app.calls.clear()
        sites.write("paris", "/d1/f4.txt", "four, longer")
        assert paris.run_once().modified == ["/d1/f4.txt"]
        assert tokyo.run_once().received == ["/d1/f4.txt"]
        assert app.file_elements_read() == ["/d1/f4.txt"]  # tokyo's feed page
    assert sites.path("tokyo", "/d1/f4.txt").read_text() == "four, longer"


def test_a_restarted_agent_reads_only_what_changed_while_it_was_stopped(sites, tmp_path):
    sites.tracker.update({"_id": "vol_paris", "enableReception": False, "enableEmission": False})
    for i in range(10):
        sites.write("paris", f"/f{i}.txt", str(i))
    state = str(tmp_path / "state paris")
    with served(sites.tracker) as (app, client):
        paris = Agent(client, "vol_paris", settle=0, walker=sites.walker, state_dir=state)
        assert len(paris.run_once().published) == 10
        paris.run_once()
        paris.close()
        sites.tracker.update({"_id": "/f3.txt", "sync_tokyo": True})  # while it is stopped
        app.calls.clear()
        again = Agent(client, "vol_paris", settle=0, walker=sites.walker, state_dir=state)
        assert sorted(again.view.files) == [f"/f{i}.txt" for i in range(10)]
        r = again.run_once()
        assert not r.published and not r.modified and r.scanned == 10
        assert app.file_elements_read() == ["/f3.txt"]
        assert again.view.files["/f3.txt"]["sync_tokyo"] is True
        again.close()


def test_a_view_of_another_store_is_read_again(tmp_path):
    first = damas_core.open(f"lmdb://{tmp_path}/one")
    for i in range(5):
        first.publish({"_id": f"/a{i}", "origin": "paris", "comment": "c"})
    first.update([{"_id": f"/a{i}", "n": i} for i in range(5)])
    path = str(tmp_path / "view")
    view = TrackerView(first, path)
    assert view.refresh().full and len(view.files) == 5
    view.close()
    # the same state dir against a store restored from an older copy (its feed is behind)
    other = damas_core.open(f"lmdb://{tmp_path}/two")
    other.publish({"_id": "/b", "origin": "tokyo", "comment": "c"})
    view = TrackerView(other, path)
    assert sorted(view.files) == [f"/a{i}" for i in range(5)]  # what it kept
    done = view.refresh()
    assert done.full and sorted(view.files) == ["/b"]
    assert not view.refresh().full and view.refresh().read == 0
    view.close()
    first.close()
    other.close()


def test_the_view_keeps_volumes_and_parameters_current(tracker):
    from damas_core.sync.volumes import create_volume, set_global_parameters

    view = TrackerView(tracker)
    view.refresh()
    assert view.volumes() == [] and view.parameters()["syncEverywhere"] is False
    create_volume(tracker, {"_id": "v1", "name": "paris", "url": "file:///p/"})
    set_global_parameters(tracker, {"syncEverywhere": True})
    tracker.create({"_id": "/not-a-file"})  # no origin: not a file element
    view.refresh()
    assert [v["_id"] for v in view.volumes()] == ["v1"]
    assert view.parameters()["syncEverywhere"] is True and view.files == {}
    tracker.delete("v1")
    view.refresh()
    assert view.volumes() == [] and view.volume("v1") is None


def test_a_refresh_reads_on_past_pages_the_feed_cut_for_their_size(tmp_path):
    # pages cut by the feed's byte bound are short but say "more": a later refresh still
    # takes every change, not only the first page's
    tracker = damas_core.open(f"lmdb://{tmp_path}/store", changes_max_bytes=4096)
    view = TrackerView(tracker, str(tmp_path / "view"))
    view.refresh()
    tracker.publish(
        [{"_id": f"/f{i}", "origin": "paris", "comment": "c", "pad": "x" * 1000} for i in range(20)]
    )
    assert tracker.changes(view.last_seq, 1000, elements=True).get("more")
    done = view.refresh()
    assert sorted(view.files) == sorted(f"/f{i}" for i in range(20))
    assert done.requests > 1
    view.close()
    tracker.close()
