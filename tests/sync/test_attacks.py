"""Hostile elements aimed at another site's agent: nothing outside its volume is touched.

The reproduction of the trust review: with ``propagateDeletions`` on, elements whose
ids (or ``renamed_to``, or conflict records) name files outside tokyo's root are
written, embedded (as elements already in a store, written before the core refused
such ids) and over HTTP by a ``user`` account against a served tracker. Tokyo's next
cycles, and an admin resolving the planted conflicts, leave the sibling folder's
files as they were, byte for byte and mtime for mtime; none of them is moved into
the volume, and no file of the volume is moved out.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from damas_core.sync import resolve
from damas_core.sync.volumes import set_global_parameters

import damas_core
from damas_core.errors import DamasError
from tests.http import conftest as http

from .conftest import Sites, needs_rsync

pytestmark = needs_rsync

FAR = 1_000_000_000_000_000  # a synced_<site> later than any time


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            data = path.read_bytes() if path.is_file() else b""
            out[str(path.relative_to(folder))] = (data, path.lstat().st_mtime_ns)
    return out


def _hostile(outside: Path) -> list[tuple[str, dict]]:
    """The writes of the attack: (operation, element), in order."""
    victim = outside / "victim.txt"
    look = {"file_size": victim.stat().st_size, "file_mtime": victim.stat().st_mtime_ns // 10**6}
    secret = outside / "secret.key"
    secret_look = {
        "file_size": secret.stat().st_size,
        "file_mtime": secret.stat().st_mtime_ns // 10**6,
    }
    deleted = {"deleted": True, "deleted_at": "paris", "synced_tokyo": FAR}
    return [
        ("publish", {"_id": "/../outside/", "origin": "paris", "comment": "x"}),
        ("create", {"_id": "/../outside/victim.txt", "origin": "paris", **look, **deleted}),
        ("create", {"_id": "/../outside/planted.sh", "origin": "paris", **look}),
        ("create", {"_id": "/link/victim.txt", "origin": "paris", **look, **deleted}),
        (
            "create",
            {"_id": "/../outside/wanted.txt", "origin": "paris", **look, "sync_tokyo": True},
        ),
        (
            "create",
            {
                "_id": "/../outside/secret.key",
                "origin": "paris",
                **secret_look,
                **deleted,
                "renamed_to": "/stolen.key",
            },
        ),
        ("create", {"_id": "/stolen.key", "origin": "paris", **secret_look}),
        (
            "version",
            {"_id": "/payload.sh", **deleted, "renamed_to": "/../outside/planted.sh"},
        ),
        (
            "create",
            {
                "_id": "/../outside/victim2.txt",
                "origin": "paris",
                "file_size": 1,
                "file_mtime": 1,
                "conflict_tokyo": {"time": 1, "from": "paris", "incoming": "/inside.txt"},
            },
        ),
        (
            "create",
            {
                "_id": "/held.txt",
                "origin": "paris",
                "file_size": 1,
                "file_mtime": 1,
                "conflict_tokyo": {
                    "time": 1,
                    "from": "paris",
                    "incoming": "/../outside/victim.txt",
                },
            },
        ),
    ]


def _write(session, op: str, element: dict) -> None:
    """One write of the attack; a refusal by the core (a non-canonical id) is fine:
    the attack then stops there, and the rest goes on."""
    try:
        if op == "version":
            keys = {k: v for k, v in element.items() if k != "_id"}
            session.version(element["_id"], keys)
        else:
            getattr(session, op)(element)
    except DamasError:
        pass


def _attack(sites: Sites, session, tmp: Path) -> None:
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("victim")
    (outside / "planted.sh").write_text("planted")
    (outside / "secret.key").write_text("secret")
    (outside / "wanted.txt").write_text("wanted")
    (sites.roots["tokyo"] / "link").symlink_to(outside)
    set_global_parameters(sites.tracker, {"propagateDeletions": True, "maxDelete": 100})
    sites.write("paris", "/payload.sh", "payload")
    sites.write("tokyo", "/inside.txt", "inside")
    sites.run(rounds=2)
    assert sites.path("tokyo", "/payload.sh").read_text() == "payload"
    before = _snapshot(outside)
    for op, element in _hostile(outside):
        _write(session, op, element)
    reports = sites.run("tokyo", rounds=2)
    for file_id in ("/../outside/victim2.txt", "/held.txt"):
        for keep in ("incoming", "local"):
            try:
                resolve(sites.tracker, file_id, "tokyo", keep)
            except (DamasError, OSError):
                pass
    assert _snapshot(outside) == before
    assert not sites.path("tokyo", "/stolen.key").exists()
    assert sites.path("tokyo", "/inside.txt").read_text() == "inside"
    # payload.sh was deleted at paris (as the version says): quarantined inside the volume
    assert not any(p.name == "payload.sh" for p in outside.rglob("*"))
    refused = {i for r in reports for i in r.refused}
    assert (
        "/../outside/wanted.txt" in refused or sites.tracker.read("/../outside/wanted.txt") is None
    )


@pytest.fixture
def two_sites(tmp_path, tracker):
    return Sites(tmp_path, tracker, names=("paris", "tokyo"))


def test_hostile_elements_in_the_store_never_reach_outside_the_volume(two_sites, tmp_path):
    _attack(two_sites, two_sites.tracker, tmp_path)


def test_hostile_writes_of_a_user_over_http_never_reach_outside_the_volume(tmp_path):
    tracker = damas_core.open(f"lmdb://{tmp_path}/store")
    try:
        http.add_users(tracker)
        sites = Sites(tmp_path, tracker, names=("paris", "tokyo"))
        app = http.make_app(tracker, auth="jwt")
        with http.serving(app) as url, http.clients_of(url) as client:
            _attack(sites, client("ula"), tmp_path)
        for agent in sites.agents.values():
            agent.close()
    finally:
        tracker.close()
