"""Waiting after a failure: waits that double, and which failures waiting fixes.

>>> Backoff(base=1, cap=8, jitter=0).delays(5)
[1.0, 2.0, 4.0, 8.0, 8.0]
"""

from __future__ import annotations

import random

from damas_core.errors import DamasError, StorageError, TooManyRequests


class Backoff:
    """Waits that double after each failure from ``base`` up to ``cap`` seconds, each
    drawn between ``1 - jitter`` and 1 times its step (so that agents failing together
    do not retry together); :meth:`reset` after a success."""

    def __init__(self, base: float = 1.0, cap: float = 300.0, jitter: float = 0.5) -> None:
        self.base, self.cap, self.jitter = base, cap, jitter
        self.failures = 0

    def next(self) -> float:
        """The wait before the next attempt."""
        step = min(self.cap, self.base * 2.0**self.failures)
        self.failures += 1
        return step * (1.0 - self.jitter * random.random())

    def delays(self, n: int) -> list[float]:
        """The next ``n`` waits (for examples and tests)."""
        return [self.next() for _ in range(n)]

    def reset(self) -> None:
        self.failures = 0


def transient(error: BaseException) -> bool:
    """True for a failure retrying fixes: the tracker unreachable or timing out
    (:class:`~damas_core.client.Unreachable`), a storage failure, an answer 5xx (but
    501: what the backend cannot do, it will not do later) or 429.

    >>> from damas_core.errors import NotImplementedByBackend, TooManyStreams
    >>> transient(TooManyStreams("busy")), transient(NotImplementedByBackend("no"))
    (True, False)
    """
    from damas_core.client import Unreachable

    if isinstance(error, Unreachable | StorageError | TooManyRequests):
        return True
    status = error.status if isinstance(error, DamasError) else 0
    return status >= 500 and status != 501


__all__ = ["Backoff", "transient"]
