"""Volumes and the global parameters written through a real served tracker: the
functions of damas_core.sync.volumes validate, the core decides who may write."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from damas_core.sync.volumes import (
    GLOBAL_ID,
    create_volume,
    set_global_parameters,
    update_volume,
)

import damas_core
from damas_core.client import Client
from damas_core.errors import BadRequest, Forbidden
from tests.http import conftest as http


@pytest.fixture
def served() -> Iterator[tuple[damas_core.Tracker, str]]:
    tracker = damas_core.open("memory://")
    http.add_users(tracker)
    with http.serving(http.make_app(tracker, auth="jwt")) as url:
        yield tracker, url
    tracker.close()


@pytest.fixture
def client(served) -> Iterator[Callable[[str], Client]]:
    with http.clients_of(served[1]) as make:
        yield make


SEED_PARIS = {
    "_id": "vol_paris",
    "name": "paris",
    "url": "file:///srv/paris/",
    "rsync_args": "",
    "rsync_env": "",
}


def test_an_admin_writes_volumes_and_parameters_through_the_client(served, client):
    tracker, _ = served
    ada = client("ada")
    assert create_volume(ada, SEED_PARIS)["_id"] == "vol_paris"
    create_volume(
        ada,
        {
            "_id": "vol_tokyo",
            "name": "tokyo",
            "url": "ssh://sync@tokyo.example/data/",
            "ssh_port": 2222,
            "ssh_identity_file": "/etc/damas/id_sync",
            "ssh_known_hosts": "/etc/damas/known_hosts",
            "ssh_options": {"ConnectTimeout": 10, "StrictHostKeyChecking": "yes"},
        },
    )
    update_volume(ada, {"_id": "vol_paris", "rsync_args": "-z --bwlimit=5000", "comment": "p"})
    update_volume(ada, {"_id": "vol_tokyo", "ssh_options": None})  # None removes a key
    set_global_parameters(ada, {"syncEverywhere": True, "rsync_args": "--timeout=60"})
    set_global_parameters(ada, {"retryDelay": 5})  # the element exists: an update
    paris, tokyo = tracker.read("vol_paris"), tracker.read("vol_tokyo")
    assert paris["rsync_args"] == "-z --bwlimit=5000" and paris["rsync_env"] == ""
    assert tokyo["ssh_port"] == 2222 and "ssh_options" not in tokyo
    params = tracker.read(GLOBAL_ID)
    assert params["syncEverywhere"] is True and params["retryDelay"] == 5


def test_a_refused_option_is_a_bad_request_and_writes_nothing(served, client):
    tracker, _ = served
    ada = client("ada")
    create_volume(ada, SEED_PARIS)
    for call, key in (
        (lambda: update_volume(ada, {"_id": "vol_paris", "rsync_args": "-zesh"}), "rsync_args"),
        (
            lambda: update_volume(ada, {"_id": "vol_paris", "rsync_env": "RSYNC_RSH=sh"}),
            "rsync_env",
        ),
        (lambda: update_volume(ada, {"_id": "vol_paris", "ssh_port": 0}), "ssh_port"),
        (lambda: set_global_parameters(ada, {"rsync_args": ["--delete"]}), "rsync_args"),
    ):
        with pytest.raises(BadRequest) as e:
            call()
        assert e.value.key == key
    assert tracker.read("vol_paris") == {**tracker.read("vol_paris"), **SEED_PARIS}
    assert tracker.read(GLOBAL_ID) is None


@pytest.mark.parametrize("name", ["gus", "ula", "eddie"])
def test_the_core_refuses_everyone_else(served, client, name):
    tracker, _ = served
    tracker.create(dict(SEED_PARIS))
    someone = client(name)
    for call in (
        lambda: create_volume(someone, {**SEED_PARIS, "_id": "vol_evil", "name": "evil"}),
        lambda: update_volume(someone, {"_id": "vol_paris", "url": "file:///etc/"}),
        lambda: update_volume(someone, {"_id": "vol_paris", "rsync_args": "-z"}),
        lambda: update_volume(someone, {"_id": "vol_paris", "ssh_port": 2222}),
        lambda: set_global_parameters(someone, {"syncEverywhere": True}),
    ):
        with pytest.raises(Forbidden):
            call()
    assert tracker.read("vol_evil") is None
    assert tracker.read("vol_paris") == {**tracker.read("vol_paris"), **SEED_PARIS}
    assert "ssh_port" not in tracker.read("vol_paris")
    assert tracker.read(GLOBAL_ID) is None
