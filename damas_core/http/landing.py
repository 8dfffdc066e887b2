"""The static page served at ``/``: what this server is and where its API is described.

>>> "openapi.json" in page("/tracker")
True
"""

from __future__ import annotations

from html import escape

import damas_core

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>damas-core tracker</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 46rem; margin: 3rem auto; padding: 0 1rem;
       line-height: 1.5; color: #222; }}
code {{ background: #f3f3f3; padding: 0 .25em; border-radius: 3px; }}
h1 {{ font-size: 1.6rem; }}
</style>
</head>
<body>
<h1>damas-core tracker</h1>
<p>This server runs <strong>damas-core for Python</strong> {version}: a file tracker that
indexes the files of a project across storage sites. It speaks the damas-core 2.x HTTP
API under <code>{base}/api/</code>.</p>
<ul>
<li><a href="{base}/api/openapi.json">The OpenAPI document</a> describes every route.</li>
<li>Sign in with <code>POST {base}/api/signIn/</code> (<code>username</code>, <code>password</code>)
and send the token as <code>Authorization: Bearer &lt;token&gt;</code>.</li>
<li>From a shell: <code>damas -s {origin} signin</code>, then
<code>damas search '*'</code>.</li>
<li>From Python: <code>damas_core.client.connect("{origin}")</code>.</li>
</ul>
</body>
</html>
"""


def page(base: str, origin: str | None = None) -> str:
    """The landing page for an app mounted at ``base`` (``""`` at the root)."""
    base = escape(base.rstrip("/"), quote=True)
    return _PAGE.format(
        base=base, origin=escape(origin or f"http://host{base}"), version=damas_core.__version__
    )


__all__ = ["page"]
