"""The dashboard's pages through WSGI: sign-in, CSRF, permissions, escaping, paging."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import quote

import pytest
from damas_core.sync.volumes import update_volume
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

from damas_core.dashboard.app import CSP
from damas_core.wsgi import make_app

from .conftest import Browser, csrf_of

HOSTILE = [
    "/x/<img src=x onerror=alert(1)>.exr",
    "/x/[/b] [red]bold[/red].exr",
    "/x/quote\"d 'single'.exr",
    "/x/\u202egnp.exe\u200f.exr",
    "/x/" + "l" * 4093,  # 4096 characters
]


def _publish(tracker, file_id, **keys):
    tracker.publish({"_id": file_id, "origin": "paris", "comment": "new", **keys})


# -- sign-in ------------------------------------------------------------------------------


def test_pages_need_a_signed_in_user(browser):
    b = browser()
    answer = b.get("/?q=a")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/signin?next=%2F%3Fq%3Da"
    page = b.get("/signin")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'name="username"' in html and 'name="password"' in html
    assert b.get("/cells?id=/a").status_code == 401


def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_revokes_it(browser, app):
    b = browser()
    answer = b.sign_in("ula")
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    header = next(h for h in answer.headers.getlist("Set-Cookie") if h.startswith("token="))
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/" in header
    token = b.cookie("token").value
    assert b.get("/").status_code == 200
    assert (
        Client(app).get("/api/verify/", headers={"Authorization": f"Bearer {token}"}).json["_id"]
        == "@ula"
    )
    out = b.form("/", "/signout", {})
    assert out.status_code == 303 and out.headers["Location"] == "/signin"
    assert b.get("/").status_code == 303
    verify = Client(app).get("/api/verify/", headers={"Authorization": f"Bearer {token}"})
    assert verify.status_code == 401  # revoked on the server, not only forgotten


def test_a_wrong_password_says_so_and_the_rate_limit_applies(tracker):
    b = Browser(make_app(tracker, auth="jwt", sign_in_attempts=2))
    for _ in range(2):
        answer = b.sign_in("ula", "wrong")
        assert answer.status_code == 401
        assert "Invalid username or password." in answer.get_data(as_text=True)
        assert b.cookie("token") is None
    answer = b.sign_in("ula")  # even the right password waits now
    assert answer.status_code == 429 and int(answer.headers["Retry-After"]) >= 1
    assert b.cookie("token") is None


def test_sign_in_goes_back_only_to_a_page_of_this_server(browser):
    b = browser()
    for target, where in (
        ("/sites", "/sites"),
        ("/?q=a%20b", "/?q=a%20b"),
        ("//evil.example/", "/"),
        ("https://e.x/", "/"),
        ("/\\evil.example/", "/"),
        ("/\t/evil.example/", "/"),
        ("/\r\nSet-Cookie: x=1", "/"),
    ):
        answer = b.form(
            "/signin", "/signin", {"username": "ula", "password": "ula-pw", "next": target}
        )
        assert answer.headers["Location"] == where


# -- CSRF ---------------------------------------------------------------------------------


def test_a_form_without_the_csrf_field_of_its_cookie_does_nothing(browser, tracker):
    _publish(tracker, "/a.exr")
    b = browser("ula")
    assert b.post("/file", {"id": "/a.exr", "action": "lock"}).status_code == 403
    other = browser("ula")
    foreign = csrf_of(other.get("/").get_data(as_text=True))  # another browser's field
    assert b.post("/file", {"id": "/a.exr", "action": "lock", "csrf": foreign}).status_code == 403
    assert b.post("/signin", {"username": "ula", "password": "ula-pw"}).status_code == 403
    assert "lock" not in tracker.read("/a.exr")
    assert b.form("/", "/file", {"id": "/a.exr", "action": "lock"}).status_code == 303
    assert tracker.read("/a.exr")["lock"] == "ula"


def test_file_pages_and_actions_are_for_files_only(browser, tracker):
    eddie = browser("eddie")
    answer = eddie.form("/", "/file", {"id": "@ula", "action": "priority", "priority": "9"})
    assert answer.status_code == 404 and "sync_priority" not in tracker.read("@ula")
    assert eddie.get("/file?id=@ula").status_code == 404
    assert eddie.get("/file?id=vol_paris").status_code == 404


def test_the_api_still_refuses_cookie_writes_that_are_not_json(browser, tracker):
    _publish(tracker, "/a.exr")
    b = browser("ula")
    answer = b.client.put("/api/lock/", data="/a.exr", content_type="text/plain")
    assert answer.status_code == 403
    assert b.client.put("/api/lock/", json="/a.exr").status_code == 200


# -- permissions --------------------------------------------------------------------------


def test_a_guest_sees_no_write_control_and_is_refused_when_forcing_one(browser, tracker):
    _publish(tracker, "/a.exr")
    b = browser("gus")
    html = b.get("/file?id=/a.exr").get_data(as_text=True)
    assert 'value="lock"' not in html and 'name="comment"' not in html
    assert 'name="priority"' not in html
    for data in ({"action": "lock"}, {"action": "comment", "comment": "hi"}):
        answer = b.form("/", "/file", {"id": "/a.exr", **data})
        assert answer.status_code == 403, data
    assert "lock" not in tracker.read("/a.exr")
    assert tracker.search('#parent:"/a.exr" comment:hi') == []


def test_a_user_locks_unlocks_and_comments_but_does_not_edit(browser, tracker):
    _publish(tracker, "/a.exr")
    b = browser("ula")
    html = b.get("/file?id=/a.exr").get_data(as_text=True)
    assert 'value="lock"' in html and 'name="comment"' in html and 'name="priority"' not in html
    assert b.form("/", "/file", {"id": "/a.exr", "action": "lock"}).status_code == 303
    page = b.get("/file?id=/a.exr").get_data(as_text=True)
    assert "locked by <bdi>ula</bdi>" in page
    assert b.form("/", "/file", {"id": "/a.exr", "action": "unlock"}).status_code == 303
    assert "lock" not in tracker.read("/a.exr")
    done = b.form(
        "/", "/file", {"id": "/a.exr", "action": "comment", "comment": "<b>looks</b> good"}
    )
    assert done.status_code == 303
    page = b.get("/file?id=/a.exr").get_data(as_text=True)
    assert "&lt;b&gt;looks&lt;/b&gt; good" in page and "<bdi>ula</bdi>" in page
    refused = b.form("/", "/file", {"id": "/a.exr", "action": "priority", "priority": "5"})
    assert refused.status_code == 403 and "sync_priority" not in tracker.read("/a.exr")


def test_someone_elses_lock_is_a_clear_conflict(browser, tracker):
    _publish(tracker, "/a.exr")
    tracker.as_user("eddie").lock("/a.exr")
    answer = browser("ula").form("/", "/file", {"id": "/a.exr", "action": "lock"})
    assert answer.status_code == 409 and "locked by eddie" in answer.get_data(as_text=True)


def test_an_editor_sets_priority_switches_a_site_and_retries_a_copy(browser, tracker):
    _publish(tracker, "/a.exr", sync_tokyo=True, syncError_tokyo=23, syncFailures_tokyo=2)
    b = browser("eddie")
    page = b.get("/file?id=/a.exr").get_data(as_text=True)
    assert "rsync exit code 23" in page and "Retry at tokyo" in page
    assert (
        b.form("/", "/file", {"id": "/a.exr", "action": "retry", "site": "tokyo"}).status_code
        == 303
    )
    assert "syncError_tokyo" not in tracker.read("/a.exr")
    assert "syncFailures_tokyo" not in tracker.read("/a.exr")
    b.form("/", "/file", {"id": "/a.exr", "action": "priority", "priority": "7"})
    assert tracker.read("/a.exr")["sync_priority"] == 7
    b.form("/", "/file", {"id": "/a.exr", "action": "sync", "site": "lyon", "value": "off"})
    assert tracker.read("/a.exr")["sync_lyon"] is False
    b.form("/", "/file", {"id": "/a.exr", "action": "sync", "site": "lyon", "value": "default"})
    assert "sync_lyon" not in tracker.read("/a.exr")
    bad = b.form("/", "/file", {"id": "/a.exr", "action": "sync", "site": "mars", "value": "on"})
    assert bad.status_code == 400 and "no site &#39;mars&#39;" in bad.get_data(as_text=True)


def test_only_admins_edit_sites_and_the_schema_decides(browser, tracker):
    ada = browser("ada")
    page = ada.get("/sites").get_data(as_text=True)
    assert 'name="syncAmountReception"' in page
    answer = ada.form("/sites", "/sites", {"volume": "vol_tokyo", "enableScans": "on",
                                           "syncAmountReception": "50"})  # fmt: skip
    assert answer.status_code == 303
    vol = tracker.read("vol_tokyo")
    assert vol["syncAmountReception"] == 50 and vol["enableScans"] is True
    assert vol["enableReception"] is False  # an unticked box switches it off
    bad = ada.form("/sites", "/sites", {"volume": "vol_tokyo", "syncAmountReception": "-1"})
    assert bad.status_code == 400 and tracker.read("vol_tokyo")["syncAmountReception"] == 50
    ula = browser("ula")
    assert 'name="syncAmountReception"' not in ula.get("/sites").get_data(as_text=True)
    forced = ula.form("/", "/sites", {"volume": "vol_tokyo", "syncAmountReception": "9"})
    assert forced.status_code == 403 and tracker.read("vol_tokyo")["syncAmountReception"] == 50


# -- what the pages show ------------------------------------------------------------------


def test_every_page_has_a_strict_policy_and_no_inline_code(browser, tracker):
    _publish(tracker, "/a.exr", syncError_tokyo=12)
    b = browser("ada")
    for path in ("/", "/folders", "/sites", "/file?id=/a.exr", "/signin", "/nowhere"):
        answer = b.get(path)
        assert answer.headers["Content-Security-Policy"] == CSP, path
        html = answer.get_data(as_text=True)
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
        assert re.findall(r"<script(?![^>]*\bsrc=)", html) == [], path
        assert not re.search(r"\sstyle=|\son[a-z]+=", html), path


@pytest.mark.parametrize("file_id", HOSTILE, ids=["img", "markup", "quotes", "rtl", "long"])
def test_hostile_names_are_shown_as_text(browser, tracker, file_id):
    _publish(tracker, file_id, comment=file_id, lock_note=file_id)
    tracker.comment({"#parent": file_id, "comment": file_id})
    b = browser("ada")
    for path in ("/", f"/?prefix={'/x/'}", "/folders?prefix=/x/"):
        html = b.get(path).get_data(as_text=True)
        assert "<img src=x" not in html
    from urllib.parse import quote

    page = b.get("/file?id=" + quote(file_id, safe=""))
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<img src=x" not in html
    escaped = file_id.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = escaped.replace('"', "&#34;").replace("'", "&#39;")
    assert escaped in html
    cells = b.get("/cells?id=" + quote(file_id, safe=""))
    assert list(cells.json) == [file_id]


def test_the_table_pages_filters_and_sorts_on_the_server(browser, tracker):
    tracker.publish(
        [{"_id": f"/seq{i % 3}/f{i:03}.exr", "origin": "paris", "comment": "c", "file_size": i,
          "sync_tokyo": i % 2 == 0} for i in range(250)]
    )  # fmt: skip
    b = browser("ula")
    first = b.get("/").get_data(as_text=True)
    assert first.count('<tr data-file="') == 100
    assert 'data-site="lyon"' in first
    ids = sorted(f"/seq{i % 3}/f{i:03}.exr" for i in range(250))
    following = re.findall(r'<a href="([^"]+)" rel="next">', first)
    assert following == ["/?after=" + quote(ids[99], safe="")]  # the last id shown
    second = b.get(following[0]).get_data(as_text=True)
    assert re.findall(r'<tr data-file="([^"]+)"', second) == ids[100:200]
    last = b.get("/?after=" + quote(ids[199], safe="")).get_data(as_text=True)
    assert last.count('<tr data-file="') == 50 and 'rel="next"' not in last
    assert 'href="/?">First</a>' in last
    seq1 = b.get("/?prefix=/seq1/&limit=1000").get_data(as_text=True)
    assert seq1.count('<tr data-file="') == 83 and "/seq0/" not in seq1
    queued = b.get("/?state=queued&site=tokyo&limit=1000").get_data(as_text=True)
    assert queued.count('<tr data-file="') == 125
    assert 'data-site="paris"' not in queued and 'data-state="unwanted"' not in queued
    paged = b.get("/?state=queued&site=tokyo&limit=60").get_data(as_text=True)
    assert paged.count('<tr data-file="') == 60
    ids = re.findall(r'<tr data-file="([^"]+)"', paged)
    while 'rel="next"' in paged:
        following = re.search(r'href="([^"]+)" rel="next"', paged).group(1)
        paged = b.get(following.replace("&amp;", "&")).get_data(as_text=True)
        ids += re.findall(r'<tr data-file="([^"]+)"', paged)
    assert len(ids) == len(set(ids)) == 125  # three pages, none twice
    big = b.get("/?sort=-file_size&limit=1").get_data(as_text=True)
    assert "f249.exr" in big
    found = b.get("/?q=" + "file_size%3E=245").get_data(as_text=True)
    assert found.count('<tr data-file="') == 5


def test_a_query_error_is_shown_at_its_position(browser):
    answer = browser("ula").get('/?q=type:shot%20name:"open')
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert "unterminated quoted string at position 15" in html
    assert "<code>type:shot name:<mark>&#34;</mark>open</code>" in html
    bad = browser("ula").get("/?state=shiny")
    assert bad.status_code == 400 and "unknown state" in bad.get_data(as_text=True)


def test_folders_and_sites_show_completion_in_files_and_bytes(browser, tracker):
    tracker.publish(
        [{"_id": "/s/a/1", "origin": "paris", "comment": "c", "file_size": 100, "sync_tokyo": True,
          "synced_tokyo": 10**13},
         {"_id": "/s/a/2", "origin": "paris", "comment": "c", "file_size": 300, "sync_tokyo": True},
         {"_id": "/s/b/3", "origin": "paris", "comment": "c", "file_size": 5}]
    )  # fmt: skip
    b = browser("ula")
    html = b.get("/folders?prefix=/s/").get_data(as_text=True)
    row = html[html.index("/s/a/</bdi>") :]
    tokyo = row[row.index('data-site="tokyo"') :]
    assert tokyo.startswith('data-site="tokyo">1/2 ') and "100 B/400 B (25.0%)" in tokyo
    sites = b.get("/sites").get_data(as_text=True)
    tokyo = sites[sites.index('<tr data-site="tokyo">') :]
    assert "1/2" in tokyo and "100 B/400 B" in tokyo
    assert 'data-agent="down"' in sites  # no agent ever ran


def test_the_dashboard_works_under_a_mount_prefix(tracker):
    host = DispatcherMiddleware(lambda e, s: [], {"/tracker": make_app(tracker, auth="jwt")})
    b = Browser(host, base="/tracker")
    assert b.get("/").headers["Location"] == "/tracker/signin?next=%2Ftracker%2F"
    page = b.get("/signin").get_data(as_text=True)
    assert 'href="/tracker/static/dashboard.css"' in page and 'action="/tracker/signin"' in page
    answer = b.sign_in("ula")
    assert answer.headers["Location"] == "/tracker/"
    assert "Path=/tracker" in next(h for h in answer.headers.getlist("Set-Cookie") if "token=" in h)
    assert b.get("/").status_code == 200
    assert b.get("/static/dashboard.js").headers["Content-Type"].startswith("text/javascript")


def test_without_sign_in_every_page_is_the_admin_s(tracker):
    b = Browser(make_app(tracker, auth="none"))
    html = b.get("/sites").get_data(as_text=True)
    assert 'name="syncAmountReception"' in html and "Sign out" not in html
    assert b.get("/signin").status_code == 200


def test_unknown_pages_and_api_paths_keep_their_answers(browser):
    b = browser("ula")
    assert b.get("/nowhere").status_code == 404
    assert b.get("/static/secret.py").status_code == 404
    api = b.get("/api/nowhere")
    assert api.status_code == 404 and api.json["status"] == 404
    assert b.client.delete("/").status_code == 405
    assert b.client.head("/sites").status_code == 200


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_every_state_is_readable_in_its_colours():
    from importlib import resources

    from damas_core.sync.status import STATES

    css = resources.files("damas_core.dashboard").joinpath("static", "dashboard.css").read_text()
    colours = dict(re.findall(r"--([a-z-]+): (#[0-9a-f]{6})", css))
    for state in STATES:
        fg, bg = sorted((_luminance(colours[f"{state}-fg"]), _luminance(colours[f"{state}-bg"])))
        assert (bg + 0.05) / (fg + 0.05) >= 4.5, state  # WCAG AA for text
        assert f".s-{state} {{" in css, state


def test_an_admin_forces_an_unlock_and_others_see_no_unlock(browser, tracker):
    _publish(tracker, "/a.exr")
    tracker.as_user("eddie").lock("/a.exr")
    assert 'value="unlock"' not in browser("ula").get("/file?id=/a.exr").get_data(as_text=True)
    ada = browser("ada")
    assert 'name="force"' in ada.get("/file?id=/a.exr").get_data(as_text=True)
    refused = ada.form("/", "/file", {"id": "/a.exr", "action": "unlock"})
    assert refused.status_code == 409 and tracker.read("/a.exr")["lock"] == "eddie"
    done = ada.form("/", "/file", {"id": "/a.exr", "action": "unlock", "force": "on"})
    assert done.status_code == 303 and "lock" not in tracker.read("/a.exr")


def test_a_file_being_copied_shows_transferring_on_its_pages_and_live(browser, tracker):
    import html
    import json
    import time

    from damas_core.sync.transferring import bucket_record

    for name in ("/a.exr", "/b.exr"):
        _publish(tracker, name, sync_tokyo=True)
    now = int(time.time() * 1000)
    tracker.update({"_id": "vol_tokyo", "agentStatus": "receiving", "lastConnection": now,
                    "transferring": bucket_record("tokyo", ["/a.exr"], now)})  # fmt: skip
    tracker.create({"_id": "vol_<'\">", "name": "rome", "url": "file:///rome/"})
    b = browser("ula")
    page = b.get("/?site=tokyo").get_data(as_text=True)
    assert (
        '<td class="cell s-queued" data-file="/a.exr" data-site="tokyo" data-state="queued" '
        'data-detail="transferring"><span class="icon" aria-hidden="true">&#8644;</span> '
        '<span class="word">transferring</span></td>'
    ) in page
    assert 'data-file="/b.exr" data-site="tokyo" data-state="queued"><span' in page
    # the live script learns which changes are volumes: every id, escaped
    listed = re.search(r"data-volumes='([^']*)'", page).group(1)
    assert "<" not in listed and json.loads(html.unescape(listed)) == [
        "vol_lyon", "vol_paris", "vol_<'\">", "vol_tokyo",
    ]  # fmt: skip
    one = b.get("/file?id=/a.exr").get_data(as_text=True)
    assert 'data-site="tokyo" data-state="queued" data-detail="transferring"' in one
    assert "data-volumes=" in one
    cells = b.get("/cells?id=/a.exr&id=/b.exr").json
    assert cells["/a.exr"]["states"]["tokyo"] == {
        "state": "queued", "text": "transferring", "icon": "⇄", "detail": "transferring",
    }  # fmt: skip
    assert cells["/b.exr"]["states"]["tokyo"] == {"state": "queued", "text": "queued", "icon": "↻"}
    tracker.update({"_id": "vol_tokyo", "agentStatus": "stopped", "transferring": None})
    cells = b.get("/cells?id=/a.exr").json
    assert cells["/a.exr"]["states"]["tokyo"]["text"] == "queued"


class _Rows(HTMLParser):
    """The files table's rows as a browser reads them: per row its attributes, its link,
    its lock and, per cell, its attributes and text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self._in: list[str] = []  # what the text read belongs to

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-file" in attrs:
            self.rows.append({"attrs": attrs, "cells": [], "lock": "", "href": None})
        elif self.rows and tag == "a" and self.rows[-1]["href"] is None:
            self.rows[-1]["href"] = attrs["href"]
        elif self.rows and tag == "td" and "cell" in attrs.get("class", "").split():
            self.rows[-1]["cells"].append({"attrs": attrs, "text": ""})
            self._in.append("cell")
        elif self.rows and tag == "td" and attrs.get("class") == "lock":
            self._in.append("lock")

    def handle_endtag(self, tag):
        if tag == "td" and self._in:
            self._in.pop()
        elif tag == "tr":
            self._in = []

    def handle_data(self, data):
        if self._in == ["cell"]:
            self.rows[-1]["cells"][-1]["text"] += data
        elif self._in == ["lock"]:
            self.rows[-1]["lock"] += data


