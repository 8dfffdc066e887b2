"""Three file:// sites on one machine: scan -> plan -> transfer -> record."""

from __future__ import annotations

import os
import time

from damas_core.schemas import validate
from damas_core.sync import status

from .conftest import needs_rsync

pytestmark = needs_rsync


def test_every_file_reaches_every_site_byte_identical(sites):
    sites.write("paris", "/shots/a.exr", b"A" * 1000)
    sites.write("tokyo", "/shots/b.exr", b"B" * 10)
    sites.write("lyon", "/edit/c d.mov", b"C")
    sites.run(rounds=2)
    for site in sites.roots:
        assert sites.path(site, "/shots/a.exr").read_bytes() == b"A" * 1000
        assert sites.path(site, "/shots/b.exr").read_bytes() == b"B" * 10
        assert sites.path(site, "/edit/c d.mov").read_bytes() == b"C"
    el = sites.tracker.read("/shots/a.exr")
    assert el["origin"] == "paris" and el["comment"] == "scanned at paris"
    assert el["file_size"] == 1000
    assert el["synced_tokyo"] >= el["time"] and el["synced_lyon"] >= el["time"]
    states = {r["_id"]: r["states"] for r in status(sites.tracker)["files"]}
    assert all(s["state"] == "ok" for row in states.values() for s in row.values())
    # a further round changes nothing and calls no rsync
    reports = sites.run()
    assert all(not r.published and not r.received and r.rsync_calls == 0 for r in reports)


def test_modifications_propagate(sites):
    sites.write("paris", "/a.txt", "v1", mtime=1_000_000)
    sites.run(rounds=2)
    assert sites.path("lyon", "/a.txt").read_text() == "v1"
    sites.write("paris", "/a.txt", "version 2", mtime=1_000_100)
    r = sites.run("paris")[0]
    assert r.modified == ["/a.txt"]
    el = sites.tracker.read("/a.txt")
    assert el["comment"] == "scanned at paris" and el["modified_paris"] == el["time"]
    assert status(sites.tracker)["files"][0]["states"]["tokyo"]["state"] == "outdated"
    sites.run("tokyo", "lyon")
    assert sites.path("tokyo", "/a.txt").read_text() == "version 2"
    assert sites.path("lyon", "/a.txt").read_text() == "version 2"
    # a modification at a site that is not the origin travels back to the origin
    sites.write("tokyo", "/a.txt", "tokyo's v3")
    sites.run("tokyo", "paris", "lyon")
    assert sites.path("paris", "/a.txt").read_text() == "tokyo's v3"
    assert sites.path("lyon", "/a.txt").read_text() == "tokyo's v3"
    assert sites.tracker.read("/a.txt")["origin"] == "paris"
    # every version is in the file's history, the element keeps its publisher's comment
    history = sites.tracker.search_elements("#parent:/a.txt", sort="time")
    assert [h["comment"] for h in history] == [
        "scanned at paris",
        "modified at paris",
        "modified at tokyo",
    ]
    assert [h.get("file_size") for h in history] == [None, len("version 2"), len("tokyo's v3")]
    assert all(h["author"] and h["time"] for h in history)
    assert sites.tracker.read("/a.txt")["comment"] == "scanned at paris"


def test_destination_filtering_keeps_files_away(sites):
    t = sites.tracker
    sites.run()  # every agent is up: paris does not push to them
    sites.write("paris", "/private.txt", "p")
    sites.write("paris", "/only_lyon.txt", "l")
    sites.run("paris")
    t.update(
        [
            {"_id": "/private.txt", "syncEverywhere": False},
            {"_id": "/only_lyon.txt", "sync_tokyo": False},
        ]
    )
    sites.run("tokyo", "lyon")
    assert not sites.path("tokyo", "/private.txt").exists()
    assert not sites.path("lyon", "/private.txt").exists()
    assert not sites.path("tokyo", "/only_lyon.txt").exists()
    assert sites.path("lyon", "/only_lyon.txt").read_text() == "l"
    t.update({"_id": "/private.txt", "sync_lyon": True})
    sites.run("lyon")
    assert sites.path("lyon", "/private.txt").exists()
    states = {r["_id"]: r["states"] for r in status(t)["files"]}
    assert states["/private.txt"]["tokyo"] == {"state": "unwanted"}


def test_priorities_order_the_transfers(sites):
    t = sites.tracker
    sites.run()
    for i in range(4):
        sites.write("paris", f"/f{i}", str(i))
    sites.run("paris")
    t.update([{"_id": f"/f{i}", "sync_priority": p} for i, p in enumerate([0, 5, 1, 9])])
    t.update({"_id": "vol_tokyo", "syncAmountReception": 2})
    r = sites.run("tokyo")[0]
    assert r.received == ["/f3", "/f1"]  # the two highest priorities, highest first
    assert r.rsync_calls == 2  # one call per priority bucket
    r = sites.run("tokyo")[0]
    assert r.received == ["/f2", "/f0"]


