"""The waitress server ``damas serve`` runs: the API's body limit, JSON errors, and
event streams and long-polls written by one thread (:mod:`damas_core.http.hub`).

waitress answers some requests itself, before the application sees them: a body over
its ``max_request_body_size`` (``Content-Length`` too large, or a chunked body that
grows too large), a malformed request line or header. Its answers are ``text/plain``;
:func:`create_server` makes them the API's JSON error body,
``{"error": "request error: …", "status": N}``, and sets waitress's limit to the
application's, so a body over the limit gets the same 413 however it is sent, refused
before it is read.

>>> import damas_core
>>> from damas_core.http import make_app
>>> app = make_app(damas_core.open("memory://"), auth="none", max_body_size=1000)
>>> server = create_server(app, host="127.0.0.1", port=0, max_body_size=1000)
>>> server.adj.max_request_body_size
1001
>>> stop_server(server)
"""

from __future__ import annotations

from typing import Any

import orjson
import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from damas_core.http.app import MAX_BODY_SIZE
from damas_core.http.hub import serve_streams


class JsonErrorTask(ErrorTask):
    """waitress's own error answers, as the API's JSON error body."""

    def execute(self) -> None:
        error = self.request.error
        limit = self.channel.server.adj.max_request_body_size - 1
        if error.code == 413:
            message = f"request error: the body is over the limit of {limit} bytes"
        else:
            message = f"request error: {error.reason.lower()} ({error.body})"
        body = orjson.dumps({"error": message, "status": error.code})
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend(
            [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        )
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    """A waitress channel whose own error answers are JSON."""

    error_task_class = JsonErrorTask


def create_server(app: Any, *, max_body_size: int = MAX_BODY_SIZE, **options: Any) -> Any:
    """A waitress server for ``app`` (options as ``waitress.create_server``'s) that
    refuses bodies over ``max_body_size`` bytes (the limit given to ``make_app``) with
    the API's JSON 413, and answers its other errors in JSON too. Its event streams
    and waiting long-polls are handed to ``server.damas_hub``. Once its loop has
    returned, stop it with :func:`stop_server`."""
    # The application decides whom to believe about X-Forwarded-For (make_app's
    # trusted_proxies): waitress must pass the header on, not clear it.
    options.setdefault("clear_untrusted_proxy_headers", False)
    # waitress refuses a body of max_request_body_size bytes or more.
    server = waitress.create_server(app, max_request_body_size=max_body_size + 1, **options)
    servers = [server] if hasattr(server, "channel_class") else list(server.map.values())
    for each in servers:
        if hasattr(each, "channel_class"):
            each.channel_class = JsonErrorChannel
    serve_streams(server, app)
    return server


def stop_server(server: Any, *, timeout: float = 5.0) -> None:
    """Stop a server made by :func:`create_server` once its loop has returned: end its
    event streams and long-polls, let its worker threads finish the requests they hold
    (up to ``timeout`` seconds), then close every connection, the listening sockets and
    the pipe that wakes the loop.

    The order matters in a process that goes on after it (an application embedding the
    API, a test run): a worker finishing a request wakes the loop by writing to that
    pipe, and once the pipe is closed its descriptor number can belong to another
    connection of the process, which would receive the byte. waitress's own ``close()``
    of a one-address server leaves its workers running."""
    server.damas_hub.stop()
    server.task_dispatcher.shutdown(timeout=timeout)
    # One address: the server and its channels are in server._map; several: server.map.
    wasyncore.close_all(getattr(server, "_map", None) or server.map)


__all__ = ["JsonErrorChannel", "JsonErrorTask", "create_server", "stop_server"]
