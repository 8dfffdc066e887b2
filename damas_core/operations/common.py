"""Rules every write shares: what a caller may write, password hashing, and what a
read path may return."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from damas_core.elements import Element, has_key
from damas_core.errors import BadRequest, Forbidden
from damas_core.passwords import stored_form
from damas_core.permissions import (
    CLASSES,
    SELF_SERVICE_KEYS,
    check_keys,
    is_author,
    require,
)
from damas_core.query.ast import Node, Sort, keys_of

if TYPE_CHECKING:
    from damas_core.tracker import Session

#: Keys no read returns, to anyone: stored, never shown, never searched or sorted on.
PRIVATE_KEYS = ("password",)
#: Keys only admins read: secrets a volume hands to rsync.
ADMIN_READ_KEYS = ("rsync_env",)


def private_keys(session: Session) -> tuple[str, ...]:
    """The keys the reads of ``session`` never return (admins read ``rsync_env``).

    >>> import damas_core
    >>> t = damas_core.open("memory://")
    >>> private_keys(t)
    ('password',)
    """
    return PRIVATE_KEYS if session.is_admin else PRIVATE_KEYS + ADMIN_READ_KEYS


def public(element: Element | None, session: Session) -> Element | None:
    """The element as the reads of ``session`` return it: without its
    :func:`private_keys`, in place. ``None`` stays ``None``. Every read path (read,
    search, graph, verify, the answers of writes) goes through this or
    :func:`public_all`."""
    if element is None:
        return None
    for key in private_keys(session):
        element.pop(key, None)
    return element


def public_all(elements: list[Element | None], session: Session) -> list[Element | None]:
    """:func:`public` of each element (``None`` stays ``None``), in place."""
    for key in private_keys(session):
        try:
            if not has_key(elements, key):
                continue  # the usual bulk call, checked in C
        except TypeError:  # None holes: one by one
            pass
        for e in elements:
            if e is not None and key in e:
                del e[key]
    return elements


def check_queryable(
    session: Session, query: Node | None, sort: Sort = (), op: str = "search"
) -> None:
    """Raise ``BadRequest`` naming the key unless every key ``query`` tests and
    ``sort`` orders by is one the reads of ``session`` return: a query on a private
    key would answer what reads hide, one character of a hash per request. A path
    counts from its first key (``password.x``), with or without a leading ``#``
    (``#password``). Every search, search_mongo and change-feed filter is checked here.

    >>> import damas_core
    >>> from damas_core.query import parse
    >>> check_queryable(damas_core.open("memory://"), parse("password:/^x/"))
    Traceback (most recent call last):
    ...
    damas_core.errors.BadRequest: search error: 'password' cannot be searched or sorted on: reads never return it
    """
    private = private_keys(session)
    paths = [] if query is None else [p[0] for p in keys_of(query)]
    paths += [key.split(".", 1)[0] for key, _ in sort]
    for first in paths:
        key = first[1:] if first.startswith("#") else first
        if key in private:
            it = "it" if key == first else repr(key)
            why = f"reads never return {it}" if key in PRIVATE_KEYS else f"only admins read {it}"
            raise BadRequest(
                f"{op} error: {first!r} cannot be searched or sorted on: {why}", op=op, key=first
            )


def self_service(session: Session, element_id: str, keys: Iterable[str]) -> bool:
    """True when a user changes only their own password, email or full name."""
    own = session.user.get("_id", f"@{session.username}")
    return element_id == own and set(keys) <= SELF_SERVICE_KEYS


def authorize(
    session: Session,
    op: str,
    element_id: str,
    keys: Iterable[str],
    existing: Element | None = None,
) -> None:
    """Raise ``Forbidden`` unless the session's class may run ``op`` writing ``keys``
    on ``element_id``: the class the operation needs (a user's change of their own
    password, email or full name needs none), no :data:`RESTRICTED_KEYS
    <damas_core.permissions.RESTRICTED_KEYS>`, and with ``author_mode`` only elements
    the user authored (``existing`` is the stored element, when the call changes one).
    Admins may do anything.

    What the write does to volumes, ``rsyncGlobalParameters`` and user accounts is
    checked below every operation, on each element as it will be after the write, by
    :func:`damas_core.trust.check_write`.
    """
    if session.is_admin:
        return
    keys = list(keys)
    if op in ("update", "upsert") and self_service(session, element_id, keys):
        return  # trust.check_write lets it through only on the user's own account
    require(session.user_class, op, session.username)
    check_keys(keys, op, session.username, element_id)
    if session.author_mode and existing is not None and not is_author(existing, session.username):
        raise Forbidden(
            f"{op} error: {element_id!r} belongs to {existing.get('author')!r}; "
            f"with author_mode only its author or an admin may change it",
            op=op,
            id=element_id,
        )


def prepare_values(
    values: dict[str, Any], op: str, element_id: str, *, admin: bool = False
) -> dict[str, Any]:
    """Check account keys and hash a password being written. Returns ``values``
    itself when nothing changes, else a copy.

    An ``admin``'s legacy md5/sha1 hex password (an account copied from damas-core) is
    kept as that hash, to be upgraded at the next sign-in; anything else is hashed
    (see :func:`damas_core.passwords.stored_form`)."""
    if "class" not in values and "password" not in values:
        return values
    out = dict(values)
    if "class" in out and out["class"] is not None and out["class"] not in CLASSES:
        raise BadRequest(
            f"{op} error: class must be one of {', '.join(CLASSES)}, not {out['class']!r}",
            op=op,
            id=element_id,
            key="class",
        )
    if "password" in out and out["password"] is not None:
        pw = out["password"]
        if not isinstance(pw, str) or pw == "":
            raise BadRequest(
                f"{op} error: a password must be a non-empty string",
                op=op,
                id=element_id,
                key="password",
            )
        out["password"] = stored_form(pw, keep_hash=admin)
    return out
