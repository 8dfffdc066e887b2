"""A small sliding-window rate limiter, used to slow down password guessing at sign-in.

Each key (for sign-in: the username and the client address) may make ``attempts``
attempts within ``per`` seconds. :meth:`RateLimiter.acquire` checks and counts in one
step, under a lock, so parallel requests cannot all pass the check before any is
counted: an attempt counts from the moment it starts, and :meth:`release` (or
:meth:`reset`) forgets it once it turned out well. State is kept in memory, per process,
and bounded: keys whose window has passed are dropped, and at most ``max_keys`` keys
are tracked (the oldest go first).

>>> clock = iter([0.0, 1.0, 2.0, 3.0, 61.0]).__next__
>>> limiter = RateLimiter(attempts=2, per=60, clock=clock)
>>> limiter.acquire("alice")         # t=0: allowed, counted
0.0
>>> limiter.acquire("alice")         # t=1: allowed, counted
0.0
>>> limiter.acquire("alice")         # t=2: two attempts in the last minute: wait 58 s
58.0
>>> limiter.acquire("bob")           # t=3: other keys are not affected
0.0
>>> limiter.acquire("alice")         # t=61: the first attempt left the window
0.0
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable


class RateLimiter:
    """Counts attempts per key over a sliding window of ``per`` seconds."""

    def __init__(
        self,
        attempts: int = 5,
        per: float = 60.0,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if attempts < 1 or per <= 0:
            raise ValueError("RateLimiter needs attempts >= 1 and per > 0")
        self.attempts = attempts
        self.per = per
        self.max_keys = max_keys
        self.clock = clock
        self._events: OrderedDict[Hashable, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _window(self, key: Hashable, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - self.per:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events

    def acquire(self, key: Hashable) -> float:
        """Count one attempt for ``key`` and return ``0.0``; or, when ``key`` already
        made ``attempts`` attempts in the window, count nothing and return the seconds
        to wait. The check and the count are one atomic step."""
        with self._lock:
            now = self.clock()
            events = self._window(key, now)
            if events is not None and len(events) >= self.attempts:
                return max(0.0, events[-self.attempts] + self.per - now)
            if events is None:
                events = self._events[key] = deque(maxlen=self.attempts)
                while len(self._events) > self.max_keys:
                    self._events.popitem(last=False)
            else:
                self._events.move_to_end(key)
            events.append(now)
            return 0.0

    def release(self, key: Hashable) -> None:
        """Forget one attempt of ``key`` (one that :meth:`acquire` counted and that
        turned out well, or was never made)."""
        with self._lock:
            events = self._events.get(key)
            if events:
                events.pop()
                if not events:
                    del self._events[key]

    def reset(self, key: Hashable) -> None:
        """Forget every attempt of ``key`` (after a successful sign-in)."""
        with self._lock:
            self._events.pop(key, None)


__all__ = ["RateLimiter"]