def test_a_row_shows_every_value_as_text_with_its_hooks(browser, tracker):
    file_id = HOSTILE[0]
    reason = "locked by <b>bo</b> & 'co'"
    tracker.storage.insert_many(
        [{"_id": file_id, "origin": "paris", "time": 5, "lock": '<i>"ula"</i>',
          "sync_tokyo": True, "syncWait_tokyo": reason, "sync_lyon": True,
          "syncError_lyon": 23}]
    )  # fmt: skip
    update_volume(tracker, {"_id": "vol_lyon", "stderr_reception": 'rsync: <no> & "space"'})
    parser = _Rows()
    parser.feed(browser("ula").get("/").get_data(as_text=True))
    (row,) = parser.rows
    assert row["attrs"]["data-file"] == file_id
    assert row["href"] == "/file?id=" + quote(file_id, safe="")
    assert row["lock"] == '🔒 <i>"ula"</i>'
    cells = {c["attrs"]["data-site"]: c for c in row["cells"]}
    assert list(cells) == ["lyon", "paris", "tokyo"]
    assert all(c["attrs"]["data-file"] == file_id for c in row["cells"])
    assert {s: c["attrs"]["data-state"] for s, c in cells.items()} == {
        "lyon": "error", "paris": "ok", "tokyo": "waiting"
    }  # fmt: skip
    assert cells["tokyo"]["text"] == f"⏸ waiting: {reason}"
    assert cells["paris"]["text"] == "✔ ok"
    assert cells["lyon"]["text"] == '✖ error (23)rsync exit code 23: rsync: <no> & "space"'


