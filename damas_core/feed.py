"""The live side of the change feed of one open tracker: waiting for the next change,
``on("change")`` callbacks, and dropping old tombstones.

What the feed holds is the storage's (:meth:`damas_core.backends.base.Storage.changes`);
this module only knows when it moves, by watching the store's position
(:meth:`~damas_core.backends.base.Storage.last_seq`):

- a write committed by this process calls :meth:`Feed.committed` (through
  :meth:`~damas_core.backends.base.Storage.on_commit`), which wakes waiters and
  listeners at once, in the writing thread;
- a write committed by another process on the same store (LMDB, SQLite, TinyDB) is
  seen by polling the position every :data:`POLL_INTERVAL` (50 ms) from one thread,
  and only while someone waits or listens: that is the latency of such writes.

Tombstones older than the retention (default 30 days) are dropped by
:meth:`Feed.compact`, run by the first commit once an hour has passed since the tracker
was opened or last compacted (in that commit's thread), or whenever it is called.

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> seen = []
>>> t.on("change", seen.append)
>>> _ = t.create({"_id": "/a"})
>>> seen
[{'seq': 1, '_id': '/a', 'deleted': False}]
>>> t.feed.wait(after=0, timeout=1.0)  # the position is already past 0
1
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from damas_core.backends.base import Storage
from damas_core.elements import RESERVED_PREFIX, now_ms
from damas_core.errors import BadRequest, DamasError

log = logging.getLogger(__name__)

#: Seconds between two reads of the store's position while someone waits or listens:
#: how late a write from another process can be seen.
POLL_INTERVAL = 0.05
#: The longest a ``changes(wait=…)`` blocks, in seconds.
MAX_WAIT = 60.0
#: Seconds between two tombstone compactions of one tracker.
COMPACT_EVERY = 3600.0
#: How long a tombstone is kept by default: 30 days, in seconds.
DEFAULT_RETENTION = 30 * 24 * 3600
#: How many changes one delivery to the ``on("change")`` callbacks reads at a time.
DELIVERY_PAGE = 1000

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

Change = dict[str, Any]


def retention_seconds(value: Any) -> float:
    """A tombstone retention in seconds: a number ``>= 0`` or a duration such as
    ``"30d"``, ``"12h"``, ``"90m"``; ``0`` drops every tombstone at the next compaction.

    >>> retention_seconds("30d"), retention_seconds(60), retention_seconds("1.5h")
    (2592000.0, 60.0, 5400.0)
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise BadRequest(
            f"open error: tombstone_retention is seconds or a duration like '30d', not {value!r}",
            key="tombstone_retention",
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise BadRequest(
            f"open error: tombstone_retention must be >= 0 seconds, not {value!r}",
            key="tombstone_retention",
        )
    return seconds


class Feed:
    """Watches one store's position; see the module docstring.

    ``retention`` is how long tombstones are kept (seconds, see :func:`retention_seconds`);
    ``poll_interval`` how often the position is read while someone waits or listens.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        retention: float = DEFAULT_RETENTION,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.storage = storage
        self.retention = retention
        self.poll_interval = poll_interval
        self._cond = threading.Condition()
        self._seen = 0  # the highest position seen committed
        self._waiting = 0
        self._listeners: list[Callable[[int], None]] = []
        self._poller: threading.Thread | None = None
        self._closed = False
        self._compacted = time.monotonic()
        self._compacting = False
        # on("change") delivery: one delivering thread at a time, in seq order.
        self._deliver_to: Callable[[Change], None] | None = None
        self._delivered = 0
        self._delivering = False
        self._again = False
        self._deliver_lock = threading.Lock()
        storage.on_commit(self.committed)

    # -- the position -----------------------------------------------------------------

    def committed(self) -> None:
        """After each commit of this process: wake whoever waits or listens, and drop old
        tombstones when a compaction is due. Never raises (the write is done)."""
        try:
            if self._waiting or self._listeners:
                self.check()
            if time.monotonic() - self._compacted >= COMPACT_EVERY:
                self.compact()
        except Exception:
            log.exception("change feed: after a commit")

    def check(self) -> int:
        """Read the store's position; if it moved, wake the waiters and call the listeners
        with it. Returns the position."""
        seq = self.storage.last_seq()
        with self._cond:
            if seq <= self._seen:
                return self._seen
            self._seen = seq
            self._cond.notify_all()
            listeners = tuple(self._listeners)
        for listener in listeners:
            try:
                listener(seq)
            except Exception:
                log.exception("change feed listener %r failed", listener)
        return seq

    def wait(self, after: int, timeout: float) -> int:
        """Block until the store's position is above ``after``, or ``timeout`` seconds
        (at most :data:`MAX_WAIT`) pass, or the feed closes; return the last position
        seen (which may still be ``after``, or even below it when this process has not
        looked since)."""
        deadline = time.monotonic() + min(max(timeout, 0.0), MAX_WAIT)
        with self._cond:
            self._waiting += 1
            self._start_poller()
        try:
            self.check()  # a commit may have come between the caller's read and now
            with self._cond:
                while self._seen <= after and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                return self._seen
        finally:
            with self._cond:
                self._waiting -= 1

    def listen(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(position)`` whenever the position moves (in the committing
        thread for this process's writes, in the poll thread for other processes'). It
        must be quick; its errors are logged."""
        with self._cond:
            self._listeners.append(listener)
            self._start_poller()

    def unlisten(self, listener: Callable[[int], None]) -> None:
        """Stop calling ``listener``."""
        with self._cond:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def close(self) -> None:
        """Stop polling and release the waiters (they return at once)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _start_poller(self) -> None:
        # Called with self._cond held.
        if self._poller is None and not self._closed:
            self._poller = threading.Thread(target=self._poll, name="damas-feed", daemon=True)
            self._poller.start()

    def _poll(self) -> None:
        while True:
            with self._cond:
                while not (self._waiting or self._listeners or self._closed):
                    self._cond.wait()  # idle: nobody to tell, nothing read
                if self._closed:
                    return
            time.sleep(self.poll_interval)
            try:
                self.check()
            except DamasError:
                if self._closed:
                    return
                log.exception("change feed: reading the position failed")
                time.sleep(1.0)

    # -- on("change") -------------------------------------------------------------------

    def deliver_to(self, callback: Callable[[Change], None]) -> None:
        """From now on, call ``callback(change)`` once per change committed after this
        call, in seq order, with ``{"seq", "_id", "deleted"}`` (internal ids left out).

        Changes are read from the feed, so an id changed twice before a delivery is
        delivered once, at its last seq. Delivery runs in the thread of the commit that
        moved the position (or in the poll thread for other processes' writes), one
        thread at a time; ``callback`` must not raise (its errors are logged).
        """
        with self._deliver_lock:
            first = self._deliver_to is None
            if first:
                self._delivered = self.storage.last_seq()
            self._deliver_to = callback
        if first:
            self.listen(self._deliver)

    def _deliver(self, _position: int = 0) -> None:
        with self._deliver_lock:
            if self._delivering:
                self._again = True  # the delivering thread reads on
                return
            self._delivering = True
        try:
            while True:
                with self._deliver_lock:
                    self._again = False
                last, entries = self.storage.changes(self._delivered, DELIVERY_PAGE)
                callback = self._deliver_to
                for seq, id, deleted in entries:
                    if not id.startswith(RESERVED_PREFIX) and callback is not None:
                        try:
                            callback({"seq": seq, "_id": id, "deleted": deleted})
                        except Exception:
                            log.exception("change callback %r failed", callback)
                self._delivered = max(self._delivered, last)
                with self._deliver_lock:
                    if len(entries) < DELIVERY_PAGE and not self._again:
                        self._delivering = False
                        return
        except BaseException:
            with self._deliver_lock:
                self._delivering = False
            raise

    # -- compaction ---------------------------------------------------------------------

    def compact(self) -> int:
        """Drop the tombstones older than the retention now; returns how many went.
        Readers whose position is below the dropped ones get ``reset`` next."""
        if self._compacting:
            return 0
        self._compacting = True
        try:
            self._compacted = time.monotonic()
            return self.storage.drop_tombstones(max(0, now_ms() - int(self.retention * 1000)))
        finally:
            self._compacting = False


__all__ = [
    "COMPACT_EVERY",
    "DEFAULT_RETENTION",
    "MAX_WAIT",
    "POLL_INTERVAL",
    "Feed",
    "retention_seconds",
]
