"""Fixtures for the dashboard: a tracker with one user per class, its app, and a
browser-like client that signs in through the sign-in form."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from damas_core.sync.volumes import create_volume
from werkzeug.test import Client

import damas_core
from damas_core.wsgi import make_app
from tests.http.conftest import USERS, add_users

__all__ = ["USERS", "Browser", "csrf_of"]

_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    """The CSRF field of the first form of a page."""
    found = _CSRF.search(html)
    assert found, "the page has no form with a csrf field"
    return found.group(1)


class Browser:
    """A werkzeug client keeping cookies, as a browser does."""

    def __init__(self, app: Any, base: str = "") -> None:
        self.client = Client(app)
        self.base = base

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(self.base + path, **kw)

    def post(self, path: str, data: dict[str, Any], **kw: Any) -> Any:
        return self.client.post(self.base + path, data=data, **kw)

    def form(self, page: str, action: str, data: dict[str, Any]) -> Any:
        """Post ``data`` to ``action`` with the csrf field of ``page``, as its form would."""
        html = self.get(page).get_data(as_text=True)
        return self.post(action, {"csrf": csrf_of(html), **data})

    def sign_in(self, name: str, password: str | None = None) -> Any:
        return self.form(
            "/signin", "/signin", {"username": name, "password": password or f"{name}-pw"}
        )

    def cookie(self, name: str) -> Any:
        return self.client.get_cookie(name)


@pytest.fixture
def tracker(tmp_path) -> Iterator[damas_core.Tracker]:
    t = damas_core.open(f"lmdb://{tmp_path}/store")
    add_users(t)
    for name in ("paris", "tokyo", "lyon"):
        create_volume(t, {"_id": f"vol_{name}", "name": name, "url": f"file://{tmp_path}/{name}/"})
    yield t
    t.close()


@pytest.fixture
def app(tracker) -> Any:
    return make_app(tracker, auth="jwt")


@pytest.fixture
def browser(app):
    """A new browser for ``app``; ``browser("ula")`` is one signed in as ula."""

    def make(name: str | None = None) -> Browser:
        b = Browser(app)
        if name:
            answer = b.sign_in(name)
            assert answer.status_code == 303, answer.get_data(as_text=True)
        return b

    return make
