"""How ``damas serve`` keeps event streams and long-polls open without holding one of
waitress's worker threads per client.

waitress runs the application in a fixed pool of worker threads (``--threads``, 8),
and a WSGI body that blocks keeps its thread until it ends. So :func:`serve_streams`
gives the server a channel and task class of its own: when the application answers
with a :class:`~damas_core.http.streams.Stream`, the task writes the response headers,
hands the stream to the one :class:`Hub` thread and returns, and the worker is free for
the next request. The hub wakes when the store's position moves (at once for this
process's commits, within 50 ms for other processes', through
:meth:`damas_core.feed.Feed.listen`) or a stream's heartbeat or deadline comes, runs the
streams that have something to do, and queues their bytes on their connections
(``channel.write_soon``, which never blocks here: a client more than
:data:`MAX_BUFFERED` bytes behind is dropped, and an event stream's client reconnects
with ``Last-Event-ID``). waitress's own loop sends them.

A stream's response is chunked with ``Connection: close``: the connection ends with
it, and bytes the client sends on it meanwhile are ignored.

>>> import damas_core
>>> from damas_core.http import make_app
>>> import waitress
>>> app = make_app(damas_core.open("memory://"), auth="none")
>>> server = waitress.create_server(app, host="127.0.0.1", port=0)
>>> hub = serve_streams(server)
>>> server.channel_class.__name__
'StreamingChannel'
>>> hub.stop(); server.close()
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from waitress.channel import ClientDisconnected
from waitress.task import WSGITask

from damas_core.http.streams import HANDOFF, Stream

log = logging.getLogger(__name__)

#: Bytes a stream's connection may have queued before its client is dropped as too slow.
MAX_BUFFERED = 4 * 1024 * 1024
#: The longest the hub sleeps, in seconds: closed connections are noticed this often.
SWEEP = 1.0


@dataclass(eq=False)
class _Client:
    stream: Stream
    channel: Any
    task: Any
    fresh: bool = field(default=True)


class Hub:
    """The one thread that writes every handed-over stream (see the module docstring).

    The thread runs only while there are streams: the first one starts it, it ends
    when the last one has. It listens to the feed of each stream's tracker (one server
    may serve several trackers).
    """

    def __init__(self) -> None:
        self._feeds: list[Any] = []
        self._clients: list[_Client] = []
        self._new: list[_Client] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    @property
    def clients(self) -> int:
        """How many streams the hub writes now."""
        with self._lock:
            return len(self._clients) + len(self._new)

    def stop(self) -> None:
        """End every stream, and take no more (they are written by the worker)."""
        self._stopped = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(5.0)
        with self._lock:
            clients, self._clients, self._new = self._clients + self._new, [], []
        for client in clients:
            self._finish(client)
        self._unlisten()

    def add(self, stream: Stream, channel: Any, task: Any) -> bool:
        """Take ``stream`` over (its headers are written, the rest is the hub's); False
        once the hub is stopped."""
        feed = stream.streams.feed
        with self._lock:
            if self._stopped:
                return False
            self._new.append(_Client(stream, channel, task))
            known = any(f is feed for f in self._feeds)
            if not known:
                self._feeds.append(feed)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="damas-streams", daemon=True)
                self._thread.start()
        if not known:
            feed.listen(self._moved)
        self._wake.set()
        return True

    def _moved(self, _position: int) -> None:
        self._wake.set()

    def _unlisten(self) -> None:
        with self._lock:
            feeds, self._feeds = self._feeds, []
        for feed in feeds:
            feed.unlisten(self._moved)

    def _run(self) -> None:
        while not self._stopped:
            self._wake.clear()
            with self._lock:
                self._clients.extend(self._new)
                self._new.clear()
                if not self._clients:
                    self._thread = None  # the next stream starts another
                    break
            try:
                timeout = self._pass()
            except Exception:  # a bug: keep serving the others
                log.exception("stream hub pass failed")
                timeout = SWEEP
            self._wake.wait(timeout)

    def _pass(self) -> float:
        """Run every stream that has something to do; returns how long to sleep."""
        now = time.monotonic()
        positions: dict[int, int] = {}  # per feed, read once a pass
        sleep = SWEEP
        kept = []
        for client in self._clients:
            stream = client.stream
            if not client.channel.connected:
                stream.end()
                continue
            feed = stream.streams.feed
            position = positions.get(id(feed))
            if position is None:
                position = positions[id(feed)] = feed.storage.last_seq()
            if client.fresh or stream.position < position or now >= stream.due():
                client.fresh = False
                try:
                    data, finished = stream.step(now)
                except Exception:
                    log.exception("stream from %d failed", stream.position)
                    data, finished = b"", True
                if data and not self._write(client, data):
                    stream.end()
                    continue
                if finished:
                    self._finish(client)
                    continue
                if stream.position < position:
                    sleep = 0.0  # more pages to read: come back at once
            sleep = min(sleep, max(0.0, stream.due() - now))
            kept.append(client)
        with self._lock:
            self._clients = kept
        return sleep

    def _write(self, client: _Client, data: bytes) -> bool:
        channel = client.channel
        if channel.total_outbufs_len > MAX_BUFFERED:
            log.warning(
                "dropping a stream whose client is %d bytes behind", channel.total_outbufs_len
            )
            self._close(channel)
            return False
        try:
            client.task.write(data)
        except (ClientDisconnected, OSError):
            return False
        return True

    def _finish(self, client: _Client) -> None:
        """End the response (the last chunk), close the connection once it is sent."""
        client.stream.end()
        try:
            if client.task.chunked_response and client.channel.connected:
                client.channel.write_soon(b"0\r\n\r\n")
        except (ClientDisconnected, OSError):
            pass
        self._close(client.channel)

    @staticmethod
    def _close(channel: Any) -> None:
        channel.close_when_flushed = True
        channel.server.pull_trigger()


class StreamingTask(WSGITask):
    """A waitress task that lets a :class:`~damas_core.http.streams.Stream` body be taken
    over by the server's hub instead of iterating it in the worker thread."""

    handed_off = False

    def get_environment(self) -> dict[str, Any]:
        environ = super().get_environment()
        environ[HANDOFF] = self.hand_off
        return environ

    def hand_off(self, stream: Stream) -> None:
        self.write(b"")  # the status line and headers, now
        self.handed_off = True
        # The hub ends the response and closes the connection; waitress must not.
        self.close_on_finish = False
        self.channel.streaming = True
        if not self.channel.server.damas_hub.add(stream, self.channel, self):
            stream.end()  # the server is stopping
            self.handed_off = False
            self.close_on_finish = True

    def finish(self) -> None:
        if not self.handed_off:
            super().finish()


class StreamingChannelMixin:
    """Put before a waitress channel class: its tasks may hand streams to the hub."""

    task_class = StreamingTask
    streaming = False

    def received(self, data: bytes) -> bool:
        if self.streaming:
            return True  # a stream's connection carries nothing more (Connection: close)
        return super().received(data)  # type: ignore[misc]

    def handle_write(self) -> None:
        if self.streaming:
            # The hub appends to the out buffers from its thread: flush under their lock
            # (waitress takes it only while a worker task runs, and none does here).
            with self.outbuf_lock:  # type: ignore[attr-defined]
                super().handle_write()  # type: ignore[misc]
        else:
            super().handle_write()  # type: ignore[misc]


def serve_streams(server: Any, app: Any = None) -> Hub:
    """Make ``server`` (from ``waitress.create_server``) hand the streams its
    applications answer with to a new :class:`Hub` (``server.damas_hub``; stop it with
    :meth:`Hub.stop` when the server closes).

    Each open stream is a connection, so the server's connection limit is raised to
    make room for the ``max_streams`` of ``app`` (the
    :class:`~damas_core.http.app.DamasApp` it serves, if given), and it polls with
    ``poll()`` rather than ``select()``, which stops at 1024 descriptors.
    """
    hub = Hub()
    servers = [server] if hasattr(server, "channel_class") else list(server.map.values())
    for each in servers:
        if hasattr(each, "channel_class"):
            base = each.channel_class
            each.channel_class = type("StreamingChannel", (StreamingChannelMixin, base), {})
            each.damas_hub = hub
            streams = getattr(app, "streams", None)
            if streams is not None:
                each.adj.connection_limit = max(each.adj.connection_limit, streams.limit + 100)
            each.adj.asyncore_use_poll = True
    return hub


__all__ = ["MAX_BUFFERED", "Hub", "StreamingChannelMixin", "StreamingTask", "serve_streams"]
