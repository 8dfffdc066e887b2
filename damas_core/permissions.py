"""Who may do what (docs/guide.md, "Users and permissions"): user classes, the class each operation needs, the
keys only admins may write through generic writes, and who may write user accounts.
What the sync agents obey (volumes, ``rsyncGlobalParameters``) is :mod:`damas_core.trust`.

Classes, lowest to highest: ``guest`` (read, graph, search, verify), ``user`` (+ create,
publish, comment, lock, unlock, version), ``editor`` (+ update, upsert, delete),
``admin`` (everything, restricted keys, forced unlock, user accounts).

>>> may("user", "publish"), may("user", "delete"), may("editor", "delete")
(True, False, True)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from damas_core.errors import Forbidden

CLASSES: tuple[str, ...] = ("guest", "user", "editor", "admin")
RANK: dict[str, int] = {c: i for i, c in enumerate(CLASSES)}
#: The class a user element without ``class`` has.
DEFAULT_CLASS = "guest"

REQUIRED: dict[str, str] = {
    "read": "guest",
    "graph": "guest",
    "search": "guest",
    "search_elements": "guest",
    "search_one": "guest",
    "search_mongo": "guest",
    "verify": "guest",
    "create": "user",
    "publish": "user",
    "comment": "user",
    "lock": "user",
    "unlock": "user",
    "version": "user",
    "update": "editor",
    "upsert": "editor",
    "delete": "editor",
}

#: Keys a non-admin never writes through the generic writes (create, update, upsert,
#: publish, comment, version): the operations stamp `author` and `time`, lock and unlock
#: set `lock`, and `class` is an account's.
RESTRICTED_KEYS: frozenset[str] = frozenset({"author", "time", "class", "lock"})
#: Keys anyone may change on their own user element.
SELF_SERVICE_KEYS: frozenset[str] = frozenset({"password", "email", "fullname"})


def class_of(user: dict[str, Any] | None) -> str:
    """The class of a user element (``guest`` when unset or unknown)."""
    c = (user or {}).get("class", DEFAULT_CLASS)
    return c if c in RANK else DEFAULT_CLASS


def may(user_class: str, op: str) -> bool:
    """True when ``user_class`` may run ``op``."""
    return RANK.get(user_class, 0) >= RANK[REQUIRED[op]]


#: The operations each class may run (``require`` runs on every call: one lookup).
ALLOWED: dict[str, frozenset[str]] = {
    c: frozenset(o for o in REQUIRED if may(c, o)) for c in CLASSES
}


def require(user_class: str, op: str, username: str) -> None:
    """Raise ``Forbidden`` unless ``user_class`` may run ``op``."""
    if op not in ALLOWED.get(user_class, ()):
        raise Forbidden(
            f"{op} error: @{username} ({user_class}) may not {op}; it needs class {REQUIRED[op]} or higher",
            op=op,
        )


def check_keys(keys: Iterable[str], op: str, username: str, element_id: str) -> None:
    """Raise ``Forbidden`` naming the first restricted key a non-admin tries to write."""
    for key in keys:
        if key in RESTRICTED_KEYS:
            raise Forbidden(
                f"{op} error: only admins may set {key!r} (on {element_id!r})",
                op=op,
                id=element_id,
                key=key,
            )


def check_account_write(
    session: Any,
    op: str,
    user_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    changed: list[str],
) -> None:
    """Raise ``Forbidden`` unless the non-admin ``session`` may make this write to the
    user element ``user_id`` (``changed`` names the keys it changes): only a change of
    one's own password, email or full name (:data:`SELF_SERVICE_KEYS`) is. Creating or
    deleting an account, or changing its class, is for admins.

    Checked below every operation by :func:`damas_core.trust.check_write`."""
    if before is None or after is None:
        what = "create" if before is None else "delete"
        raise Forbidden(
            f"{op} error: only admins may {what} user accounts ({user_id!r})", op=op, id=user_id
        )
    own = session.user.get("_id", f"@{session.username}")
    if user_id == own and set(changed) <= SELF_SERVICE_KEYS:
        return
    key = next((k for k in changed if k not in SELF_SERVICE_KEYS), changed[0])
    raise Forbidden(
        f"{op} error: only admins may change user accounts ({user_id!r}: {', '.join(map(repr, changed))})",
        op=op,
        id=user_id,
        key=key,
    )


def is_author(element: dict[str, Any], username: str) -> bool:
    """True when ``username`` is the element's author (``author`` may be a list)."""
    author = element.get("author")
    if isinstance(author, list):
        return username in author
    return author == username
