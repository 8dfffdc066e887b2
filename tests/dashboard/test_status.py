"""The status model the dashboard and `damas sync status` share, and the command itself."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from damas_core.sync.status import (
    Filters,
    agent_state,
    folders,
    human_size,
    page,
    state_of,
    status,
)

import damas_core
from damas_core.cli import main
from damas_core.errors import BadRequest
from tests.sync.conftest import needs_rsync

EVERYWHERE = {"syncEverywhere": True}


@pytest.mark.parametrize(
    ("element", "expected"),
    [
        ({"time": 5, "synced_t": 5}, {"state": "ok"}),
        ({"time": 9, "synced_t": 5}, {"state": "outdated"}),
        ({"time": 9, "synced_t": 5, "syncError_t": 23}, {"state": "error", "code": 23}),
        ({"time": 9}, {"state": "queued"}),
        ({"time": 9, "syncWait_t": "locked by bo"}, {"state": "waiting", "reason": "locked by bo"}),
        ({"time": 9, "conflict_t": {"incoming": "/a.conflict"}},
         {"state": "conflict", "incoming": "/a.conflict"}),
        ({"time": 9, "sync_t": False}, {"state": "unwanted"}),
        ({"time": 9, "sync_t": False, "synced_t": 3}, {"state": "unwanted", "present": True}),
        ({"time": 9, "deleted": True, "synced_t": 9}, {"state": "unwanted"}),
    ],
    ids=["ok", "outdated", "error", "queued", "waiting", "conflict", "unwanted", "present",
         "deleted"],
)  # fmt: skip
def test_each_state_of_a_file_at_a_site(element, expected):
    assert state_of({"_id": "/a", "origin": "p", **element}, "t", EVERYWHERE) == expected


def test_agent_states_from_the_volume_and_its_heartbeat():
    params, now = {"agentTimeout": 60}, 1_000_000
    fresh = {"lastConnection": now - 1000}
    assert agent_state({"agentStatus": "receiving", **fresh}, params, now) == "on"
    assert agent_state({"agentStatus": "idle", **fresh}, params, now) == "idle"
    assert agent_state({"agentStatus": "unmounted", **fresh}, params, now) == "unmounted"
    assert agent_state({"agentStatus": "stopped"}, params, now) == "stopped"
    assert agent_state({"agentStatus": "error", **fresh}, params, now) == "down"
    assert agent_state({"agentStatus": "idle", "lastConnection": 0}, params, now) == "down"
    assert agent_state({}, params, now) == "down"


def test_sizes_read_as_people_read_them():
    assert [human_size(n) for n in (None, 0, 999, 2048, 1024**2 - 1, 3 * 1024**2, 7 * 1024**4)] == [
        "—", "0 B", "999 B", "2.0 KiB", "1.0 MiB", "3.0 MiB", "7.0 TiB",
    ]  # fmt: skip


def test_filters_are_checked_when_made():
    for bad in ({"states": ("shiny",)}, {"sort": "color"}, {"prefix": "seq"}, {"limit": 0},
                {"limit": 5000}, {"skip": -1}):  # fmt: skip
        with pytest.raises(BadRequest):
            Filters(**bad)


def _files(tracker, n, **keys):
    tracker.publish(
        [{"_id": f"/p/{i:04}", "origin": "paris", "comment": "c", "file_size": i, **keys}
         for i in range(n)]
    )  # fmt: skip


def test_a_state_filter_reads_past_batches_until_the_page_is_full(tracker):
    _files(tracker, 1200)
    tracker.update([{"_id": f"/p/{i:04}", "sync_tokyo": True} for i in range(1190, 1200)])
    got = page(tracker, Filters(states=("queued",), sites=("tokyo",), limit=4))
    assert [r["_id"] for r in got["files"]] == ["/p/1190", "/p/1191", "/p/1192", "/p/1193"]
    assert got["shown"] == ["tokyo"] and got["next"] == {"skip": 1194}
    rest = page(tracker, Filters(states=("queued",), sites=("tokyo",), **got["next"]))
    assert len(rest["files"]) == 6 and rest["next"] is None


def test_the_unfiltered_view_pages_through_every_file_once(make_tracker):
    tracker = make_tracker()  # on every backend
    _files(tracker, 230)  # each with a history child, whose id is a ULID
    # long ids sharing their key's first bytes (their keys end with a digest, not in
    # id order), and ids beyond ASCII
    long = "/p/" + "long" * 200
    tracker.create([{"_id": "!before the paths"}, {"_id": "/p/0100x", "note": "no origin"},
                    {"_id": "#hash"}, {"_id": "/p/é", "origin": "paris"},
                    {"_id": "/p/\U0001f600", "origin": "paris"}]
                   + [{"_id": long + tail, "origin": "paris"} for tail in ("z", "a", "m", "")])  # fmt: skip
    files = tracker.search("origin:* -#parent:*")
    for prefix, limit in (("", 40), ("", 1), ("/p/", 7)):
        seen, filters = [], Filters(limit=limit, prefix=prefix)
        while True:
            got = page(tracker, filters)
            seen += [r["_id"] for r in got["files"]]
            if got["next"] is None:
                break
            assert list(got["next"]) == ["after"] and got["next"]["after"] == seen[-1]
            filters = Filters(limit=limit, prefix=prefix, **got["next"])
        assert seen == sorted(files) and len(files) == 236
    assert page(tracker, Filters(limit=40, after="\U0010ffff"))["files"] == []
    got = page(tracker, Filters(limit=2, after=long + "a"))
    assert [r["_id"] for r in got["files"]] == [long + "m", long + "z"]


def test_after_is_an_id_for_the_id_order(tracker):
    for wrong in (dict(after="/a", sort="time"), dict(after="/a", states=("ok",)),
                  dict(after=3)):  # fmt: skip
        with pytest.raises(BadRequest) as e:
            Filters(**wrong)
        assert e.value.key == "after"


def test_folders_count_what_is_under_them(tracker):
    tracker.publish(
        [{"_id": i, "origin": "paris", "comment": "c", "file_size": 10, "sync_tokyo": True}
         for i in ("/s/a/1", "/s/a/deep/2", "/s/b/3", "/s/top", "/s/pkg/")]
    )  # fmt: skip
    tracker.update({"_id": "/s/a/1", "synced_tokyo": 10**13})
    got = folders(tracker, "/s")
    assert got["prefix"] == "/s/" and got["files"] == 2  # /s/top and the package /s/pkg/
    a = got["folders"][0]
    assert (a["path"], a["files"], a["bytes"]) == ("/s/a/", 2, 20)
    assert (
        a["completion"]["tokyo"]["files_ok"] == 1 and a["completion"]["tokyo"]["bytes_wanted"] == 20
    )
    assert [f["path"] for f in got["folders"]] == ["/s/a/", "/s/b/"]


def test_status_filters_by_prefix_state_and_site(tracker):
    _files(tracker, 3)
    tracker.publish({"_id": "/q/x", "origin": "paris", "comment": "c", "sync_tokyo": True})
    data = status(tracker, prefix="/q/", sites=["tokyo"])
    assert data["sites"] == ["tokyo"] and [r["_id"] for r in data["files"]] == ["/q/x"]
    assert [v["name"] for v in data["volumes"]] == ["tokyo"]
    assert status(tracker, states=["queued"])["files"][0]["_id"] == "/q/x"
    with pytest.raises(BadRequest, match="no site named 'mars'"):
        status(tracker, sites=["mars"])


def _damas(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_the_command_shows_waiting_reasons_sizes_and_the_sites(tracker, tmp_path):
    tracker.publish(
        [{"_id": "/seq06/a.exr", "origin": "paris", "comment": "c", "file_size": 5 * 1024**2,
          "sync_tokyo": True, "syncWait_tokyo": "locked by bo"},
         {"_id": "/seq07/[/b]x.exr", "origin": "paris", "comment": "c", "file_size": 3}]
    )  # fmt: skip
    tracker.update({"_id": "vol_tokyo", "agentStatus": "stopped"})
    store = tracker.storage.url
    tracker.close()
    shown = _damas("sync", "status", "--store", store, "--prefix", "/seq06/")
    assert shown.exit_code == 0, shown.output
    out = shown.output
    assert "/seq06/a.exr" in out and "seq07" not in out
    assert "waiting: locked by bo" in out and "5.0 MiB" in out
    assert "stopped" in out and "down" in out  # the sites panel
    markup = _damas("sync", "status", "--store", store, "--prefix", "/seq07/")
    assert "[/b]x.exr" in markup.output  # shown as text, not read as markup
    only = _damas("sync", "status", "--json", "--store", store, "--state", "waiting",
                  "--site", "tokyo")  # fmt: skip
    data = json.loads(only.output)
    assert data["sites"] == ["tokyo"] and [r["_id"] for r in data["files"]] == ["/seq06/a.exr"]
    bad = CliRunner().invoke(main, ["sync", "status", "--store", store, "--state", "shiny"])
    assert bad.exit_code != 0 and "shiny" in bad.output


@needs_rsync
def test_real_agents_give_the_states_the_page_shows(tmp_path):
    import damas_core
    from tests.sync.conftest import Sites

    t = damas_core.open(f"lmdb://{tmp_path}/store")
    try:
        sites = Sites(tmp_path, t, walker="scandir")
        t.update({"_id": "vol_paris", "enableEmission": False})  # lyon waits for its agent
        sites.write("paris", "/a.exr", "frame")
        sites.run("paris", "tokyo")
        row = page(t, Filters())["files"][0]
        assert {s: v["state"] for s, v in row["states"].items()} == {
            "lyon": "queued", "paris": "ok", "tokyo": "ok",
        }  # fmt: skip
        sites.run("lyon")
        row = page(t, Filters())["files"][0]
        assert row["states"]["lyon"] == {"state": "ok"}
    finally:
        t.close()


def test_the_sites_cache_follows_the_change_feed(tracker):
    from damas_core.sync.status import SitesCache

    cache = SitesCache(tracker)
    first = cache.get()
    assert [v["name"] for v in first[0]] == ["lyon", "paris", "tokyo"]
    _files(tracker, 3)
    tracker.comment({"#parent": "/p/0001", "comment": "a comment is no volume"})
    assert cache.get() is first  # files and comments changed: nothing read again
    tracker.update({"_id": "vol_tokyo", "agentStatus": "idle", "rsync_env": {"K": "v"}})
    vols = cache.get()[0]
    assert next(v for v in vols if v["name"] == "tokyo")["agentStatus"] == "idle"
    assert all("rsync_env" not in v for v in vols)
    tracker.create({"_id": "later", "comment": "not yet a volume"})
    tracker.update({"_id": "later", "name": "rome", "url": "file:///r/"})  # it became one
    assert [v["name"] for v in cache.get()[0]] == ["lyon", "paris", "rome", "tokyo"]
    tracker.delete("vol_lyon")
    assert [v["name"] for v in cache.get()[0]] == ["paris", "rome", "tokyo"]
    from damas_core.sync.volumes import set_global_parameters

    set_global_parameters(tracker, {"syncEverywhere": True})
    assert cache.get()[1]["syncEverywhere"] is True


def test_the_sites_cache_reads_the_feed_in_pages(tracker):
    from damas_core.sync.status import SitesCache

    cache = SitesCache(tracker, batch=10, rounds=3)
    first = cache.get()
    _files(tracker, 25)  # 25 files and 25 history children: five pages of the feed
    assert cache.get() is not first  # more than three pages: read again
    second = cache.get()
    more = [{"_id": f"/q/{i}", "origin": "paris", "comment": "c"} for i in range(9)]
    tracker.publish(more)  # 18 changes: two pages
    assert cache.get() is second
    tracker.publish({"_id": "/q/last", "origin": "paris", "comment": "c"})
    tracker.update({"_id": "vol_paris", "agentStatus": "idle"})  # behind a page of files
    assert cache.get()[0][1]["agentStatus"] == "idle"


def test_the_command_filters_through_a_server_too(tracker, tmp_path, monkeypatch):
    from damas_core.wsgi import make_app
    from tests.http.conftest import serving

    monkeypatch.setenv("HOME", str(tmp_path))  # no saved token of the user's
    tracker.publish(
        [{"_id": "/seq06/a b/[x].exr", "origin": "paris", "comment": "c", "file_size": 3},
         {"_id": "/seq07/b.exr", "origin": "paris", "comment": "c"}]
    )  # fmt: skip
    with serving(make_app(tracker, auth="none")) as url:
        shown = _damas("sync", "status", "--json", "--server", url, "--prefix", "/seq06/a b/")
    assert shown.exit_code == 0, shown.output
    assert [r["_id"] for r in json.loads(shown.output)["files"]] == ["/seq06/a b/[x].exr"]


# -- transferring: a queued file in a bucket an agent is running ---------------------------

NOW = 10**12
ON = {"agentStatus": "receiving", "lastConnection": NOW - 1000}


def _bucket(site: str, *ids: str) -> dict:
    from damas_core.sync.transferring import bucket_record

    return bucket_record(site, ids, NOW - 500)


@pytest.mark.parametrize(
    ("element", "expected"),
    [
        ({"time": 9}, {"state": "queued", "detail": "transferring"}),
        ({"time": 5, "synced_t": 5}, {"state": "ok"}),
        ({"time": 9, "synced_t": 5}, {"state": "outdated"}),
        ({"time": 9, "syncError_t": 23}, {"state": "error", "code": 23}),
        ({"time": 9, "syncWait_t": "locked by bo"}, {"state": "waiting", "reason": "locked by bo"}),
        ({"time": 9, "sync_t": False}, {"state": "unwanted"}),
    ],
    ids=["queued", "ok", "outdated", "error", "waiting", "unwanted"],
)  # fmt: skip
def test_only_a_queued_file_in_a_running_bucket_is_transferring(element, expected):
    el = {"_id": "/a", "origin": "p", **element}
    assert state_of(el, "t", EVERYWHERE, moving=True) == expected


def test_in_flight_reads_the_buckets_of_running_agents_only():
    from damas_core.sync.status import in_flight

    params = {"agentTimeout": 60}
    vols = [
        {"_id": "v1", **ON, "transferring": _bucket("tokyo", "/b", "/a")},
        # paris emits to lyon while lyon's own agent receives from elsewhere
        {"_id": "v2", **ON, "agentStatus": "emitting", "transferring": _bucket("lyon", "/c")},
        {"_id": "v3", **ON, "transferring": _bucket("lyon", "/d")},
        # a stopped agent, a silent one (its heartbeat older than agentTimeout), an idle
        # one and one in error run no bucket, whatever their volume still says
        {"_id": "v4", "agentStatus": "stopped", "transferring": _bucket("rome", "/e")},
        {"_id": "v5", "agentStatus": "receiving", "lastConnection": NOW - 61_000,
         "transferring": _bucket("rome", "/f")},
        {"_id": "v6", **ON, "agentStatus": "idle", "transferring": _bucket("rome", "/g")},
        {"_id": "v7", **ON, "agentStatus": "error", "transferring": _bucket("rome", "/h")},
        # what is not a record is no bucket
        {"_id": "v8", **ON, "transferring": "/i"},
        {"_id": "v9", **ON, "transferring": {"site": "rome", "ids": "/j"}},
        {"_id": "v10", **ON},
    ]  # fmt: skip
    assert in_flight(vols, params, NOW) == {"tokyo": {"/a", "/b"}, "lyon": {"/c", "/d"}}


def test_a_bucket_record_is_bounded_and_the_schema_says_the_same():
    from damas_core.schemas import validate
    from damas_core.sync.transferring import MAX_IDS, bucket_record

    ids = [f"/seq/{i:05}.exr" for i in range(MAX_IDS * 3, 0, -1)]
    record = bucket_record("tokyo", ids, NOW)
    assert record["count"] == MAX_IDS * 3 and record["since"] == NOW
    assert record["ids"] == sorted(ids)[:MAX_IDS]  # the first ones rsync copies
    volume = {"_id": "v", "name": "paris", "url": "file:///p/", "transferring": record}
    validate("volume", volume)
    too_many = {**record, "ids": sorted(ids)[: MAX_IDS + 1]}
    with pytest.raises(BadRequest, match="transferring"):
        validate("volume", {**volume, "transferring": too_many})
    with pytest.raises(BadRequest, match="transferring"):
        validate("volume", {**volume, "transferring": {"site": "tokyo", "ids": []}})


def test_a_page_the_status_and_the_command_show_transferring(tracker):
    tracker.publish(
        [{"_id": i, "origin": "paris", "comment": "c", "file_size": 3, "sync_tokyo": True}
         for i in ("/a.exr", "/b.exr")]
    )  # fmt: skip
    record = {"transferring": _bucket("tokyo", "/a.exr", "/elsewhere.exr")}
    tracker.update({"_id": "vol_tokyo", "agentStatus": "receiving", **record,
                    "lastConnection": int(time.time() * 1000)})  # fmt: skip
    states = {r["_id"]: r["states"]["tokyo"] for r in page(tracker, Filters())["files"]}
    assert states == {"/a.exr": {"state": "queued", "detail": "transferring"},
                      "/b.exr": {"state": "queued"}}  # fmt: skip
    by_state = page(tracker, Filters(states=("queued",), sites=("tokyo",)))["files"]
    assert [r["states"]["tokyo"].get("detail") for r in by_state] == ["transferring", None]
    data = status(tracker)
    assert data["completion"]["tokyo"]["states"]["queued"] == 2  # still queued: not copied yet
    store = tracker.storage.url
    tracker.close()
    shown = _damas("sync", "status", "--store", store, "--site", "tokyo")
    assert shown.exit_code == 0, shown.output
    assert "⇄ transferring" in shown.output and "↻ queued" in shown.output
    as_json = json.loads(_damas("sync", "status", "--json", "--store", store).output)
    assert as_json["files"][0]["states"]["tokyo"] == {"state": "queued", "detail": "transferring"}
    # the agent stopped: nothing is in flight any more
    again = damas_core.open(store)
    again.update({"_id": "vol_tokyo", "agentStatus": "stopped"})
    again.close()
    assert "transferring" not in _damas("sync", "status", "--store", store).output
