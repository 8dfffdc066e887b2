"""A site's page (agent, connection, capacity, ETA, activity log) and the first page of
an empty tracker, which tells an admin what to do next with this server's address."""

from __future__ import annotations

import time

from damas_core.sync import activity
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Response

from damas_core.dashboard.app import CSP
from damas_core.wsgi import make_app

from .conftest import Browser


def test_a_site_page_shows_its_state_its_eta_and_its_log_newest_first(tracker, browser):
    now = int(time.time() * 1000)
    tracker.update({"_id": "vol_tokyo", "connectionStatus": "unreachable", "error": 255,
                    "lastConnectionAttempt": now, "bytesTotal": 4 * 1024**3,
                    "bytesUsed": 3 * 1024**3, "bytesRemaining": 1024**3,
                    "rate_reception": 1024.0})  # fmt: skip
    tracker.publish({"_id": "/a.exr", "origin": "paris", "comment": "c", "file_size": 10240,
                     "sync_tokyo": True})  # fmt: skip
    down = activity.record(tracker, "vol_tokyo", "unreachable", {"status": "unreachable"})
    errors = activity.record(tracker, "vol_tokyo", "errors", {"count": 1, "ids": ["/<b>x</b>"]})
    # events of the same millisecond have no order: this one comes after
    tracker.update({"_id": errors["_id"], "time": down["time"] + 1})
    activity.record(tracker, "vol_paris", "brake", {"message": "elsewhere"})
    page = browser("gus").get("/site?name=tokyo")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Content-Security-Policy"] == CSP
    assert 'data-connection="unreachable"' in html and "(exit 255)" in html
    assert "3.0 GiB used of 4.0 GiB, 1.0 GiB free" in html
    assert 'data-missing="1"' in html and 'data-eta="10.0"' in html and "10 s" in html
    logged = [x.split('"')[1] for x in html.split("data-event=")[1:]]
    assert logged == ["errors", "unreachable"]  # newest first, only tokyo's
    assert "<b>x</b>" not in html and "\\u003cb\\u003ex" in html  # shown, escaped
    sites = browser("gus").get("/sites").get_data(as_text=True)
    assert 'href="/site?name=tokyo"' in sites and 'data-eta="10.0"' in sites
    assert browser("gus").get("/site?name=nowhere").status_code == 404


def test_an_empty_tracker_tells_an_admin_what_to_do_with_this_servers_address(tracker):
    app = make_app(tracker, auth="jwt")
    host = DispatcherMiddleware(Response("host", 404), {"/tracker": app})
    admin = Browser(host, "/tracker")
    assert admin.sign_in("ada").status_code == 303
    html = admin.get("/").get_data(as_text=True)
    assert 'id="first-steps"' in html
    server = "http://localhost/tracker"  # as the browser reached it
    assert f"damas -s {server} volume add vol_paris paris file:///srv/paris/" in html
    assert f"damas sync agent vol_paris --server {server}" in html
    assert f"damas -s {server} publish" in html
    user = Browser(host, "/tracker")
    user.sign_in("ula")
    html = user.get("/").get_data(as_text=True)
    assert 'id="first-steps"' in html and "volume add" not in html
    # once a file is tracked, or while a search shows nothing, the steps are not shown
    assert 'id="first-steps"' not in admin.get("/?q=nothing").get_data(as_text=True)
    tracker.publish({"_id": "/a.exr", "origin": "paris", "comment": "c"})
    assert 'id="first-steps"' not in admin.get("/").get_data(as_text=True)
