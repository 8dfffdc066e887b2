"""lock and unlock: all-or-nothing over a list of ids, and who holds what a refusal
was about."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from damas_core.backends.base import Patch
from damas_core.elements import Element, check_id, check_ids
from damas_core.errors import Conflict, DamasError, Forbidden, NotFound
from damas_core.operations.common import public_all
from damas_core.ordering import MISSING
from damas_core.permissions import require

if TYPE_CHECKING:
    from damas_core.tracker import Session


class _Refused(Exception):
    """Rolls a lock or unlock transaction back."""


def holders(elements: list[Element | None], username: str) -> dict[str, str]:
    """``{id: "@holder"}`` for each of ``elements`` locked by someone other than
    ``username``, in order (``None`` holes are skipped).

    >>> holders([{"_id": "/a", "lock": "bob"}, None, {"_id": "/b", "lock": "ada"}], "ada")
    {'/a': '@bob'}
    """
    return {
        e["_id"]: f"@{e['lock']}"
        for e in elements
        if e is not None and isinstance(e.get("lock"), str) and e["lock"] != username
    }


def refusal(session: Session, ids: list[str], op: str) -> DamasError:
    """Why ``op`` (lock or unlock) of ``ids`` was refused, as the error to raise:
    ``NotFound`` when no id exists, else ``Conflict`` whose ``locked`` maps the ids
    someone else holds to their holder (the HTTP 409 body carries it) and whose
    message names the first holder, or else the missing or unlocked id."""
    found = [None if session.hidden(i) else e for i, e in zip(ids, session.store.get_many(ids))]
    missing = [i for i, e in zip(ids, found) if e is None]
    if len(missing) == len(ids):
        return NotFound(f"{op} error: not found: {missing[0]!r}", op=op, id=missing[0])
    held = holders(found, session.username)
    free = [i for i, e in zip(ids, found) if e is not None and e.get("lock") is None]
    if held:
        first = next(iter(held))
        others = f" (and {len(held) - 1} more)" if len(held) > 1 else ""
        message, culprit = f"{first!r} is locked by {held[first]}{others}", first
    elif missing:
        message, culprit = f"{missing[0]!r} not found", missing[0]
    elif op == "unlock" and free:
        message, culprit = f"{free[0]!r} is not locked", free[0]
    else:  # the locks changed between the refusal and this look
        message, culprit = "the locks changed meanwhile: try again", None
    error = Conflict(f"{op} error: {message}", op=op, id=culprit)
    error.locked = held
    return error


def announce(session: Session, ids: list[str]) -> None:
    """Run the ``update`` event with the elements a lock or unlock changed (read back
    only when a callback listens; nothing changed, no event)."""
    if ids and session.events.wants("update"):
        changed = public_all(session.store.get_many(ids), session)
        session.events.after("update", session, changed)


def lock(session: Session, ids: Any, *, strict: bool = False) -> bool:
    """Lock every id for the caller. ``True`` when all are now locked by the caller
    (already holding a lock is fine); ``False``, with nothing changed, when one is
    missing or locked by someone else. With ``strict``, that refusal raises instead
    (:func:`refusal`: ``NotFound``, or ``Conflict`` naming the holders)."""
    require(session.user_class, "lock", session.username)
    id_list, _ = check_ids(ids, "lock")
    for i in id_list:
        check_id(i, "lock", write=True)
    me = session.username
    session.events.before("update", session, [{"_id": i, "lock": me} for i in id_list])
    storage = session.store
    try:
        with storage.transaction():
            current = storage.get_many(id_list)
            patches = []
            for i, e in zip(id_list, current):
                if e is None:
                    raise _Refused
                owner = e.get("lock", MISSING)
                if owner == me:
                    continue
                if owner is not MISSING and owner is not None:
                    raise _Refused
                patches.append(Patch(i, set={"lock": me}, expect={"lock": owner}))
            # De-duplicate: a repeated id is locked once.
            unique = list({p.id: p for p in patches}.values())
            if not all(storage.patch_many(unique, op="lock")):
                raise _Refused
    except _Refused:
        if strict:
            raise refusal(session, id_list, "lock") from None
        return False
    announce(session, [p.id for p in unique])
    return True


def unlock(session: Session, ids: Any, force: bool = False, *, strict: bool = False) -> bool:
    """Unlock every id. ``True`` when each was locked by the caller (or, with
    ``force``, by anyone: admins only) and is now unlocked; ``False``, with nothing
    changed, when one is missing, not locked, or locked by someone else. With
    ``strict``, that refusal raises instead (see :func:`refusal`)."""
    require(session.user_class, "unlock", session.username)
    if force and not session.is_admin:
        raise Forbidden("unlock error: only admins may force an unlock", op="unlock")
    id_list, _ = check_ids(ids, "unlock")
    me = session.username
    session.events.before("update", session, [{"_id": i, "lock": None} for i in id_list])
    storage = session.store
    try:
        with storage.transaction():
            current = storage.get_many(id_list)
            patches = {}
            for i, e in zip(id_list, current):
                owner = None if e is None else e.get("lock")
                if owner is None or (owner != me and not force):
                    raise _Refused
                patches[i] = Patch(i, unset=("lock",), expect={"lock": owner})
            if not all(storage.patch_many(list(patches.values()), op="unlock")):
                raise _Refused
    except _Refused:
        if strict:
            raise refusal(session, id_list, "unlock") from None
        return False
    announce(session, list(patches))
    return True
