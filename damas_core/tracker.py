"""``Tracker`` (the embedded tracker, acting as the system) and ``Session`` (acting as
one user, with that user's permissions).

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> t.create({"_id": "@alice", "class": "user", "password": "pw"})["class"]
'user'
>>> alice = t.as_user("alice")
>>> alice.publish({"_id": "/shots/a.exr", "comment": "first", "origin": "paris"})["author"]
'alice'
>>> alice.lock("/shots/a.exr"), t.read("/shots/a.exr")["lock"]
(True, 'alice')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from damas_core.backends.base import Patch, Storage
from damas_core.elements import RESERVED_PREFIX, SETTINGS_ID, Element
from damas_core.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from damas_core.events import Events
from damas_core.feed import DEFAULT_RETENTION, Feed, retention_seconds
from damas_core.operations import changes as _changes
from damas_core.operations import comment as _comment
from damas_core.operations import crud as _crud
from damas_core.operations import graph as _graph
from damas_core.operations import lock as _lock
from damas_core.operations import publish as _publish
from damas_core.operations import search as _search
from damas_core.operations import users as _users
from damas_core.operations import version as _version
from damas_core.operations.common import public
from damas_core.ordering import MISSING
from damas_core.permissions import class_of
from damas_core.query.ast import Node
from damas_core.trust import GuardedStorage


class Session:
    """The tracker operations, acting as one user and applying that user's class.

    Every operation takes one item or a list: one item gives one result, a list gives
    a list in input order with ``None`` where an item failed. Wrong input raises
    :class:`~damas_core.errors.BadRequest`; missing rights raise
    :class:`~damas_core.errors.Forbidden` and change nothing.
    """

    def __init__(
        self,
        tracker: Tracker,
        user: Element,
        *,
        admin: bool | None = None,
        renew: Callable[[], Session] | None = None,
    ) -> None:
        self.tracker = tracker
        self._renew = renew
        self.events: Events = tracker.events
        self.username: str = _users.name_of(user)
        self.user_class: str = class_of(user)
        self.is_admin: bool = self.user_class == "admin" if admin is None else admin
        self.user: Element = public(dict(user), self) or {}
        self.author_mode: bool = tracker.author_mode
        #: The store the operations write through: every write passes the path rule
        #: (damas_core.paths) and, for a non-admin, the trust check (damas_core.trust).
        self.store: GuardedStorage = GuardedStorage(self, tracker.storage)
        #: The store itself for an admin (and for the tracker: ``tracker.storage``
        #: writes straight to it, unchecked), the checked one for anyone else.
        self.storage: Storage | GuardedStorage = tracker.storage if self.is_admin else self.store

    def __repr__(self) -> str:
        return f"<{type(self).__name__} @{self.username} ({self.user_class}) on {self.storage.url}>"

    def renewed(self) -> Session:
        """This session as its account stands now: itself while nothing changed, a new
        session when the account's class did. Raises ``Unauthorized`` when the account
        was deleted or disabled since (or, for a session made from a token, when the
        token no longer holds: see :meth:`damas_core.tokens.Tokens.session`). What a
        stream or a long-poll calls before each delivery.

        >>> import damas_core
        >>> t = damas_core.open("memory://")
        >>> _ = t.create({"_id": "@ann", "class": "admin"})
        >>> ann = t.as_user("ann")
        >>> _ = t.update({"_id": "@ann", "class": "guest"})
        >>> ann.renewed().user_class
        'guest'
        """
        if self._renew is not None:
            fresh = self._renew()
        else:
            uid = self.user.get("_id", f"@{self.username}")
            element = self.tracker.storage.get(uid)
            if not _users.is_account(element) or _users.name_of(element) != self.username:
                raise Unauthorized(f"user {uid!r} no longer exists", id=uid)
            if _users.is_disabled(element):
                raise Unauthorized(f"user {uid!r} is disabled", id=uid)
            if class_of(element) == self.user_class:
                return self
            fresh = Session(self.tracker, element)
        return self if fresh.user_class == self.user_class else fresh

    @staticmethod
    def hidden(element_id: str) -> bool:
        """True for internal ids, which no read path returns."""
        return element_id.startswith(RESERVED_PREFIX)

    # -- CRUD ---------------------------------------------------------------------------

    def create(self, elements: Element | list[Element]) -> Any:
        """Create elements; ``None`` where the ``_id`` exists.

        >>> import damas_core
        >>> damas_core.open("memory://").create([{"_id": "/a"}, {"_id": "/a"}])[1] is None
        True
        """
        return _crud.create(self, elements)

    def read(self, ids: str | list[str]) -> Any:
        """Elements by id, ``None`` where absent; password hashes are never returned."""
        return _crud.read(self, ids)

    def update(
        self,
        elements: Element | list[Element],
        *,
        expect: dict[str, Any] | list[dict[str, Any] | None] | None = None,
    ) -> Any:
        """Set keys (``null`` removes one) on existing elements; ``None`` where absent.
        With ``expect``, only if the element holds those values (compare-and-set; for a
        list of elements, a list of expectations as long, ``None`` for none)."""
        return _crud.update(self, elements, expect)

    def upsert(self, elements: Element | list[Element]) -> Any:
        """Create or update; an ``_id`` absent or ``"null"`` creates with a fresh id."""
        return _crud.upsert(self, elements)

    def delete(self, ids: str | list[str]) -> Any:
        """Delete elements and the links to or from them; the id or ``None``."""
        return _crud.delete(self, ids)

    # -- graph and search ---------------------------------------------------------------

    def graph(self, ids: str | list[str], depth: int = 0) -> list[Element | None]:
        """Nodes then links, walking links from ``tgt_id`` back to ``src_id``; for a
        list of ids, ``None`` in the place of each one that does not exist."""
        return _graph.graph(self, ids, depth)

    def search(
        self, query: str | Node, sort: Any = None, skip: int = 0, limit: int | None = None
    ) -> list[str]:
        """Ids matching a query in the search language (see docs/query-language.md)."""
        return _search.search(self, query, sort, skip, limit)

    def search_elements(
        self, query: str | Node, sort: Any = None, skip: int = 0, limit: int | None = None
    ) -> list[Element]:
        """The matching elements themselves, in one pass (what ``search`` then ``read`` gives).

        >>> import damas_core
        >>> t = damas_core.open("memory://")
        >>> _ = t.create([{"_id": "/a", "k": 1}, {"_id": "/b", "k": 2}])
        >>> [(e["_id"], e["k"]) for e in t.search_elements("k>0", sort="-k")]
        [('/b', 2), ('/a', 1)]
        """
        return _search.search_elements(self, query, sort, skip, limit)

    def search_one(self, query: str | Node) -> Element | None:
        """The first element matching ``query``, or ``None``."""
        return _search.search_one(self, query)

    def search_mongo(
        self, query: dict[str, Any], sort: Any = None, limit: int = 0, skip: int = 0
    ) -> dict[str, Any]:
        """``{"count": N, "ids": [...]}`` for a MongoDB-style query dict."""
        return _search.search_mongo(self, query, sort, limit, skip)

    # -- files --------------------------------------------------------------------------

    def publish(self, elements: Element | list[Element], *, with_history: bool = False) -> Any:
        """Track new files with their first history child; ``None`` if already tracked."""
        return _publish.publish(self, elements, with_history=with_history)

    def lock(self, ids: str | list[str], *, strict: bool = False) -> bool:
        """Lock all ids for this user, or none of them (``strict``: a refusal raises
        ``NotFound`` or ``Conflict`` with ``locked``, the holders)."""
        return _lock.lock(self, ids, strict=strict)

    def unlock(self, ids: str | list[str], force: bool = False, *, strict: bool = False) -> bool:
        """Unlock all ids this user holds (any holder with ``force``, admins only);
        ``strict`` as for :meth:`lock`."""
        return _lock.unlock(self, ids, force, strict=strict)

    def comment(self, elements: Element | list[Element]) -> Any:
        """Attach comments to one or several parents."""
        return _comment.comment(self, elements)

    def version(self, id: str, keys: dict[str, Any] | None = None) -> Element | None:
        """Archive the current state as a child and update the head."""
        return _version.version(self, id, keys)

    # -- the change feed ----------------------------------------------------------------

    def changes(
        self, since: int = 0, limit: int = 1000, *, elements: bool = False, wait: float = 0.0
    ) -> dict[str, Any]:
        """``{"last_seq", "changes": [{"seq", "_id", "deleted", "element"?}]}``: the latest
        change of each id after ``since`` this user may read, in seq order; ``wait``
        long-polls; ``"reset": True`` when the reader must read everything again (see
        :func:`damas_core.operations.changes.changes` and docs/changes.md).

        >>> import damas_core
        >>> t = damas_core.open("memory://")
        >>> _ = t.create({"_id": "/a", "n": 1})
        >>> t.changes(elements=True)["changes"]
        [{'seq': 1, '_id': '/a', 'deleted': False, 'element': {'_id': '/a', 'n': 1, 'author': 'damas', 'time': ...}}]
        """
        return _changes.changes(self, since, limit, elements=elements, wait=wait)


class Tracker(Session):
    """An open tracker, acting as the system (an admin named ``system_user``).

    Open one with :func:`damas_core.open`. ``as_user(name)`` gives a :class:`Session`
    applying that user's permissions. Close it (or use ``with``) to release the store.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        author_mode: bool = False,
        system_user: str = "damas",
        tombstone_retention: float | str = DEFAULT_RETENTION,
        changes_max_bytes: int = _changes.DEFAULT_MAX_BYTES,
    ) -> None:
        self.storage = storage
        #: The most bytes of JSON one answer of :meth:`changes` holds (see docs/changes.md).
        self.changes_max_bytes = _changes.check_max_bytes(changes_max_bytes)
        self.events = Events()
        #: The change feed's live side: waits, ``on("change")``, tombstone compaction.
        self.feed = Feed(storage, retention=retention_seconds(tombstone_retention))
        self.author_mode = bool(author_mode)
        super().__init__(
            self, {"_id": f"@{system_user}", "class": "admin"}, admin=True, renew=lambda: self
        )

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the storage (waits on the change feed return at once)."""
        self.feed.close()
        self.storage.close()

    def on(self, name: str, callback: Callable[..., Any]) -> None:
        """Register an event callback (see :class:`damas_core.events.Events`);
        ``"change"`` callbacks get each committed change (see docs/changes.md)."""
        self.events.on(name, callback)
        if name == "change":
            self.feed.deliver_to(self.events.changed)

    def as_user(self, name: str) -> Session:
        """A session acting as user ``name`` (``alice`` or ``@alice``, or a damas-core
        account whose ``username`` is ``alice``: see :mod:`damas_core.operations.users`).

        Raises ``NotFound`` for an unknown user and ``Forbidden`` for a disabled one.
        """
        if not isinstance(name, str) or not name.strip("@"):
            raise BadRequest(f"a user name is a non-empty string, not {name!r}")
        uid = _users.user_id(name)
        element = _users.account(self, name)
        if element is None:
            raise NotFound(f"no user {uid!r}: create the element {uid!r} first", id=uid)
        if _users.is_disabled(element):
            raise Forbidden(f"user {uid!r} is disabled", id=uid)
        return Session(self, element)

    # -- accounts -------------------------------------------------------------------------

    def get_user(self, name: str) -> Element | None:
        """The user element ``name`` or ``@name`` (no password), or ``None``.
        (``tracker.user`` is the element the tracker itself acts as.)"""
        return _users.user(self, name)

    def check_password(self, name: str, password: str) -> bool:
        """True when ``password`` is user ``name``'s (legacy hashes are upgraded)."""
        return _users.check_password(self, name, password)

    def password_fingerprint(self, name: str) -> str | None:
        """Changes whenever the user's password changes; ``None`` for unknown users."""
        return _users.password_fingerprint(self, name)

    # -- internal settings ------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        """An internal setting (never visible through operations)."""
        settings = self.storage.get(SETTINGS_ID) or {}
        return settings.get(key, default)

    def set_setting(self, key: str, value: Any) -> None:
        """Store an internal setting."""
        self.update_setting(key, lambda _old: value)

    def update_setting(self, key: str, fn: Callable[[Any], Any]) -> Any:
        """Replace a setting with ``fn(old value or None)``; returns the new value.

        Compare-and-set: the new value is written only if the setting still holds the
        value ``fn`` was given, else ``fn`` runs again on the newer one, so writers in
        several processes (on any backend, transactions or not) never lose an update.
        ``fn`` may thus run more than once and must have no other effect. Raises
        ``Conflict`` after :data:`SETTING_RETRIES` lost races in a row.

        >>> import damas_core
        >>> t = damas_core.open("memory://")
        >>> t.update_setting("n", lambda old: (old or 0) + 1), t.update_setting("n", lambda old: old + 1)
        (1, 2)
        """
        if not isinstance(key, str) or not key or key == "_id":
            raise BadRequest(f"a setting key is a non-empty string, not {key!r}")
        for _ in range(SETTING_RETRIES):
            current = self.storage.get(SETTINGS_ID)
            if current is None:
                # whoever inserts first wins; everyone then sets the key below
                self.storage.insert_many([{"_id": SETTINGS_ID}])
                continue
            old = current.get(key, MISSING)
            new = fn(None if old is MISSING else old)
            patch = Patch(SETTINGS_ID, set={key: new}, expect={key: old})
            if self.storage.patch_many([patch])[0]:
                return new
        raise Conflict(f"setting {key!r}: {SETTING_RETRIES} concurrent writers won; try again")