def test_deleted_files_are_recorded_not_propagated(sites):
    sites.write("paris", "/gone.txt", "x")
    sites.run(rounds=2)
    os.unlink(sites.path("paris", "/gone.txt"))
    r = sites.run("paris")[0]
    assert r.deleted == ["/gone.txt"]
    el = sites.tracker.read("/gone.txt")
    assert el["deleted"] is True and el["comment"] == "scanned at paris"
    history = sites.tracker.search_elements("#parent:/gone.txt", sort="time")
    assert [h["comment"] for h in history] == ["scanned at paris", "deleted at paris"]
    sites.run(rounds=2)
    assert sites.path("tokyo", "/gone.txt").exists() and sites.path("lyon", "/gone.txt").exists()
    assert not sites.path("paris", "/gone.txt").exists()  # not fetched back either
    # deleting a copy at a non-origin site gets it back
    os.unlink(sites.path("lyon", "/gone.txt"))
    sites.write("paris", "/kept.txt", "k")
    sites.run(rounds=2)
    os.unlink(sites.path("lyon", "/kept.txt"))
    sites.run("lyon", rounds=2)
    assert sites.path("lyon", "/kept.txt").read_text() == "k"


def test_rescan_of_unchanged_tree_writes_nothing(sites):
    for i in range(20):
        sites.write("paris", f"/d{i % 3}/f{i}", str(i))
    sites.run("paris", "tokyo")
    writes = []
    sites.tracker.on("update", lambda s, r: writes.append(r))
    sites.tracker.on("create", lambda s, r: writes.append(r))
    r = sites.agent("paris").scanner.compare(sites.tracker.read("vol_paris"), _files(sites))
    assert not r and not r.publish and not r.update
    r = sites.agent("tokyo").scanner.compare(sites.tracker.read("vol_tokyo"), _files(sites))
    assert not r


def _files(sites):
    from damas_core.sync.volumes import tracked_files

    return tracked_files(sites.tracker)


def test_emission_pushes_to_sites_whose_agent_is_down(sites):
    sites.run("tokyo")
    sites.tracker.update({"_id": "vol_tokyo", "agentStatus": "stopped"})
    sites.write("paris", "/pushed.txt", "p")
    sites.write("lyon", "/pushed_conflict.txt", "lyon's own")  # lyon's agent never ran
    sites.write("paris", "/pushed_conflict.txt", "paris")
    r = sites.run("paris")[0]
    assert sorted(r.emitted) == ["/pushed.txt", "/pushed.txt", "/pushed_conflict.txt"]
    assert sites.path("tokyo", "/pushed.txt").read_text() == "p"
    assert sites.path("lyon", "/pushed.txt").read_text() == "p"
    # an existing copy at a site whose agent is down is never overwritten by a push
    assert sites.path("lyon", "/pushed_conflict.txt").read_text() == "lyon's own"
    assert "waits for its agent" in sites.tracker.read("/pushed_conflict.txt")["syncWait_lyon"]


def test_the_site_that_wrote_the_current_version_deleting_it_deletes_the_file(sites):
    # found by the state machine: lyon changes a file it was sent, then deletes it
    sites.write("paris", "/a.txt", "1:")
    sites.run("paris")  # emitted to tokyo and lyon, whose agents are down
    time.sleep(0.01)
    sites.write("lyon", "/a.txt", "2:")
    assert sites.run("lyon")[0].modified == ["/a.txt"]
    os.unlink(sites.path("lyon", "/a.txt"))
    assert sites.run("lyon")[0].deleted == ["/a.txt"]
    el = sites.tracker.read("/a.txt")
    assert el["deleted"] is True and el["deleted_at"] == "lyon"
    for report in sites.run(rounds=3):
        assert not report.failed and not report.modified and not report.published
    assert sites.tracker.read("/a.txt")["deleted"] is True  # paris's older copy stays old


def test_transfers_record_their_durations_and_the_sites_page_shows_them(sites):
    import html

    from werkzeug.test import Client

    from damas_core.wsgi import make_app

    sites.write("paris", "/shots/a.exr", b"A" * 1000)
    sites.write("tokyo", "/shots/b.exr", b"B" * 10)
    sites.run(rounds=2)
    volumes = {n: sites.tracker.read(f"vol_{n}") for n in sites.roots}
    done = [(n, k) for n in volumes for k in ("reception", "emission") if f"last_{k}" in volumes[n]]
    assert done  # real rsync ran
    for name, kind in done:
        volume = volumes[name]
        validate("volume", volume)  # the durations are what the schema says they are
        assert volume[f"exit_{kind}"] == 0
    for volume in volumes.values():
        for kind in ("reception", "emission"):
            assert (f"{kind}_duration" in volume) == (f"last_{kind}" in volume)
    page = Client(make_app(sites.tracker, auth="none")).get("/sites").get_data(as_text=True)
    page = html.unescape(page)
    agents = page[page.index("<h2>Agents</h2>") :]
    for name, kind in done:
        section = agents[agents.index(f'data-site="{name}"') :]
        section = section[: section.index("</dl>")]
        title = kind.capitalize()
        row = section[section.index(f"<dt>{title}</dt>") :].split("</dd>")[0]
        assert f"{volumes[name][f'{kind}_duration'] / 1000:.1f} s" in row, row


def test_an_agent_names_itself_holder_once_so_a_takeover_stays_written(sites):
    # the holder keys are written when the agent starts; its later status writes leave
    # them alone, else a takeover written between two of them would be undone and the
    # agent taken over would never find out
    sites.run("paris")
    vol = sites.tracker.read("vol_paris")
    assert vol["lastConnectionPid"] == os.getpid()
    sites.tracker.update(
        {"_id": "vol_paris", "lastConnectionHost": "elsewhere", "lastConnectionPid": 9}
    )
    sites.write("paris", "/new.txt", "x")
    sites.run("paris")
    vol = sites.tracker.read("vol_paris")
    assert (vol["lastConnectionHost"], vol["lastConnectionPid"]) == ("elsewhere", 9)
    assert vol["agentStatus"] == "idle"
