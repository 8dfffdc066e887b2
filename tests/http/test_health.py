"""``GET /healthz``: 200 while the store answers, 503 when it does not, with no sign-in,
under any mount prefix, over a real server. The fault is made at the driver: the
SQLite connection closed under the store."""

from __future__ import annotations

import pytest
import requests
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import damas_core
from damas_core.wsgi import make_app


def _bare(environ, start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"host"]


@pytest.fixture
def store(tmp_path):
    tracker = damas_core.open(f"sqlite:///{tmp_path}/store.db")
    tracker.create({"_id": "/a"})
    yield tracker, tmp_path / "store.db"
    try:
        tracker.close()
    except Exception:  # its connection was closed by the test
        pass


def _close_connection(tracker, path):
    tracker.storage._conn.close()


@pytest.mark.parametrize("fault", [_close_connection])
@pytest.mark.parametrize("prefix", ["", "/tracker"])
def test_healthz_tells_whether_the_store_answers(store, serve, fault, prefix):
    tracker, path = store
    app = make_app(tracker, auth="jwt")
    url = serve(DispatcherMiddleware(_bare, {prefix: app}) if prefix else app) + prefix
    answer = requests.get(f"{url}/healthz", timeout=10)
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})
    assert requests.head(f"{url}/healthz", timeout=10).status_code == 200
    assert requests.post(f"{url}/healthz", timeout=10).status_code == 405
    fault(tracker, path)
    answer = requests.get(f"{url}/healthz", timeout=10)
    assert answer.status_code == 503
    assert answer.json()["status"] == "unavailable"
