"""Answers written over time from the change feed: the Server-Sent Events of
``GET /api/events/`` and the long-polls of ``GET /api/changes/?wait=S``.

A :class:`Stream` is a WSGI response body made in steps: :meth:`Stream.step` reads
what the feed holds past the stream's position (never blocking) and says what to write
and whether the answer is complete. Every step re-checks the account the stream acts
for (:meth:`Stream.read`): what a stream delivers is filtered with the account's class
as it stands after the feed was read, and a stream whose token no longer holds, or
whose account was deleted or disabled, ends. A step runs whenever the store's position
moves (an account change is a write, so it wakes every stream) and at least every
``check`` seconds (a heartbeat: token expiry needs no write). Iterated as a plain WSGI body it blocks between
steps on :meth:`damas_core.feed.Feed.wait`, so under any WSGI server an open stream
holds one of its threads; ``damas serve`` instead hands every stream over to one hub
thread (:mod:`damas_core.http.hub`) and frees the worker at once.

:class:`Streams` bounds how many are open at a time: one more is refused with 503.

>>> event("change", 7, {"seq": 7, "_id": "/a", "deleted": False})
b'id: 7\\nevent: change\\ndata: {"seq":7,"_id":"/a","deleted":false}\\n\\n'
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from damas_core.errors import TooManyStreams, Unauthorized

log = logging.getLogger(__name__)

#: Seconds between two heartbeats (SSE comment lines) on an idle event stream, so
#: proxies and the server's idle-connection timeout keep it open; also the longest an
#: idle stream goes without re-checking its token.
HEARTBEAT = 15.0
#: Open streams (event streams and waiting long-polls) one application allows by default.
MAX_STREAMS = 1000
#: How many changes one step of an event stream reads.
PAGE = 1000
#: What a browser waits before reconnecting a dropped event stream, in milliseconds.
RETRY_MS = 2000
#: The WSGI environ key under which a server offers to take a stream over.
HANDOFF = "damas.stream_handoff"


def event(name: str, seq: int, data: Any) -> bytes:
    """One Server-Sent Event: ``id:`` the seq, ``event:`` the name, ``data:`` JSON."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, name.encode(), orjson.dumps(data))


class Streams:
    """The open streams of one application: at most ``limit`` at a time.

    >>> import damas_core
    >>> slots = Streams(damas_core.open("memory://").feed, limit=1)
    >>> slots.take("events"); slots.open
    1
    >>> slots.take("events")
    Traceback (most recent call last):
    ...
    damas_core.errors.TooManyStreams: events error: 1 streams are open, the most this server allows; try again later
    """

    def __init__(
        self, feed: Any, *, limit: int = MAX_STREAMS, heartbeat: float = HEARTBEAT
    ) -> None:
        if limit < 1:
            raise ValueError(f"max_streams must be >= 1, not {limit!r}")
        self.feed = feed
        self.limit = limit
        self.heartbeat = heartbeat
        self.open = 0
        self._lock = threading.Lock()

    def take(self, op: str) -> None:
        """Count one more open stream; ``TooManyStreams`` when all are taken."""
        with self._lock:
            if self.open >= self.limit:
                raise TooManyStreams(
                    f"{op} error: {self.open} streams are open, the most this server allows; "
                    "try again later",
                    op=op,
                )
            self.open += 1

    def release(self) -> None:
        """Count one stream fewer."""
        with self._lock:
            self.open -= 1

    def events(
        self,
        session: Any,
        environ: dict[str, Any],
        position: int,
        *,
        elements: bool = False,
    ) -> EventStream:
        """A new :class:`EventStream` from ``position``, in a slot of its own."""
        self.take("events")
        return EventStream(self, session, environ, position, elements=elements)

    def poll(
        self,
        session: Any,
        environ: dict[str, Any],
        position: int,
        *,
        limit: int,
        elements: bool,
        wait: float,
    ) -> PollStream:
        """A new :class:`PollStream` waiting ``wait`` seconds from now, in a slot of its own."""
        self.take("changes")
        deadline = time.monotonic() + wait
        return PollStream(
            self, session, environ, position, limit=limit, elements=elements, deadline=deadline
        )


