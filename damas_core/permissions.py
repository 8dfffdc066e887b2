"""Who may do what (DESIGN.md §7): user classes, the class each operation needs, and
the keys only admins may write.

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

#: Keys a non-admin can never write through create, update, upsert or version.
RESTRICTED_KEYS: frozenset[str] = frozenset({"author", "time", "class", "lock"})
#: Keys of a volume (an element with ``name`` and ``url``) only admins may write:
#: they decide where files are copied and how rsync runs.
VOLUME_ADMIN_KEYS: frozenset[str] = frozenset({"url", "rsync_args", "rsync_env"})
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


def check_volume_keys(
    keys: Iterable[str], existing_keys: Iterable[str], op: str, element_id: str
) -> None:
    """Raise ``Forbidden`` when a non-admin writes a volume's ``url``, ``rsync_args``
    or ``rsync_env`` (on an element that is, or would become, a volume: it has both
    ``name`` and ``url``). ``rsync_args`` and ``rsync_env`` are refused on any element."""
    keys = set(keys)
    touched = keys & VOLUME_ADMIN_KEYS
    if not touched:
        return
    after = keys | set(existing_keys)
    for key in sorted(touched):
        if key != "url" or {"name", "url"} <= after:
            raise Forbidden(
                f"{op} error: only admins may set {key!r} on a volume ({element_id!r})",
                op=op,
                id=element_id,
                key=key,
            )


def is_author(element: dict[str, Any], username: str) -> bool:
    """True when ``username`` is the element's author (``author`` may be a list)."""
    author = element.get("author")
    if isinstance(author, list):
        return username in author
    return author == username
