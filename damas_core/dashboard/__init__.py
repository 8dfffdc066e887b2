"""The web dashboard: where every file stands at every site, live, served by
:func:`damas_core.http.make_app` at ``/`` (under any mount prefix).

- :mod:`.app`: the pages (:class:`~damas_core.dashboard.app.Dashboard`);
- :mod:`.csrf`: the forms' protection against cross-site requests;
- ``templates/`` (Jinja2, autoescaped) and ``static/`` (the script and style sheet).

What it shows comes from :mod:`damas_core.sync.status`, as ``damas sync status`` does.
See docs/dashboard.md.
"""

from __future__ import annotations

# The HTTP layer mounts the dashboard; importing it first keeps one import order
# (http.messages → dashboard.app → http.app) whichever module a caller imports first.
import damas_core.http  # noqa: F401