#: How many lost compare-and-set races :meth:`Tracker.update_setting` retries.
SETTING_RETRIES = 100


def open(url: str = "lmdb://./damas-data", **options: Any) -> Tracker:
    """Open the tracker stored at ``url``.

    URLs: ``memory://``, ``lmdb:///abs/path`` or ``lmdb://relative/path`` (the
    embedded default), ``tinydb:///path.json``, ``sqlite:///path.db``,
    ``mongodb://host/db?collection=node``, ``mongomock://``. Options:
    ``author_mode`` (non-admins change only what they authored), ``system_user``
    (the name the tracker acts as, default ``damas``), ``tombstone_retention`` (how
    long the change feed keeps deletions: seconds or ``"30d"``, the default),
    ``changes_max_bytes`` (the most bytes of JSON one answer of the change feed holds,
    8 MB by default), ``indexes`` (extra keys to index) and backend options.

    >>> import damas_core
    >>> with damas_core.open("memory://") as t:
    ...     t.search("*")
    []
    """
    from damas_core.registry import open_storage

    author_mode = options.pop("author_mode", False)
    system_user = options.pop("system_user", "damas")
    retention = retention_seconds(options.pop("tombstone_retention", DEFAULT_RETENTION))
    max_bytes = _changes.check_max_bytes(
        options.pop("changes_max_bytes", _changes.DEFAULT_MAX_BYTES)
    )
    return Tracker(
        open_storage(url, **options),
        author_mode=author_mode,
        system_user=system_user,
        tombstone_retention=retention,
        changes_max_bytes=max_bytes,
    )