class Stream:
    """A response body made from the feed in steps (see the module docstring).

    ``position`` is the seq the stream has read up to: a server calls :meth:`step` when
    the store's position is past it, or once :meth:`due` has come.
    """

    content_type = "application/octet-stream"

    def __init__(self, streams: Streams, session: Any, environ: dict[str, Any], position: int):
        self.streams = streams
        self.session = session
        self.environ = environ
        self.position = position
        self.handed_off = False
        self._released = False

    def step(self, now: float) -> tuple[bytes, bool]:
        """What to write now, and whether the answer is complete. Never blocks."""
        raise NotImplementedError

    def due(self) -> float:
        """The ``time.monotonic()`` at which :meth:`step` must run even if nothing changed."""
        raise NotImplementedError

    def read(self, limit: int, elements: bool) -> dict[str, Any] | None:
        """The feed past :attr:`position` as the account sees it now, or ``None`` when
        the account may no longer read (the stream must end).

        :meth:`~damas_core.tracker.Session.changes` filters each page with the session
        renewed after the page was read; the stream keeps that session for its next
        step."""
        try:
            answer = self.session.changes(self.position, limit, elements=elements)
            self.session = self.session.renewed()
        except Unauthorized:
            return None
        return answer

    def end(self) -> None:
        """Give the stream's slot back (once)."""
        if not self._released:
            self._released = True
            self.streams.release()

    # -- as a plain WSGI body --------------------------------------------------------

    def __iter__(self) -> Iterator[bytes]:
        hand_off: Callable[[Stream], None] | None = self.environ.get(HANDOFF)
        if hand_off is not None:
            self.handed_off = True
            hand_off(self)  # the server writes it from now on
            return iter(())
        return self._blocking()

    def _blocking(self) -> Iterator[bytes]:
        feed = self.streams.feed
        # waitress tells a WSGI body that its client left; other servers find out when
        # a write fails (at the next heartbeat at the latest).
        gone: Callable[[], bool] | None = self.environ.get("waitress.client_disconnected")
        try:
            while True:
                data, finished = self.step(time.monotonic())
                if data:
                    yield data
                if finished:
                    return
                timeout = max(0.0, self.due() - time.monotonic())
                feed.wait(self.position, timeout if gone is None else min(timeout, 1.0))
                if gone is not None and gone():
                    return
        finally:
            self.end()

    def close(self) -> None:
        """The WSGI ``close``: ends the stream, unless a server took it over."""
        if not self.handed_off:
            self.end()


class EventStream(Stream):
    """``GET /api/events/``: one ``change`` event per change after ``position``
    (``reset`` when the reader must read everything again), heartbeats while idle; it
    ends when its account may no longer read (see :meth:`Stream.read`)."""

    content_type = "text/event-stream"

    def __init__(
        self,
        streams: Streams,
        session: Any,
        environ: dict[str, Any],
        position: int,
        *,
        elements: bool = False,
    ) -> None:
        super().__init__(streams, session, environ, position)
        self.elements = elements
        self.started = False
        self.next_beat = time.monotonic() + streams.heartbeat

    def due(self) -> float:
        return self.next_beat

    def step(self, now: float) -> tuple[bytes, bool]:
        out = []
        if not self.started:
            self.started = True
            out.append(b"retry: %d\n: damas change feed from %d\n\n" % (RETRY_MS, self.position))
        answer = self.read(PAGE, self.elements)
        if answer is None:
            return b"".join(out), True  # the account lost its right to read: the end
        last = answer["last_seq"]
        if answer.get("reset"):
            out.append(event("reset", last, {"last_seq": last, "reset": True}))
        for change in answer["changes"]:
            out.append(event("change", change["seq"], change))
        self.position = last
        if now >= self.next_beat:
            self.next_beat = now + self.streams.heartbeat
            out.append(b": keep-alive\n\n")
        return b"".join(out), False


class PollStream(Stream):
    """``GET /api/changes/?wait=S`` once the first read found nothing: the JSON answer
    of :meth:`~damas_core.tracker.Session.changes`, written when a visible change
    arrives or ``deadline`` (a ``time.monotonic()``) passes."""

    content_type = "application/json"

    def __init__(
        self,
        streams: Streams,
        session: Any,
        environ: dict[str, Any],
        position: int,
        *,
        limit: int,
        elements: bool,
        deadline: float,
    ) -> None:
        super().__init__(streams, session, environ, position)
        self.limit = limit
        self.elements = elements
        self.deadline = deadline

    def due(self) -> float:
        return self.deadline

    def step(self, now: float) -> tuple[bytes, bool]:
        answer = self.read(self.limit, self.elements)
        if answer is None:  # the account may no longer read: an empty answer, at once
            return orjson.dumps({"last_seq": self.position, "changes": []}), True
        if answer["changes"] or answer.get("reset") or now >= self.deadline:
            return orjson.dumps(answer), True
        self.position = answer["last_seq"]  # past changes this reader may not see
        return b"", False


__all__ = [
    "HANDOFF",
    "HEARTBEAT",
    "MAX_STREAMS",
    "EventStream",
    "PollStream",
    "Stream",
    "Streams",
    "event",
]
