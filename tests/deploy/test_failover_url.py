"""The store URL docs/deploy.md gives for failover: both PostgreSQL servers named, libpq
picking the one that takes writes (``target_session_attrs=read-write``)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest

import damas_core
from tests import postgres_server
from tests.deploy.cluster import free_port


def test_a_url_naming_a_dead_server_and_the_primary_opens_the_primary():
    url = postgres_server.store_url()
    if url is None:
        pytest.skip(f"no PostgreSQL server here: {postgres_server.why_not()}")
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there: a primary that is gone
    both = f"{user}@{dead},{host}" if user else f"{dead},{host}"
    query = f"{parts.query}&target_session_attrs=read-write".lstrip("&")
    with damas_core.open(urlunsplit((parts.scheme, both, parts.path, query, ""))) as tracker:
        assert tracker.create({"_id": "/a"})["_id"] == "/a"
    with damas_core.open(url) as tracker:
        assert tracker.read("/a")["_id"] == "/a"
