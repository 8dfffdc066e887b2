"""lock and unlock: all-or-nothing over a list of ids."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from damas_core.backends.base import Patch
from damas_core.elements import check_id, check_ids
from damas_core.errors import Forbidden
from damas_core.ordering import MISSING
from damas_core.permissions import require

if TYPE_CHECKING:
    from damas_core.tracker import Session


class _Refused(Exception):
    """Rolls a lock or unlock transaction back."""


def lock(session: Session, ids: Any) -> bool:
    """Lock every id for the caller. ``True`` when all are now locked by the caller
    (already holding a lock is fine); ``False``, with nothing changed, when one is
    missing or locked by someone else."""
    require(session.user_class, "lock", session.username)
    id_list, _ = check_ids(ids, "lock")
    for i in id_list:
        check_id(i, "lock", write=True)
    me = session.username
    storage = session.storage
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
            if not all(storage.patch_many(unique)):
                raise _Refused
    except _Refused:
        return False
    return True


def unlock(session: Session, ids: Any, force: bool = False) -> bool:
    """Unlock every id. ``True`` when each was locked by the caller (or, with
    ``force``, by anyone: admins only) and is now unlocked; ``False``, with nothing
    changed, when one is missing, not locked, or locked by someone else."""
    require(session.user_class, "unlock", session.username)
    if force and not session.is_admin:
        raise Forbidden("unlock error: only admins may force an unlock", op="unlock")
    id_list, _ = check_ids(ids, "unlock")
    me = session.username
    storage = session.storage
    try:
        with storage.transaction():
            current = storage.get_many(id_list)
            patches = {}
            for i, e in zip(id_list, current):
                owner = None if e is None else e.get("lock")
                if owner is None or (owner != me and not force):
                    raise _Refused
                patches[i] = Patch(i, unset=("lock",), expect={"lock": owner})
            if not all(storage.patch_many(list(patches.values()))):
                raise _Refused
    except _Refused:
        return False
    return True
