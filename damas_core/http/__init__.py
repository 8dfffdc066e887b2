"""The HTTP layer: the tracker's API (and pages) as a plain WSGI application.

Built in layers, each importing only the ones before it:

- :mod:`~damas_core.http.messages`: request and response types (``Call``, ``Answer``);
- :mod:`~damas_core.http.streams`: answers written over time from the change feed
  (event streams, long-polls) and their bound;
- :mod:`~damas_core.http.handlers`: one thin function per route, calling the core;
- :mod:`~damas_core.http.routes`: the route table;
- :mod:`~damas_core.http.openapi`: the OpenAPI document, generated from the table;
- :mod:`~damas_core.http.app`: :func:`make_app`, the WSGI callable (dispatch, errors,
  authentication);
- :mod:`~damas_core.http.hub` and :mod:`~damas_core.http.server`: the waitress server
  ``damas serve`` runs, whose streams one hub thread writes.

No business rule lives here: permissions, sign-in and every operation are the core's.

>>> import damas_core
>>> app = make_app(damas_core.open("memory://"), auth="none")
>>> callable(app)
True
"""

from __future__ import annotations

from damas_core.http.app import MAX_BODY_SIZE, DamasApp, make_app

__all__ = ["MAX_BODY_SIZE", "DamasApp", "make_app"]
