"""What the sync agents obey, and the one check that keeps it admin-only.

Agents copy files where volumes point and run rsync with the options volumes and
``rsyncGlobalParameters`` give, as the agent's own user. So volumes and the global
parameters are written by admins only, and that rule (with the rule on user accounts)
is checked once, below every operation: a non-admin session's ``storage`` is a
:class:`GuardedStorage`, which calls :func:`check_write` on each element as the write
leaves it. The vocabulary (:data:`VOLUME_CONTROL_KEYS`, :func:`is_volume`, ...) is the
one the sync engine uses too.

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> _ = t.create([{"_id": "@eddie", "class": "editor"}, {"_id": "mine", "url": "file:///x/"}])
>>> t.as_user("eddie").update({"_id": "mine", "name": "paris"})
Traceback (most recent call last):
...
damas_core.errors.Forbidden: update error: only admins may change volumes: 'mine' is one by its 'url', 'name'; this changes 'name'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlsplit

import orjson

from damas_core.backends.base import Element, Patch, Storage, apply_patch
from damas_core.errors import Forbidden
from damas_core.ordering import MISSING
from damas_core.paths import check_elements, check_patches
from damas_core.permissions import check_account_write
from damas_core.query.ast import Node, Sort

#: The sync engine's global settings element.
GLOBAL_PARAMETERS_ID = "rsyncGlobalParameters"
#: Keys that decide where a volume's data goes and how rsync runs (``name`` is the site
#: name the per-site keys use: it controls only on a volume; ``hub``: the hub volume that
#: drives a storage, see docs/sync.md "Hub and storages").
VOLUME_CONTROL_KEYS: tuple[str, ...] = ("url", "name", "rsync_args", "rsync_env", "hub")
#: Every key starting with one of these controls, on any element: rsync and ssh settings.
CONTROL_PREFIXES: tuple[str, ...] = ("rsync_", "ssh_")
#: The url schemes the sync engine moves data with.
VOLUME_SCHEMES = frozenset({"file", "ssh"})


def is_control_key(key: str) -> bool:
    """True for ``rsync_*`` and ``ssh_*`` keys, which control on any element.

    >>> is_control_key("rsync_env"), is_control_key("ssh_port"), is_control_key("url")
    (True, True, False)
    """
    return key.lower().startswith(CONTROL_PREFIXES)  # RSYNC_ENV is no less suspicious


def is_volume_url(value: Any) -> bool:
    """True when ``value`` (a string, or a list holding one) is a ``file:`` or ``ssh:``
    url, read generously: any case, with spaces or control characters anywhere.

    >>> is_volume_url(" FILE:///etc/"), is_volume_url("ssh://a@b/p/"), is_volume_url("https://x/")
    (True, True, False)
    """
    if isinstance(value, list):
        return any(is_volume_url(v) for v in value)
    if not isinstance(value, str):
        return False
    # urllib drops some of these characters and not others: drop them all first
    text = "".join(c for c in value if c.isprintable() and not c.isspace())
    scheme = urlsplit(text).scheme.lower() if ":" in text else ""
    return scheme in VOLUME_SCHEMES or text.lower().startswith(("file:", "ssh:"))


def is_volume(element: Mapping[str, Any] | None) -> bool:
    """True when the agents would obey ``element``: it has a ``file:``/``ssh:`` url or
    any ``rsync_*``/``ssh_*`` key.

    >>> is_volume({"_id": "v", "name": "paris", "url": "file:///srv/paris/"})
    True
    >>> is_volume({"_id": "/a.txt", "name": "a", "url": "https://example.com/"})
    False
    >>> is_volume({"_id": "x", "rsync_env": {}}), is_volume(None)
    (True, False)
    """
    if element is None:
        return False
    return is_volume_url(element.get("url")) or _has_control_key(element)


def _has_control_key(element: Mapping[str, Any]) -> bool:
    # The keys in one pass of C instead of a Python call per key: that call was a third
    # of a non-admin bulk publish or update (cProfile, 20 000 elements).
    try:
        keys = "\x00" + "\x00".join(element).lower()
    except TypeError:  # a key that is not a string: the storage refuses the element
        return any(isinstance(k, str) and is_control_key(k) for k in element)
    return any(map(keys.__contains__, _KEY_STARTS))


_KEY_STARTS = tuple(f"\x00{prefix}" for prefix in CONTROL_PREFIXES)


def volume_keys(element: Mapping[str, Any]) -> list[str]:
    """The controlling keys ``element`` has, in :data:`VOLUME_CONTROL_KEYS` order then
    by name (``name`` counts only on a volume).

    >>> volume_keys({"_id": "v", "ssh_port": 22, "name": "paris", "url": "ssh://a@b/p/"})
    ['url', 'name', 'ssh_port']
    """
    volume = is_volume(element)
    return [
        k for k in _ordered(element) if is_control_key(k) or (volume and k in VOLUME_CONTROL_KEYS)
    ]


def _ordered(keys: Any) -> list[str]:
    known = [k for k in VOLUME_CONTROL_KEYS if k in keys]
    return known + sorted(k for k in keys if k not in VOLUME_CONTROL_KEYS)


# -- the check ----------------------------------------------------------------------------


def changed_keys(before: Element | None, after: Element | None) -> list[str]:
    """The keys whose value differs between two states of an element (a key present in
    one only counts), in :func:`volume_keys` order. JSON types count: ``1`` is not
    ``true``.

    >>> changed_keys({"_id": "a", "k": 1, "n": 2}, {"_id": "a", "k": True, "n": 2, "m": 3})
    ['k', 'm']
    """
    old, new = before or {}, after or {}
    keys = _ordered({**old, **new})
    return [k for k in keys if k != "_id" and not _same(old.get(k, MISSING), new.get(k, MISSING))]


def check_write(session: Any, op: str, before: Element | None, after: Element | None) -> None:
    """Raise :class:`~damas_core.errors.Forbidden` (naming ``op``, the id and a key)
    unless the non-admin ``session`` may turn ``before`` (the stored element, ``None``
    when new) into ``after`` (``None`` when deleted). A write that changes nothing is
    allowed. Refused:

    - any write of :data:`GLOBAL_PARAMETERS_ID`;
    - creating, changing or removing a volume (:func:`is_volume` before or after);
    - writing a user account (``@name``, or any element with a ``username``: damas-core's
      accounts), except a user's own password, email and full
      name (:func:`damas_core.permissions.check_account_write`).

    >>> import damas_core
    >>> t = damas_core.open("memory://")
    >>> _ = t.create({"_id": "@ula", "class": "user"})
    >>> check_write(t.as_user("ula"), "create", None, {"_id": "v", "url": "ssh://a@b/p/"})
    Traceback (most recent call last):
    ...
    damas_core.errors.Forbidden: create error: only admins may create volumes: 'v' would be one by its 'url'
    """
    element = after if after is not None else before
    if element is None or _same(before, after):
        return
    element_id = element["_id"]
    if element_id == GLOBAL_PARAMETERS_ID:
        changed = changed_keys(before, after)
        raise Forbidden(
            f"{op} error: only admins may write {GLOBAL_PARAMETERS_ID!r}: the sync agents obey it",
            op=op,
            id=element_id,
            key=changed[0] if changed else None,
        )
    if is_volume(before) or is_volume(after):
        raise _volume_refusal(op, before, after)
    if element_id.startswith("@") or _has_username(before) or _has_username(after):
        # damas-core's accounts have any _id and a username (damas_core.operations.users)
        check_account_write(session, op, element_id, before, after, changed_keys(before, after))


def _has_username(element: Element | None) -> bool:
    return element is not None and "username" in element


def _volume_refusal(op: str, before: Element | None, after: Element | None) -> Forbidden:
    element = after if after is not None else before
    assert element is not None
    where = repr(element["_id"])
    if isinstance(element.get("#parent"), str):  # a version's archive, a comment
        where += f" (a child of {element['#parent']!r})"
    control = _ordered({*volume_keys(before or {}), *volume_keys(after or {})})
    changed = changed_keys(before, after)
    key = next((k for k in changed if k in control), control[0])
    keys = ", ".join(map(repr, control))
    if before is None:
        message = f"only admins may create volumes: {where} would be one by its {keys}"
    elif after is None:
        message = f"only admins may remove volumes: {where} is one by its {keys}"
    else:
        state = "is" if is_volume(before) else "would be"
        message = (
            f"only admins may change volumes: {where} {state} one by its {keys}; "
            f"this changes {', '.join(map(repr, changed))}"
        )
    return Forbidden(f"{op} error: {message}", op=op, id=element["_id"], key=key)


def _same(a: Any, b: Any) -> bool:
    # == first (cheap, and False for almost every write); JSON then tells 1 from true
    return a == b and orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        b, option=orjson.OPT_SORT_KEYS
    )


# -- the guarded store ----------------------------------------------------------------------


class GuardedStorage:
    """The store as the operations of a :class:`~damas_core.tracker.Session` see it
    (``session.store``): reads go straight to the tracker's storage; every write first
    checks its file paths (:func:`damas_core.paths.check_elements`,
    :func:`~damas_core.paths.check_patches`), for every session, admins and the
    tracker itself included; for a non-admin it then computes, for each element, its
    state before and after, and calls :func:`check_write`. Nothing of a refused call
    is written.

    Inserts are checked as the element they would create (an insert whose ``_id``
    exists writes nothing, but the element is refused all the same). Patches and
    deletes read the elements they change in the write's own transaction, so the check
    and the write are one atomic step.

    Only the methods the operations use are here, each explicit: a typo or a missing
    method is an ``AttributeError``, not a write that slipped past the check.
    """

    def __init__(self, session: Any, storage: Storage) -> None:
        self.session = session
        self.storage = storage
        self.url = storage.url

    def __repr__(self) -> str:
        return f"<GuardedStorage {self.url} for @{self.session.username}>"

    # -- reads ------------------------------------------------------------------------

    def get_many(self, ids: Sequence[str]) -> list[Element | None]:
        """:meth:`Storage.get_many <damas_core.backends.base.Storage.get_many>`."""
        return self.storage.get_many(ids)

    def get(self, id: str) -> Element | None:
        """:meth:`Storage.get <damas_core.backends.base.Storage.get>`."""
        return self.storage.get(id)

    def find(
        self, query: Node, sort: Sort | None = None, skip: int = 0, limit: int | None = None
    ) -> list[str]:
        """:meth:`Storage.find <damas_core.backends.base.Storage.find>`."""
        return self.storage.find(query, sort, skip, limit)

    def find_elements(
        self, query: Node, sort: Sort | None = None, skip: int = 0, limit: int | None = None
    ) -> list[Element]:
        """:meth:`Storage.find_elements <damas_core.backends.base.Storage.find_elements>`."""
        return self.storage.find_elements(query, sort, skip, limit)

    def count(self, query: Node) -> int:
        """:meth:`Storage.count <damas_core.backends.base.Storage.count>`."""
        return self.storage.count(query)

    def changes(self, since: int, limit: int) -> tuple[int, list[Any]]:
        """:meth:`Storage.changes <damas_core.backends.base.Storage.changes>`."""
        return self.storage.changes(since, limit)

    def last_seq(self) -> int:
        """:meth:`Storage.last_seq <damas_core.backends.base.Storage.last_seq>`."""
        return self.storage.last_seq()

    def horizon(self) -> int:
        """:meth:`Storage.horizon <damas_core.backends.base.Storage.horizon>`."""
        return self.storage.horizon()

    def transaction(self) -> AbstractContextManager[None]:
        """:meth:`Storage.transaction <damas_core.backends.base.Storage.transaction>`."""
        return self.storage.transaction()

    # -- writes, checked --------------------------------------------------------------

    def insert_many(self, elements: Sequence[Element], *, op: str = "insert") -> list[bool]:
        """Check the paths of the elements, and each element as new
        (:func:`check_write`), then insert them all."""
        session = self.session
        check_elements(elements, op)
        if not session.is_admin:
            for e in elements:
                if isinstance(e, dict) and isinstance(e.get("_id"), str):
                    check_write(session, op, None, e)
        return self.storage.insert_many(elements, op=op)

    def patch_many(self, patches: Sequence[Patch], *, op: str = "patch") -> list[bool]:
        """Check the paths the patches touch, and each element as the patches leave it,
        then apply them, atomically."""
        check_patches(patches, op)
        if self.session.is_admin:
            return self.storage.patch_many(patches, op=op)
        with self.storage.transaction():
            ids = list(dict.fromkeys(p.id for p in patches))
            state = dict(zip(ids, self.storage.get_many(ids)))
            for p in patches:
                before = state[p.id]
                if before is None:
                    continue  # nothing to patch: the storage answers False
                after = dict(before)  # apply_patch changes top-level keys only
                if apply_patch(after, p):
                    check_write(self.session, op, before, after)
                    state[p.id] = after
            return self.storage.patch_many(patches, op=op)

    def delete_many(self, ids: Sequence[str], *, op: str = "delete") -> list[bool]:
        """Check each stored element being removed, then delete them, atomically (any
        id may be deleted: a non-canonical path too)."""
        if self.session.is_admin:
            return self.storage.delete_many(ids, op=op)
        with self.storage.transaction():
            id_list = list(dict.fromkeys(ids))
            for before in self.storage.get_many(id_list):
                if before is not None:
                    check_write(self.session, op, before, None)
            return self.storage.delete_many(ids, op=op)
