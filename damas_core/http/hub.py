"""How ``damas serve`` keeps event streams and long-polls open without holding one of
waitress's worker threads, or any of its loop's time, per client.

waitress runs the application in a fixed pool of worker threads (``--threads``, 8),
and a WSGI body that blocks keeps its thread until it ends. So :func:`serve_streams`
gives the server a channel and task class of its own: when the application answers
with a :class:`~damas_core.http.streams.Stream`, the task writes the response headers,
hands the stream to the one :class:`Hub` thread and returns, and the worker is free for
the next request. The connection then leaves waitress altogether (its loop goes over
every connection it holds at each turn, so 200 idle ones would slow every request):
waitress's loop thread gives the hub whatever of the headers is still unsent and
forgets the socket, and the hub runs its own loop over the streams' sockets.

The hub wakes when the store's position moves (at once for this process's commits,
within 50 ms for other processes', through :meth:`damas_core.feed.Feed.listen`), when a
socket can take more bytes or its client left, or when a stream's heartbeat or
deadline comes. It runs the streams that have something to do and sends their bytes
without ever blocking. A stream whose client has not taken the last
:data:`STEP_BUFFER` bytes is not run again until it has (a slow reader of a long
backlog gets it at its own pace); one that takes nothing for :data:`STALL` seconds, or
falls :data:`MAX_BUFFERED` bytes behind, is dropped (an event stream's client
reconnects with ``Last-Event-ID``).

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

import contextlib
import logging
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from waitress.task import WSGITask

from damas_core.http.streams import HANDOFF, Stream

log = logging.getLogger(__name__)

#: A stream is run again only once less than this is waiting to be sent to its client.
STEP_BUFFER = 256 * 1024
#: Seconds a client may take nothing while bytes wait for it before it is dropped.
STALL = 30.0
#: Bytes a stream's connection may have queued before its client is dropped.
MAX_BUFFERED = 32 * 1024 * 1024
#: The longest the hub sleeps, in seconds, when no stream has a deadline sooner.
SWEEP = 1.0
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


@dataclass(eq=False)
class _Client:
    stream: Stream
    sock: socket.socket
    chunked: bool
    pending: bytearray = field(default_factory=bytearray)
    fresh: bool = True
    closing: bool = False
    took: float = field(default_factory=time.monotonic)  # when it last took bytes


def _framed(data: bytes, chunked: bool) -> bytes:
    return b"%X\r\n%s\r\n" % (len(data), data) if chunked else data


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
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, _READ, None)
        self._signalled = False

    @property
    def clients(self) -> int:
        """How many streams the hub writes now."""
        with self._lock:
            return len(self._clients) + len(self._new)

    def stop(self) -> None:
        """End every stream, and take no more."""
        self._stopped = True
        self._wake()
        with self._lock:  # started under this lock
            thread = self._thread
        if thread is not None:
            thread.join(5.0)
        with self._lock:
            clients, self._clients, self._new = self._clients + self._new, [], []
        for client in clients:
            self._finish(client)
            with contextlib.suppress(OSError):
                client.sock.send(bytes(client.pending))
            self._drop(client)
        self._unlisten()

    # -- taking streams over -----------------------------------------------------------

    def take(self, stream: Stream, channel: Any, task: Any) -> bool:
        """Take ``stream`` over from a waitress worker: its headers are written (maybe
        not all sent). False once the hub is stopped."""
        if self._stopped:
            return False
        # The connection leaves waitress in its own loop thread, between two turns.
        channel.server.trigger.pull_trigger(lambda: self._adopt(stream, channel, task))
        return True

    def _adopt(self, stream: Stream, channel: Any, task: Any) -> None:
        if not channel.connected or channel.socket.fileno() < 0:
            stream.end()  # the client left before the hub could take it
            return
        with channel.outbuf_lock:
            unsent = bytearray()
            for buffer in channel.outbufs:
                size = buffer.__len__()  # as waitress does: len() may overflow
                if size:
                    unsent += buffer.get(size, True)
            channel.total_outbufs_len = 0
            sock = channel.socket
            channel.del_channel()  # waitress forgets it; the socket stays open
        client = _Client(stream, sock, chunked=task.chunked_response, pending=unsent)
        feed = stream.streams.feed
        with self._lock:
            if self._stopped:
                stream.end()
                sock.close()
                return
            self._new.append(client)
            known = any(f is feed for f in self._feeds)
            if not known:
                self._feeds.append(feed)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="damas-streams", daemon=True)
                self._thread.start()
        if not known:
            feed.listen(self._moved)
        self._wake()

    def _moved(self, _position: int) -> None:
        self._wake()

    def _wake(self) -> None:
        if not self._signalled:
            self._signalled = True
            with contextlib.suppress(OSError):  # full: it is awake already
                self._wake_w.send(b"!")

    def _unlisten(self) -> None:
        with self._lock:
            feeds, self._feeds = self._feeds, []
        for feed in feeds:
            feed.unlisten(self._moved)

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped:
            with self._lock:
                for client in self._new:
                    try:
                        self._selector.register(client.sock, _READ, client)
                    except (OSError, ValueError):  # closed meanwhile
                        client.stream.end()
                        continue
                    self._clients.append(client)
                self._new.clear()
                if not self._clients:
                    self._thread = None  # the next stream starts another
                    return
            # Cleared before the streams are run: a change after this point wakes us.
            self._signalled = False
            with contextlib.suppress(OSError):
                while self._wake_r.recv(4096):
                    pass
            try:
                self._turn()
            except Exception:  # a bug: keep serving the others
                log.exception("stream hub turn failed")
                time.sleep(0.1)

    def _turn(self) -> None:
        """Run the streams, then wait for the next thing to do."""
        for key, mask in self._selector.select(self._pass()):
            client = key.data
            if client is None:
                continue  # woken: the next pass runs the streams
            if mask & _READ:
                self._read(client)
            if mask & _WRITE and client in self._clients:
                self._send(client)

    def _pass(self) -> float:
        """Run every stream that has something to do; returns how long to sleep."""
        now = time.monotonic()
        positions: dict[int, int] = {}  # per feed, read once a pass
        sleep = SWEEP
        for client in list(self._clients):
            if client.pending and now - client.took > STALL:
                log.warning("dropping a stream whose client took nothing for %.0f s", STALL)
                self._drop(client)
                continue
            if client.closing or len(client.pending) >= STEP_BUFFER:
                sleep = min(sleep, STALL)  # its socket wakes us when it takes more
                continue
            stream = client.stream
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
                if data:
                    if not client.pending:
                        client.took = now  # the wait for this client starts now
                    client.pending += _framed(data, client.chunked)
                if finished:
                    self._finish(client)
                self._send(client)
                if client not in self._clients or client.closing:
                    continue
                if stream.position < position:
                    sleep = 0.0  # more pages to read: come back at once
            sleep = min(sleep, max(0.0, stream.due() - now))
        return sleep

    def _send(self, client: _Client) -> None:
        """Send what the socket takes now; close a finished stream once all is sent."""
        try:
            while client.pending:
                sent = client.sock.send(client.pending)
                del client.pending[:sent]
                client.took = time.monotonic()
        except BlockingIOError:
            pass
        except OSError:
            self._drop(client)
            return
        if not client.pending and client.closing:
            self._drop(client)
        elif len(client.pending) > MAX_BUFFERED:
            log.warning("dropping a stream whose client is %d bytes behind", len(client.pending))
            self._drop(client)
        else:
            self._selector.modify(client.sock, _READ | (_WRITE if client.pending else 0), client)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(4096)  # ignored, but b"" means the client left
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)

    def _finish(self, client: _Client) -> None:
        """End the response: the last chunk, then the connection closes once sent."""
        if not client.closing:
            client.closing = True
            client.stream.end()
            if client.chunked:
                client.pending += b"0\r\n\r\n"

    def _drop(self, client: _Client) -> None:
        client.stream.end()
        if client in self._clients:
            self._clients.remove(client)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(client.sock)
        with contextlib.suppress(OSError):
            client.sock.close()


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
        self.channel.streaming = True
        if self.channel.server.damas_hub.take(stream, self.channel, self):
            self.handed_off = True
            # The hub ends the response and closes the connection; waitress must not.
            self.close_on_finish = False
        else:
            stream.end()  # the server is stopping: an empty answer

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


def serve_streams(server: Any, app: Any = None) -> Hub:
    """Make ``server`` (from ``waitress.create_server``) hand the streams its
    applications answer with to a new :class:`Hub` (``server.damas_hub``; stop it with
    :meth:`Hub.stop` when the server closes).

    Each open stream is a connection (the hub's, not waitress's), so the server's
    connection limit, which counts them while they are handed over, is raised to make
    room for the ``max_streams`` of ``app`` (the :class:`~damas_core.http.app.DamasApp`
    it serves, if given), and it polls with ``poll()`` rather than ``select()``, which
    stops at 1024 descriptors.
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


__all__ = [
    "MAX_BUFFERED",
    "STALL",
    "STEP_BUFFER",
    "Hub",
    "StreamingChannelMixin",
    "StreamingTask",
    "serve_streams",
]
