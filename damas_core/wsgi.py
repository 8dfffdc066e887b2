"""The stable import path of the WSGI adapter: ``from damas_core.wsgi import make_app``.

The HTTP layer itself lives in :mod:`damas_core.http`.

>>> import damas_core
>>> make_app(damas_core.open("memory://"), auth="none").max_body_size == MAX_BODY_SIZE
True
"""

from __future__ import annotations

from damas_core.http import MAX_BODY_SIZE, DamasApp, make_app

__all__ = ["MAX_BODY_SIZE", "DamasApp", "make_app"]
