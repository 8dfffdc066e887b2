"""A small sliding-window rate limiter, used to slow down password guessing at sign-in.

Each key (for sign-in: the username and the client address) may fail ``attempts``
times within ``per`` seconds; after that :meth:`RateLimiter.retry_after` says how many
seconds to wait. State is kept in memory, per process, and bounded: keys whose window
has passed are dropped, and at most ``max_keys`` keys are tracked (the oldest go first).

>>> clock = iter([0.0, 1.0, 2.0, 3.0, 61.0]).__next__
>>> limiter = RateLimiter(attempts=2, per=60, clock=clock)
>>> limiter.record("alice")          # t=0
>>> limiter.record("alice")          # t=1
>>> limiter.retry_after("alice")     # t=2: two failures in the last minute
58.0
>>> limiter.retry_after("bob")       # t=3: other keys are not affected
0.0
>>> limiter.retry_after("alice")     # t=61: the first failure left the window
0.0
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable


class RateLimiter:
    """Counts events per key over a sliding window of ``per`` seconds."""

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

    def retry_after(self, key: Hashable) -> float:
        """Seconds to wait before ``key`` may try again; ``0.0`` if it may try now."""
        with self._lock:
            now = self.clock()
            events = self._window(key, now)
            if events is None or len(events) < self.attempts:
                return 0.0
            return max(0.0, events[-self.attempts] + self.per - now)

    def record(self, key: Hashable) -> None:
        """Count one event (a failed attempt) for ``key`` now."""
        with self._lock:
            now = self.clock()
            events = self._window(key, now)
            if events is None:
                events = self._events[key] = deque(maxlen=self.attempts)
                while len(self._events) > self.max_keys:
                    self._events.popitem(last=False)
            else:
                self._events.move_to_end(key)
            events.append(now)

    def reset(self, key: Hashable) -> None:
        """Forget ``key`` (after a successful sign-in)."""
        with self._lock:
            self._events.pop(key, None)


__all__ = ["RateLimiter"]
