"""The web dashboard: where every file stands at every site, live, served by
:func:`damas_core.http.make_app` at ``/`` (under any mount prefix).

- :mod:`.app`: the pages (:class:`~damas_core.dashboard.app.Dashboard`);
- :mod:`.csrf`: the forms' protection against cross-site requests;
- ``templates/`` (Jinja2, autoescaped) and ``static/`` (the script and style sheet).

What it shows comes from :mod:`damas_core.sync.status`, as ``damas sync status`` does.
The HTTP layer mounts it and hands it its request and answer types, so nothing here
imports :mod:`damas_core.http`. See docs/dashboard.md.
"""
