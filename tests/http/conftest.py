"""Fixtures for the HTTP tests: a real waitress server on 127.0.0.1 with an ephemeral
port, serving the WSGI app in a background thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import damas_core
from damas_core.client import Client, connect
from damas_core.http import MAX_BODY_SIZE
from damas_core.http.server import create_server, stop_server
from damas_core.wsgi import make_app

#: Users every HTTP test tracker has, one per class (password = name + "-pw").
USERS = {"gus": "guest", "ula": "user", "eddie": "editor", "ada": "admin"}


class Switch:
    """A WSGI app forwarding to ``self.app``, so one server can serve a fresh app per test."""

    def __init__(self) -> None:
        self.app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


@contextmanager
def serving(app: Any, **options: Any) -> Iterator[str]:
    """Serve ``app`` with waitress, configured as ``damas serve`` configures it (see
    :mod:`damas_core.http.server`), on a free loopback port; yields the base URL."""
    options.setdefault("threads", 4)
    options.setdefault("max_body_size", getattr(app, "max_body_size", MAX_BODY_SIZE))
    server = create_server(app, host="127.0.0.1", port=0, **options)
    stop = threading.Event()

    def run() -> None:
        # server.run() cannot be stopped from another thread without closing sockets
        # under its poll: loop in short steps and close once it has stopped.
        while not stop.is_set():
            server.asyncore.loop(
                timeout=0.05, map=server._map, count=1, use_poll=server.adj.asyncore_use_poll
            )

    thread = threading.Thread(target=run, name="waitress", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        stop.set()
        thread.join(5)
        stop_server(server)


_HASHES: dict[str, str] = {}


def add_users(tracker: damas_core.Tracker) -> None:
    """Store the users of :data:`USERS`; hashes are computed once per run (argon2 is slow
    on purpose), then stored as they are."""
    from damas_core.passwords import hash_password

    for name in USERS:
        if name not in _HASHES:
            _HASHES[name] = hash_password(f"{name}-pw")
    tracker.storage.insert_many(
        [
            {"_id": f"@{n}", "class": c, "password": _HASHES[n], "author": "damas"}
            for n, c in USERS.items()
        ]
    )


@pytest.fixture(scope="session")
def shared_server() -> Iterator[tuple[Switch, str]]:
    """One server for the whole run, whose app each test replaces."""
    switch = Switch()
    with serving(switch) as url:
        yield switch, url


@pytest.fixture
def memory_tracker() -> Iterator[damas_core.Tracker]:
    """A fresh in-memory tracker with one user per class."""
    t = damas_core.open("memory://")
    add_users(t)
    yield t
    t.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """``serve(app)`` → base URL; every server started is stopped at the end."""
    stack: list[Any] = []

    def start(app: Any, **options: Any) -> str:
        cm = serving(app, **options)
        stack.append(cm)
        return cm.__enter__()

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


@pytest.fixture
def jwt_server(memory_tracker, serve) -> tuple[damas_core.Tracker, str]:
    """``(tracker, url)``: the memory tracker served with ``auth="jwt"``."""
    return memory_tracker, serve(make_app(memory_tracker, auth="jwt"))


@contextmanager
def clients_of(url: str) -> Iterator[Callable[[str], Client]]:
    """``make("ula")`` → a client of ``url`` signed in as that user (a :data:`USERS`
    password); every client made is closed at the end."""
    clients: list[Client] = []

    def make(name: str) -> Client:
        c = connect(url)
        c.sign_in(name, f"{name}-pw")
        clients.append(c)
        return c

    try:
        yield make
    finally:
        for c in clients:
            c.close()


@pytest.fixture
def signed_in(jwt_server) -> Iterator[Callable[[str], Client]]:
    """``signed_in("ula")`` → a client signed in as that user."""
    with clients_of(jwt_server[1]) as make:
        yield make
