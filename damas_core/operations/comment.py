"""comment: attach a remark to one or several elements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from damas_core.elements import (
    Element,
    as_list,
    check_copied,
    check_element,
    check_id,
    copied_size,
    new_id,
    now_ms,
)
from damas_core.errors import BadRequest
from damas_core.operations.common import authorize, public_all
from damas_core.permissions import require

if TYPE_CHECKING:
    from damas_core.tracker import Session


def comment(session: Session, elements: Any) -> Any:
    """``{"#parent": id or [ids], "comment": text, ...}`` → a comment element per
    parent, with ``author`` and ``time``. For one parent the result is the comment
    (``None`` if the parent does not exist); for a list of parents, a list.
    Runs the ``pre-create`` hooks on the comments, then the ``create`` event."""
    raw, single = as_list(elements, "comment")
    require(session.user_class, "comment", session.username)
    plans: list[tuple[bool, list[Element]]] = []
    copied = 0
    for e in raw:
        check_element(e, "comment")
        text = e.get("comment")
        if not isinstance(text, str) or not text.strip():
            raise BadRequest(
                "comment error: a comment needs a non-empty 'comment' text", op="comment"
            )
        parents = e.get("#parent")
        many = isinstance(parents, list)
        parent_list = parents if many else [parents]
        if not parent_list:
            raise BadRequest(
                "comment error: '#parent' must name at least one element", op="comment"
            )
        if not session.is_admin:  # author and time are the comment's own: stamped below
            keys = (k for k in e if k not in ("author", "time"))
            authorize(session, "comment", str(parents), keys)
        if len(parent_list) > 1:
            copied += len(parent_list) * copied_size(e, ("_id", "#parent"))
            check_copied(copied, "comment", "the #parent lists")
        items = []
        for p in parent_list:
            check_id(p, "comment", write=True)
            c = {k: v for k, v in e.items() if k not in ("_id", "#parent")}
            c.update({"_id": new_id(), "#parent": p, "author": session.username, "time": now_ms()})
            items.append(c)
        plans.append((many, items))
    comments = session.events.before("create", session, [c for _, items in plans for c in items])
    storage = session.store
    with storage.transaction():
        exists = storage.get_many([c["#parent"] for c in comments])
        made = [
            c if parent is not None and not session.hidden(c["#parent"]) else None
            for c, parent in zip(comments, exists)
        ]
        storage.insert_many([c for c in made if c is not None], op="comment")
    made = public_all(made, session)
    session.events.after("create", session, made)
    results: list[Any] = []
    taken = iter(made)
    for many, items in plans:
        out = [next(taken) for _ in items]
        results.append(out if many else out[0])
    return results[0] if single else results
