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

Connections that send nothing cannot crowd requests out (:class:`IdleLimits`): one that
has not sent a whole request :data:`IDLE_TIMEOUT` seconds after it connected or got its
last answer is closed, and when the server holds as many connections as it may
(``connection_limit``), the ones that have waited longest without a request being
served are closed to make room for new ones. Event streams and long-polls leave
waitress once answered (:mod:`damas_core.http.hub`), so they count only against
``--max-streams``, never against the room plain requests have.
"""

from __future__ import annotations

import time
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


#: Seconds a connection may take to send a whole request line and headers, from when
#: it connected or its last answer was written, before it is closed.
IDLE_TIMEOUT = 10.0
#: Connections closed at once to make room when the server is full.
ROOM = 16


class JsonErrorChannel(HTTPChannel):
    """A waitress channel whose own error answers are JSON, and which knows since when
    it has been waiting for its next request (``waiting_since``)."""

    error_task_class = JsonErrorTask
    waiting_since = 0.0
    streaming = False  # set once its answer is an event stream or a long-poll

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting_since = self.creation_time

    def service(self) -> None:
        super().service()
        self.waiting_since = time.time()  # answered: the next request starts now

    def idle(self, now: float, timeout: float) -> bool:
        """True when no request is being served and the next one has not come whole
        within ``timeout`` seconds: nothing arrived, or a request line and headers
        still unfinished (a body that keeps arriving is spared)."""
        if self.requests or self.streaming or self.will_close or self.total_outbufs_len:
            return False  # busy, or still sending an answer (waitress's own timeout)
        if self.waiting_since >= now - timeout:
            return False
        partial = self.request
        uploading = partial is not None and partial.headers_finished
        return not uploading or self.last_activity < now - timeout


class IdleLimits:
    """Put before a waitress server class: close connections that send no request
    (see the module's docstring). ``idle_timeout`` is in seconds."""

    idle_timeout: float = IDLE_TIMEOUT
    active_channels: dict[int, Any]
    adj: Any

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # type: ignore[misc]
        for channel in list(self.active_channels.values()):
            if isinstance(channel, JsonErrorChannel) and channel.idle(now, self.idle_timeout):
                channel.will_close = True

    def readable(self) -> bool:
        full = getattr(self, "accepting", False) and len(self._map) >= self.adj.connection_limit
        if full and self.make_room(time.time()):
            # they close in this turn of the loop: accept in the next one (without
            # waitress's warning that the server is full)
            return False
        return super().readable()  # type: ignore[misc]

    def make_room(self, now: float) -> int:
        """Close the :data:`ROOM` connections waiting longest for a request (none being
        served); how many. They close in the loop's next turn, and the server accepts
        again once below its limit."""
        waiting = [
            c
            for c in self.active_channels.values()
            if isinstance(c, JsonErrorChannel) and c.idle(now, 0.0)
        ]
        waiting.sort(key=lambda c: c.last_activity)
        for channel in waiting[:ROOM]:
            channel.will_close = True
        return min(len(waiting), ROOM)

    _map: dict[int, Any]


def create_server(
    app: Any,
    *,
    max_body_size: int = MAX_BODY_SIZE,
    idle_timeout: float = IDLE_TIMEOUT,
    **options: Any,
) -> Any:
    """A waitress server for ``app`` (options as ``waitress.create_server``'s) that
    refuses bodies over ``max_body_size`` bytes (the limit given to ``make_app``) with
    the API's JSON 413, and answers its other errors in JSON too; closes connections
    that send no whole request within ``idle_timeout`` seconds, and those waiting
    longest when it is full (:class:`IdleLimits`). Its event streams and waiting
    long-polls are handed to ``server.damas_hub``. Once its loop has returned, stop it
    with :func:`stop_server`."""
    if not idle_timeout > 0:
        raise ValueError(f"idle_timeout must be a number of seconds > 0, not {idle_timeout!r}")
    # The application decides whom to believe about X-Forwarded-For (make_app's
    # trusted_proxies): waitress must pass the header on, not clear it.
    options.setdefault("clear_untrusted_proxy_headers", False)
    # waitress refuses a body of max_request_body_size bytes or more.
    server = waitress.create_server(app, max_request_body_size=max_body_size + 1, **options)
    servers = [server] if hasattr(server, "channel_class") else list(server.map.values())
    for each in servers:
        if hasattr(each, "channel_class"):
            each.channel_class = JsonErrorChannel
            each.__class__ = type("DamasServer", (IdleLimits, type(each)), {})
            each.idle_timeout = idle_timeout
            # look for idle connections often enough to honour the timeout
            each.adj.cleanup_interval = max(
                1, min(each.adj.cleanup_interval, int(idle_timeout / 2))
            )
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


__all__ = [
    "IDLE_TIMEOUT",
    "IdleLimits",
    "JsonErrorChannel",
    "JsonErrorTask",
    "create_server",
    "stop_server",
]
