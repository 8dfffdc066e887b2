"""version: archive an element's current state and update it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from damas_core.backends.base import Patch
from damas_core.elements import Element, check_element, check_id, new_id, now_ms
from damas_core.errors import BadRequest
from damas_core.operations.common import authorize, prepare_values, public
from damas_core.permissions import require
from damas_core.query.ast import Eq

if TYPE_CHECKING:
    from damas_core.tracker import Session


def version(session: Session, id: str, keys: dict[str, Any] | None = None) -> Element | None:
    """Archive the current state of ``id`` as a child ``{"#parent": id, ...}``, then
    update the head with ``keys`` (``null`` removes a key), ``author``, ``time`` and
    ``version`` = 1 + the number of its children. ``None`` if ``id`` does not exist.

    Runs the ``pre-update`` hooks on ``{"_id": id, **keys}`` (a replacement gives the
    keys) and the ``pre-create`` hooks on the archived copy, then the ``update`` event
    with the head and the ``create`` event with the copy."""
    require(session.user_class, "version", session.username)
    check_id(id, "version", write=True)
    keys = check_element({} if keys is None else keys, "version")
    if "_id" in keys:
        raise BadRequest("version error: the keys cannot change _id", op="version", id=id)
    storage, events = session.store, session.events
    with storage.transaction():
        head = storage.get(id)
        if head is None:
            return None
        change = events.before("update", session, [{**keys, "_id": id}])[0]
        keys = {k: v for k, v in change.items() if k != "_id"}
        authorize(session, "version", id, keys.keys(), head)
        archived = {k: v for k, v in head.items() if k != "_id"}
        archived.update({"_id": new_id(), "#parent": id})
        archived = events.before("create", session, [archived])[0]
        storage.insert_many([archived], op="version")
        children = storage.count(Eq(("#parent",), id))
        values = prepare_values(dict(keys), "version", id, admin=session.is_admin)
        to_set = {k: v for k, v in values.items() if v is not None}
        to_set.update({"author": session.username, "time": now_ms(), "version": children + 1})
        unset = tuple(k for k, v in values.items() if v is None)
        storage.patch_many([Patch(id, set=to_set, unset=unset)], op="version")
        result = public(storage.get(id), session)
    events.after("update", session, [result])
    events.after("create", session, [public(archived, session)])
    return result
