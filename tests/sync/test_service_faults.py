"""The service against a real waitress server that answers 502 or too slowly for a
while: it warns, backs off and goes on, with no duplicate publish; what it cannot fix
(no such volume, a refused password) stops it with its exit code."""

from __future__ import annotations

import logging
import time

import pytest
from damas_core.sync import Agent
from damas_core.sync.service import (
    EXIT_CONFIG,
    EXIT_CREDENTIALS,
    Backoff,
    Connection,
    Credentials,
    Service,
    ServiceError,
)
from damas_core.sync.volumes import create_volume, set_global_parameters

import damas_core
from damas_core.wsgi import make_app
from tests.http.conftest import add_users, serving
from tests.sync.conftest import needs_rsync


class Flaky:
    """A WSGI app that answers the next ``fail`` requests 502 (a proxy in front of a restarting server), and makes the next
    ``slow`` ones wait ``delay`` seconds, before passing requests on."""

    def __init__(self, app) -> None:
        self.app = app
        self.fail = 0
        self.slow = 0
        self.delay = 0.0
        self.refused = 0

    def __call__(self, environ, start_response):
        if self.fail:
            self.fail -= 1
            self.refused += 1
            start_response("502 Bad Gateway", [("Content-Type", "application/json")])
            return [b'{"error": "request error: restarting", "status": 502}']
        if self.slow:
            self.slow -= 1
            time.sleep(self.delay)
        return self.app(environ, start_response)


@pytest.fixture
def served(tmp_path):
    tracker = damas_core.open("memory://")
    add_users(tracker)
    root = tmp_path / "paris"
    root.mkdir()
    create_volume(tracker, {"_id": "vol_paris", "name": "paris", "url": f"file://{root}/"})
    set_global_parameters(tracker, {"sleepBetweenScans": 0})
    flaky = Flaky(make_app(tracker, auth="jwt"))
    with serving(flaky) as url:
        yield tracker, url, flaky, root
    tracker.close()


def _service(url, tmp_path, password="ada-pw", volume_id="vol_paris", timeout=300.0):
    connection = Connection(url, Credentials("ada", password), timeout=timeout)
    return Service(
        connection.client,
        volume_id,
        lambda t: Agent(t, volume_id, settle=0),
        state_dir=tmp_path / "state",
        connection=connection,
        backoff=Backoff(base=0.01, cap=0.05),
    )


@needs_rsync
def test_5xx_answers_and_timeouts_are_waited_out(served, tmp_path, caplog):
    tracker, url, flaky, root = served
    (root / "a.txt").write_text("a")
    service = _service(url, tmp_path, timeout=0.5)
    flaky.fail = 6
    with caplog.at_level(logging.INFO, logger="damas_core.sync.service"):
        assert service.run(max_cycles=1) == 0
        (root / "b.txt").write_text("b")
        flaky.slow, flaky.delay = 2, 1.5
        assert service.run(max_cycles=1) == 0
    assert flaky.refused == 6
    failed = [r.getMessage() for r in caplog.records if "the tracker failed" in r.getMessage()]
    assert any("restarting" in m for m in failed), failed
    assert any("did not answer in time" in m for m in failed), failed
    assert any("cycle in" in r.getMessage() for r in caplog.records)
    for file_id in ("/a.txt", "/b.txt"):
        assert len(tracker.search(f'#parent:"{file_id}"')) == 1
    assert tracker.read("vol_paris")["agentStatus"] == "stopped"


def test_a_missing_volume_or_a_refused_password_stops_with_its_code(served, tmp_path):
    _, url, _, _ = served
    with pytest.raises(ServiceError) as missing:
        _service(url, tmp_path, volume_id="vol_nowhere").run()
    assert missing.value.exit_code == EXIT_CONFIG and "vol_nowhere" in str(missing.value)
    with pytest.raises(ServiceError) as refused:
        _service(url, tmp_path, password="wrong").run()
    assert refused.value.exit_code == EXIT_CREDENTIALS


@needs_rsync
def test_each_failed_file_is_a_warning_with_rsyncs_code(tmp_path, caplog):
    tracker = damas_core.open(f"lmdb://{tmp_path}/store")
    try:
        for name in ("paris", "tokyo"):
            (tmp_path / name).mkdir()
            create_volume(
                tracker, {"_id": f"vol_{name}", "name": name, "url": f"file://{tmp_path / name}/"}
            )
        set_global_parameters(tracker, {"syncEverywhere": True, "sleepBetweenScans": 0})
        # tracked at paris, but not there: rsync cannot send it
        tracker.publish(
            {"_id": "/ghost.exr", "origin": "paris", "comment": "by hand", "file_size": 3}
        )
        service = Service(
            tracker,
            "vol_tokyo",
            lambda t: Agent(t, "vol_tokyo", settle=0),
            state_dir=tmp_path / "state",
        )
        with caplog.at_level(logging.INFO, logger="damas_core.sync.service"):
            assert service.run(max_cycles=1) == 0
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("/ghost.exr failed: rsync exit 23 (partial transfer" in m for m in warnings)
        summary = next(r.getMessage() for r in caplog.records if "cycle in" in r.getMessage())
        assert "failed 1" in summary
        assert tracker.read("/ghost.exr")["syncError_tokyo"] == 23
    finally:
        tracker.close()
