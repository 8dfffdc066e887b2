"""What every request's authentication looks up, kept in memory and current through
the change feed: the revoked token ids and the accounts tokens were issued to.

A request signed with a token needs to know whether the token was revoked and what its
account looks like now (class, disabled, password). Reading both from the store on every
request costs two reads, one of them a list that grows with every sign-out.
:class:`AuthCache` keeps both per process and brings them up to date from the store's
change feed (:meth:`damas_core.backends.base.Storage.changes`), which numbers every write
of every process serving the store:

- **Freshness.** Before answering, :meth:`AuthCache.refresh` reads the store's position
  (:meth:`~damas_core.backends.base.Storage.last_seq`, one small read). When it moved,
  the cache reads the feed from where it was and forgets each account that changed and
  learns each revocation; a feed that dropped tombstones past the cache's position
  (:meth:`~damas_core.backends.base.Storage.horizon`) makes it load everything again.
  So a sign-out or a demotion made by another process is honoured by the next request
  here. ``max_age`` (seconds, default 0: every call) lets the position be read at most
  that often instead; see docs/decisions.md for the measurement behind the default.
- **Revocations** are elements of their own, ``~revoked:<jti>`` with the token's
  ``exp`` (``None`` for a token that never expires): inserting one is a single atomic
  write, so two processes revoking at once can never lose one. Older stores kept a
  list in the settings document under ``jwt_revoked``: it is read too.
- **Accounts** are read on first use and kept until the feed shows them changed.

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> _ = t.create({"_id": "@alice", "class": "user"})
>>> cache = AuthCache(t.storage)
>>> cache.account("@alice")["class"]
'user'
>>> _ = t.update({"_id": "@alice", "class": "guest"})
>>> cache.account("@alice")["class"]
'guest'
>>> cache.revoke("abc", None), cache.is_revoked("abc")
(True, True)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from damas_core.elements import SETTINGS_ID, Element
from damas_core.query.ast import Regex

#: The ``_id`` prefix of revocation elements: ``~revoked:<jti>``.
REVOKED_PREFIX = "~revoked:"
#: The settings key older stores kept their revocation list under.
LEGACY_REVOKED = "jwt_revoked"
#: Feed entries read per step while catching up.
PAGE = 1000
#: Accounts kept at most (the least recently read go first).
MAX_ACCOUNTS = 10_000

_REVOCATIONS = Regex(("_id",), r"^\~revoked:", "")
_ABSENT: Element = {}


class AuthCache:
    """Revocations and accounts of one store, current through its change feed (see the
    module docstring). Thread-safe; one per application is enough."""

    def __init__(
        self,
        storage: Any,
        *,
        max_age: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()
        self._position = -1  # nothing loaded yet
        self._checked = float("-inf")
        self._revoked: dict[str, int | None] = {}
        self._legacy: dict[str, int | None] = {}
        self._accounts: dict[str, Element] = {}
        # bumped whenever an account is forgotten: a read that started before keeps
        # what it read to itself (it may be older than the feed entry that came since)
        self._generation = 0

    # -- keeping current ----------------------------------------------------------------

    def refresh(self, *, force: bool = False) -> None:
        """Bring the cache up to the store's current position (at most every
        ``max_age`` seconds unless ``force``)."""
        now = self.clock()
        if not force and now - self._checked < self.max_age:
            return
        last = self.storage.last_seq()
        if last == self._position:
            self._checked = now
            return
        with self._lock:
            if self._position < 0 or self._position < self.storage.horizon():
                self._load()
            else:
                self._catch_up()
            self._checked = now

    def _load(self) -> None:
        position = self.storage.last_seq()  # before reading: nothing written since is lost
        found = self.storage.find_elements(_REVOCATIONS)
        self._revoked = {e["_id"][len(REVOKED_PREFIX) :]: e.get("exp") for e in found}
        self._read_legacy()
        self._accounts.clear()
        self._generation += 1
        self._position = position

    def _read_legacy(self) -> None:
        settings = self.storage.get(SETTINGS_ID) or {}
        legacy = settings.get(LEGACY_REVOKED)
        self._legacy = dict(legacy) if isinstance(legacy, dict) else {}

    def _catch_up(self) -> None:
        while True:
            last, entries = self.storage.changes(self._position, PAGE)
            if self._position < self.storage.horizon():
                self._load()
                return
            revoked = []
            for _, id, deleted in entries:
                if id.startswith(REVOKED_PREFIX):
                    if deleted:
                        self._revoked.pop(id[len(REVOKED_PREFIX) :], None)
                    else:
                        revoked.append(id)
                elif id == SETTINGS_ID:
                    self._read_legacy()
                elif self._accounts.pop(id, None) is not None:
                    self._generation += 1
            if revoked:
                for element in self.storage.get_many(revoked):
                    if element is not None:
                        self._revoked[element["_id"][len(REVOKED_PREFIX) :]] = element.get("exp")
            self._position = last
            if len(entries) < PAGE:
                return

    # -- what requests ask ---------------------------------------------------------------

    def is_revoked(self, jti: str) -> bool:
        """True when the token ``jti`` was revoked (by any process serving the store)."""
        self.refresh()
        return jti in self._revoked or jti in self._legacy

    def account(self, uid: str, *, refresh: bool = True) -> Element | None:
        """The stored account element ``uid`` (password hash included: for checks,
        never for answers), or ``None``. ``refresh=False``: the caller has just
        refreshed (one position read per request is enough)."""
        if refresh:
            self.refresh()
        found = self._accounts.get(uid)
        if found is not None:
            return found or None
        generation = self._generation
        element = self.storage.get(uid)
        with self._lock:
            if generation == self._generation:
                self._accounts[uid] = element if element is not None else _ABSENT
                while len(self._accounts) > MAX_ACCOUNTS:
                    del self._accounts[next(iter(self._accounts))]
        return element

    def revoke(self, jti: str, exp: int | None) -> bool:
        """Record the revocation of token ``jti`` (``exp``: when it would expire anyway,
        ``None`` for never) in the store, where every process sees it; ``True`` if it
        was not revoked yet. Revocations past their ``exp`` are removed on the way."""
        stored = self.storage.insert_many([{"_id": REVOKED_PREFIX + jti, "exp": exp}])[0]
        now = time.time()
        expired = [
            REVOKED_PREFIX + j for j, e in list(self._revoked.items()) if e is not None and e < now
        ][:PAGE]
        if expired:
            self.storage.delete_many(expired)
        self.refresh(force=True)
        return stored


__all__ = ["LEGACY_REVOKED", "REVOKED_PREFIX", "AuthCache"]