def test_a_state_page_and_the_sites_page_follow_each_write(browser, tracker):
    for i in range(3):
        _publish(tracker, f"/w/{i}.exr", sync_lyon=True)
    b = browser("ula")

    def lyon() -> list[str]:  # its errors, waiting, queued and conflicts
        sites = b.get("/sites").get_data(as_text=True)
        row = sites[sites.index('<tr data-site="lyon">') :]
        return re.findall(r'<td class="num">(\d+)</td>', row[: row.index("</tr>")])

    def errors() -> list[str]:
        return re.findall(r'<tr data-file="([^"]+)"', b.get("/?state=error").get_data(as_text=True))

    assert errors() == [] and lyon() == ["0", "0", "3", "0"]
    tracker.update({"_id": "/w/1.exr", "syncError_lyon": 23})  # a real write, after both pages
    assert errors() == ["/w/1.exr"] and lyon() == ["1", "0", "2", "0"]
    tracker.update({"_id": "/w/1.exr", "syncError_lyon": None})
    assert errors() == [] and lyon() == ["0", "0", "3", "0"]


def test_the_sites_page_shows_a_storage_s_hub_connection_and_capacity(tracker, browser):
    """A storage driven by a hub is never 'never ran': the page names its hub, its
    connection state and last success, and its capacity."""
    tracker.create({"_id": "vol_hub", "name": "hub", "url": "file:///srv/hub/"})
    tracker.create(
        {"_id": "vol_nas", "name": "nas", "url": "ssh://u@nas/p/", "hub": "vol_hub",
         "connectionStatus": "unreachable", "error": 255, "lastConnectionSuccess": 1000,
         "bytesTotal": 4096, "bytesUsed": 1024, "bytesRemaining": 3072,
         "stderr_connection": "ssh: connect to host nas port 22: No route to host"}
    )  # fmt: skip
    b = browser()
    b.sign_in("ula")
    page = b.get("/sites").get_data(as_text=True)
    start = page.index('data-site="nas"', page.index("<h2>Agents</h2>"))
    nas = page[start : page.index("</section>", start)]
    assert "run by the hub <bdi>vol_hub</bdi>" in nas
    assert 'data-connection="unreachable"' in nas and "(exit 255)" in nas
    assert "No route to host" in nas and "free" in nas
    assert "never ran" not in nas
