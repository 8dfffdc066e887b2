"""A sliding-window rate limiter shared through the store, used to slow down password
guessing at sign-in.

Each key (for sign-in: the username with the client address, and the address alone)
may make ``attempts`` attempts within ``per`` seconds. The attempts of a key are one
internal element of the store (``~limit:<name>:<digest of the key>``, holding their
times), so every process serving the store counts against one budget.
:meth:`RateLimiter.acquire` checks and counts in one compare-and-set step (a guarded
insert or patch, retried when another process wrote first), so parallel requests,
in one process or several, cannot all pass the check before any is counted: an attempt
counts from the moment it starts, and :meth:`release` (or :meth:`reset`) forgets it
once it turned out well. Times are wall-clock seconds (processes share no monotonic
clock); keys whose window has passed are removed now and then.

>>> import damas_core
>>> store = damas_core.open("memory://").storage
>>> clock = iter([0.0, 1.0, 2.0, 3.0, 61.0]).__next__
>>> limiter = RateLimiter(store, "demo", attempts=2, per=60, clock=clock)
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

import hashlib
import time
from collections.abc import Callable
from typing import Any

from damas_core.backends.base import Patch
from damas_core.errors import Conflict
from damas_core.query.ast import Regex

#: The ``_id`` prefix of the limiter elements.
PREFIX = "~limit:"
#: Lost compare-and-set races one call retries before giving up.
RETRIES = 100


class RateLimiter:
    """Counts attempts per key over a sliding window of ``per`` seconds, in ``storage``
    (``name`` keeps the counts of several limiters apart)."""

    def __init__(
        self,
        storage: Any,
        name: str,
        attempts: int = 5,
        per: float = 60.0,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if attempts < 1 or per <= 0:
            raise ValueError("RateLimiter needs attempts >= 1 and per > 0")
        self.storage = storage
        self.name = name
        self.attempts = attempts
        self.per = per
        self.clock = clock
        self._swept = float("-inf")

    def _id(self, key: Any) -> str:
        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:32]
        return f"{PREFIX}{self.name}:{digest}"

    def _change(self, key: Any, fn: Callable[[list[float], float], list[float] | float]) -> float:
        """Apply ``fn(attempts in the window, now)`` to ``key``'s attempts, compare-and-set:
        ``fn`` gives the new list, or a number of seconds to wait (nothing written)."""
        element_id = self._id(key)
        now = self.clock()
        self._sweep(now)
        for _ in range(RETRIES):
            stored = self.storage.get(element_id)
            old = stored.get("attempts") if stored is not None else None
            window = [t for t in old or () if t > now - self.per]
            new = fn(window, now)
            if not isinstance(new, list):
                return new
            if new == old or (not new and stored is None):
                return 0.0
            if stored is None:
                done = self.storage.insert_many([{"_id": element_id, "attempts": new}])[0]
            else:
                expect = {"attempts": old}
                patch = Patch(element_id, set={"attempts": new}, expect=expect)
                done = self.storage.patch_many([patch])[0]
            if done:
                return 0.0
        raise Conflict(f"sign-in limit: {RETRIES} concurrent writers won; try again")

    def acquire(self, key: Any) -> float:
        """Count one attempt for ``key`` and return ``0.0``; or, when ``key`` already
        made ``attempts`` attempts in the window, count nothing and return the seconds
        to wait. The check and the count are one atomic step."""

        def add(window: list[float], now: float) -> list[float] | float:
            if len(window) >= self.attempts:
                return max(0.0, window[-self.attempts] + self.per - now)
            return [*window, now]

        return self._change(key, add)

    def release(self, key: Any) -> None:
        """Forget one attempt of ``key`` (one that :meth:`acquire` counted and that
        turned out well, or was never made)."""
        self._change(key, lambda window, now: window[:-1])

    def reset(self, key: Any) -> None:
        """Forget every attempt of ``key`` (after a successful sign-in)."""
        self._change(key, lambda window, now: [])

    def _sweep(self, now: float) -> None:
        """Remove this limiter's elements whose window has passed, once per window."""
        if now - self._swept < self.per:
            return
        self._swept = now
        prefix = Regex(("_id",), "^" + _escaped(f"{PREFIX}{self.name}:"), "")
        stale = [
            e["_id"]
            for e in self.storage.find_elements(prefix)
            if not any(t > now - self.per for t in e.get("attempts") or ())
        ]
        if stale:
            self.storage.delete_many(stale)


def _escaped(text: str) -> str:
    """``text`` as a literal in a regex (a backslash before punctuation)."""
    return "".join("\\" + ch if not ch.isalnum() else ch for ch in text)


__all__ = ["PREFIX", "RateLimiter"]
