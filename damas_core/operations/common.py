"""Rules every write shares: what a caller may write, password hashing, and what a
read path may return."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from damas_core.elements import Element, has_key
from damas_core.errors import BadRequest, Forbidden
from damas_core.passwords import hash_password
from damas_core.permissions import (
    CLASSES,
    SELF_SERVICE_KEYS,
    check_keys,
    check_volume_keys,
    is_author,
    require,
)

if TYPE_CHECKING:
    from damas_core.tracker import Session

PRIVATE_KEYS = ("password",)


def public(element: Element | None) -> Element | None:
    """The element as read paths return it: without its password hash."""
    if element is None:
        return None
    for key in PRIVATE_KEYS:
        element.pop(key, None)
    return element


def public_all(elements: list[Element | None]) -> list[Element | None]:
    """:func:`public` of each element (``None`` stays ``None``), in place."""
    for key in PRIVATE_KEYS:
        try:
            if not has_key(elements, key):
                continue  # the usual bulk call, checked in C
        except TypeError:  # None holes: one by one
            pass
        for e in elements:
            if e is not None and key in e:
                del e[key]
    return elements


def is_user_id(element_id: str) -> bool:
    """User elements are ``@name``."""
    return element_id.startswith("@")


def self_service(session: Session, element_id: str, keys: Iterable[str]) -> bool:
    """True when a user changes only their own password, email or full name."""
    return element_id == f"@{session.username}" and set(keys) <= SELF_SERVICE_KEYS


def authorize(
    session: Session,
    op: str,
    element_id: str,
    keys: Iterable[str],
    existing: Element | None = None,
) -> None:
    """Raise ``Forbidden`` unless the session may write ``keys`` on ``element_id``.

    ``existing`` is the stored element for changes to one (``author_mode`` and user
    accounts need it). Admins may do anything.
    """
    if session.is_admin:
        return
    keys = list(keys)
    if (
        self_service(session, element_id, keys)
        and op in ("update", "upsert")
        and existing is not None
    ):
        return
    require(session.user_class, op, session.username)
    if is_user_id(element_id):
        raise Forbidden(
            f"{op} error: only admins may change user accounts ({element_id!r})",
            op=op,
            id=element_id,
        )
    check_keys(keys, op, session.username, element_id)
    check_volume_keys(keys, existing or (), op, element_id)
    if session.author_mode and existing is not None and not is_author(existing, session.username):
        raise Forbidden(
            f"{op} error: {element_id!r} belongs to {existing.get('author')!r}; "
            f"with author_mode only its author or an admin may change it",
            op=op,
            id=element_id,
        )


def prepare_values(values: dict[str, Any], op: str, element_id: str) -> dict[str, Any]:
    """Check account keys and hash a password being written. Returns ``values``
    itself when nothing changes, else a copy."""
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
        out["password"] = hash_password(pw)
    return out
