"""``GET /metrics`` scraped from a real server, under a mount prefix, and parsed with
``prometheus_client``'s own parser: every value is what the store holds; only admins
and the metrics token may read it; routes are labelled by template, never raw paths."""

from __future__ import annotations

import time

import pytest
import requests
from damas_core.sync import activity
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Response

import damas_core
from damas_core.wsgi import make_app
from tests.http.conftest import add_users, serving

parser = pytest.importorskip("prometheus_client.parser")
TOKEN = "metrics-token-0123456789"


def _scrape(base: str, **headers: str) -> dict[tuple[str, tuple], float]:
    answer = requests.get(f"{base}/metrics", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    out = {}
    for family in parser.text_string_to_metric_families(answer.text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    t = damas_core.open(f"lmdb://{tmp}/store")
    add_users(t)
    now = int(time.time() * 1000)
    t.create([
        {"_id": "vol_paris", "name": "paris", "url": "file:///p/", "agentStatus": "idle",
         "lastConnection": now, "last_scan": now - 5000, "bytesTotal": 1000, "bytesUsed": 600,
         "bytesRemaining": 400, "bytes_emission_total": 77},
        {"_id": "vol_tokyo", "name": "tokyo", "url": "ssh://d@tokyo:22/t/",
         "connectionStatus": "unreachable", "rate_reception": 10.0,
         "bytes_reception_total": 12},
        {"_id": "rsyncGlobalParameters", "syncEverywhere": True},
    ])  # fmt: skip
    t.publish([
        {"_id": "/a", "origin": "paris", "comment": "c", "file_size": 100},
        {"_id": "/b", "origin": "paris", "comment": "c", "file_size": 30},
        {"_id": "/c", "origin": "paris", "comment": "c", "file_size": 5},
    ])  # fmt: skip
    t.update({"_id": "/b", "syncError_tokyo": 23})
    t.update({"_id": "/c", "synced_tokyo": t.read("/c")["time"]})
    app = make_app(t, auth="jwt", metrics_token=TOKEN)
    host = DispatcherMiddleware(Response("host", 404), {"/tracker": app})
    with serving(host) as url:
        yield t, url + "/tracker", app
    t.close()


def _admin(base: str) -> dict[str, str]:
    r = requests.post(f"{base}/api/signIn/", json={"username": "ada", "password": "ada-pw"})
    return {"Authorization": "Bearer " + r.json()["token"]}


def test_the_scrape_holds_what_the_store_holds(served):
    t, base, _ = served
    m = _scrape(base, Authorization=f"Bearer {TOKEN}")
    assert m["damas_site_files", (("site", "tokyo"), ("state", "queued"))] == 1
    assert m["damas_site_files", (("site", "tokyo"), ("state", "error"))] == 1
    assert m["damas_site_files", (("site", "tokyo"), ("state", "ok"))] == 1
    assert m["damas_site_bytes", (("site", "tokyo"), ("state", "queued"))] == 100
    assert m["damas_site_bytes", (("site", "tokyo"), ("state", "error"))] == 30
    assert m["damas_site_files", (("site", "paris"), ("state", "ok"))] == 3
    assert m["damas_sync_errors", (("site", "tokyo"),)] == 1
    assert m["damas_site_missing_bytes", (("site", "tokyo"),)] == 130
    assert m["damas_site_eta_seconds", (("site", "tokyo"),)] == 13.0  # 130 B at 10 B/s
    assert m["damas_site_eta_seconds", (("site", "paris"),)] == 0
    assert m["damas_volume_up", (("volume", "vol_paris"),)] == 1
    assert m["damas_volume_up", (("volume", "vol_tokyo"),)] == 0
    assert m["damas_volume_capacity_bytes", (("kind", "remaining"), ("volume", "vol_paris"))] == 400
    last_scan = t.read("vol_paris")["last_scan"] / 1000
    assert m["damas_agent_last_cycle_timestamp_seconds", (("volume", "vol_paris"),)] == last_scan
    assert m["damas_transfer_bytes_total", (("direction", "emission"), ("site", "paris"))] == 77
    assert m["damas_transfer_bytes_total", (("direction", "reception"), ("site", "tokyo"))] == 12
    assert m["damas_feed_last_seq", ()] == t.storage.last_seq()

    # a change reaches the next scrape through the feed
    t.update({"_id": "/a", "synced_tokyo": t.read("/a")["time"]})
    activity.record(t, "vol_tokyo", "unreachable", {"status": "unreachable"})
    m = _scrape(base, **_admin(base))
    assert m["damas_site_files", (("site", "tokyo"), ("state", "ok"))] == 2
    assert m["damas_feed_last_seq", ()] == t.storage.last_seq()


def test_requests_are_counted_by_route_template(served):
    _, base, _ = served
    requests.get(f"{base}/api/read/%2Fa,%2Fzz{time.time_ns()}", headers=_admin(base))
    requests.get(f"{base}/api/read/%2Fb", headers=_admin(base))
    requests.get(f"{base}/no/such/page/{time.time_ns()}")
    m = _scrape(base, Authorization=f"Bearer {TOKEN}")
    routes = {dict(k[1]).get("route") for k in m if k[0] == "damas_http_requests_total"}
    assert "/api/read/{ids}" in routes and "other" in routes
    assert not any("%2F" in r or "zz" in r for r in routes if r)
    read = [v for k, v in m.items() if k[0] == "damas_http_requests_total"
            and dict(k[1]) == {"method": "GET", "route": "/api/read/{ids}", "status": "207"}]  # fmt: skip
    assert read == [1.0]
    count = m["damas_http_request_duration_seconds_count", (("route", "/api/read/{ids}"),)]
    assert count == 2


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer " + TOKEN[:-1] + "x"}, 401),
        ("ula", 403),
        ("eddie", 403),
    ],
)
def test_only_admins_and_the_metrics_token_read_it(served, headers, status):
    _, base, _ = served
    if isinstance(headers, str):
        r = requests.post(
            f"{base}/api/signIn/", json={"username": headers, "password": headers + "-pw"}
        )
        headers = {"Authorization": "Bearer " + r.json()["token"]}
    answer = requests.get(f"{base}/metrics", headers=headers, timeout=10)
    assert answer.status_code == status
    assert "damas_site_files" not in answer.text
    assert requests.post(f"{base}/metrics", timeout=10).status_code == 405


def test_the_shipped_dashboard_and_alert_rules_name_only_metrics_we_serve(served):
    import json
    import re
    from pathlib import Path

    _, base, _ = served
    served_names = {name for name, _ in _scrape(base, Authorization=f"Bearer {TOKEN}")}
    docs = Path(__file__).resolve().parents[2] / "docs"
    grafana = json.loads((docs / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in grafana["panels"] for t in p["targets"]]
    rules = (docs / "prometheus-alerts.yml").read_text()
    used = set(re.findall(r"\bdamas_[a-z_]+", " ".join(exprs) + rules))
    assert used and used <= served_names, used - served_names
