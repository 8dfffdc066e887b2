"""Shared fixtures: one ``tracker`` per backend URL, so every conformance test runs
unchanged on every backend.

Set ``DAMAS_TEST_MONGODB_URL=mongodb://host:port`` to add a real MongoDB server to
the list (each test gets its own database, dropped after the test, as is every
database a test makes on mongomock). ``postgresql`` runs on a server the tests start
(:mod:`tests.postgres_server`), or on ``DAMAS_TEST_POSTGRES_URL`` when set (each test
gets its own schema).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from damas_core.backends import lmdb as lmdb_backend
from damas_core.backends import mongodb as mongodb_backend

import damas_core
from damas_core.errors import NotImplementedByBackend
from tests import postgres_server

BACKENDS = ["memory", "lmdb", "tinydb", "sqlite", "mongomock", "postgresql"]
if os.environ.get("DAMAS_TEST_MONGODB_URL"):
    BACKENDS.append("mongodb")


def backend_url(name: str, tmp_path) -> str:
    """A fresh, empty store URL for backend ``name`` under ``tmp_path``."""
    unique = uuid.uuid4().hex[:12]
    if name == "memory":
        return "memory://"
    if name == "lmdb":
        return f"lmdb://{tmp_path}/store-{unique}"
    if name == "tinydb":
        return f"tinydb://{tmp_path}/store-{unique}.json"
    if name == "sqlite":
        return f"sqlite://{tmp_path}/store-{unique}.db"
    if name == "mongomock":
        return f"mongomock:///t{unique}?collection=node"
    if name == "postgresql":
        url = postgres_server.store_url()
        if url is None:
            pytest.skip(f"postgresql backend unavailable here: {postgres_server.why_not()}")
        return url
    if name == "mongodb":
        parts = urlsplit(os.environ["DAMAS_TEST_MONGODB_URL"])
        url = urlunsplit((parts.scheme, parts.netloc, f"/damas_test_{unique}", parts.query, ""))
        _MONGODB_URLS.append(url)
        return url
    raise ValueError(name)


#: Databases made on the real server by the running test (dropped after it).
_MONGODB_URLS: list[str] = []


@pytest.fixture(autouse=True)
def _drop_mongo_databases() -> Iterator[None]:
    """Drop every MongoDB database the test made: those of :func:`backend_url` on a
    real server, and every new one on mongomock's named servers (which otherwise live
    as long as the process)."""
    servers = mongodb_backend._MOCK_SERVERS
    before = {n: set(s.list_created_database_names()) for n, s in list(servers.items())}
    yield
    while _MONGODB_URLS:
        mongodb_backend.drop_database(_MONGODB_URLS.pop())
    for name, server in list(servers.items()):
        for db in set(server.list_created_database_names()) - before.get(name, set()):
            mongodb_backend.drop_database(f"mongomock://{name}/{db}")


def open_tracker(name: str, tmp_path, **options) -> damas_core.Tracker:
    """Open a fresh tracker on backend ``name``; skip when the backend is unavailable."""
    try:
        return damas_core.open(backend_url(name, tmp_path), **options)
    except NotImplementedByBackend as e:
        pytest.skip(f"{name} backend unavailable here: {e}")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """The backend name the test runs on."""
    return request.param


@pytest.fixture
def make_tracker(backend, tmp_path) -> Iterator[Callable[..., damas_core.Tracker]]:
    """Open fresh trackers on the current backend with options; all closed afterwards."""
    opened: list[damas_core.Tracker] = []

    def make(**options) -> damas_core.Tracker:
        t = open_tracker(backend, tmp_path, **options)
        opened.append(t)
        return t

    yield make
    for t in opened:
        t.close()


@pytest.fixture
def tracker(make_tracker) -> damas_core.Tracker:
    """A fresh, empty tracker acting as the system, on the current backend."""
    return make_tracker()


@pytest.fixture
def system(tracker) -> damas_core.Tracker:
    """The embedded ``Tracker`` itself (tests that need ``as_user``, settings or the
    storage). The HTTP parity run does not override this one."""
    return tracker


@pytest.fixture
def decoded(monkeypatch):
    """How many elements the LMDB backend decodes (its one JSON decoder, counted)."""
    seen = [0]
    loads = lmdb_backend._loads

    def counting(raw):
        seen[0] += 1
        return loads(raw)

    monkeypatch.setattr(lmdb_backend, "_loads", counting)
    return seen
