"""The shared conformance suite, unchanged, through the HTTP client.

Each test's ``tracker`` is :func:`damas_core.client.connect` to a fresh ``memory://``
tracker served by waitress on a loopback port with ``auth="none"``; ``system`` is that
served tracker itself. The account and fault-injection modules
(``test_accounts``, ``test_faults``) are not run here: they exercise the embedded
``Tracker`` object (``as_user``, settings, storage faults), which a client does not have.
"""

from __future__ import annotations

import pytest

import damas_core
from damas_core.client import connect
from damas_core.wsgi import make_app
from tests.conformance.test_changes import *  # noqa: F403
from tests.conformance.test_crud import *  # noqa: F403
from tests.conformance.test_files import *  # noqa: F403
from tests.conformance.test_graph import *  # noqa: F403
from tests.conformance.test_id_rules import *  # noqa: F403
from tests.conformance.test_search import *  # noqa: F403


@pytest.fixture
def backend() -> str:
    """One backend behind the server: the conformance suite covers the others."""
    return "memory"


@pytest.fixture
def served(shared_server):
    switch, url = shared_server
    embedded = damas_core.open("memory://")
    switch.app = make_app(embedded, auth="none")
    with connect(url) as client:
        yield embedded, client
    embedded.close()


@pytest.fixture
def tracker(served):
    return served[1]


@pytest.fixture
def system(served):
    return served[0]
