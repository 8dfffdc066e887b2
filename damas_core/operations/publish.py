"""publish: start tracking a file, with its first history entry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from damas_core.elements import Element, as_list, check_element, has_list_id, new_ids
from damas_core.errors import BadRequest
from damas_core.operations.common import public
from damas_core.operations.crud import prepare_new
from damas_core.permissions import require

if TYPE_CHECKING:
    from damas_core.tracker import Session


def _check_publishable(e: Element) -> None:
    fid, comment, origin = e["_id"], e.get("comment"), e.get("origin")
    if (  # the usual file, checked in one go
        fid.__class__ is str
        and fid[:1] == "/"
        and comment.__class__ is str
        and origin.__class__ is str
        and comment.strip()
        and origin.strip()
    ):
        return
    if not isinstance(fid, str) or not fid.startswith("/"):
        raise BadRequest(
            f"publish error: a file _id is a path starting with '/', not {fid!r}", op="publish"
        )
    for key in ("comment", "origin"):
        if not isinstance(e.get(key), str) or not e[key].strip():
            raise BadRequest(
                f"publish error: {fid!r} needs a non-empty {key!r}", op="publish", id=fid, key=key
            )


#: What a history entry records of a publish: who, when and why, not the file's keys,
#: so that searches on file keys (``origin:paris``) find files, not their history.
HISTORY_KEYS = ("author", "time", "comment")


def history_entry(file: Element, child_id: str) -> Element:
    """The child ``child_id`` recorded with a published file, hanging off ``#parent``."""
    child = {k: file[k] for k in HISTORY_KEYS if k in file}
    child["_id"] = child_id
    child["#parent"] = file["_id"]
    return child


def publish(session: Session, elements: Any, *, with_history: bool = False) -> Any:
    """Track new files: each needs an ``_id`` path starting with ``/``, a ``comment``
    and an ``origin``. Creates the file element and a history child
    ``{"#parent": id, ...}`` in one atomic step; ``None`` where the path is already
    tracked (nothing written for it). With ``with_history`` each result is the pair
    ``(file, child)``.
    """
    raw, single = as_list(elements, "publish")
    require(session.user_class, "publish", session.username)
    single = single and not has_list_id(raw)
    for e in raw:
        if not isinstance(e, dict) or "_id" not in e:
            check_element(e, "publish")  # raises if not an element at all
            raise BadRequest("publish error: each file needs an _id path", op="publish")
    prepared = prepare_new(session, raw, "publish", fresh_ids=False, check=_check_publishable)
    prepared = session.events.before("create", session, prepared)
    storage = session.storage
    results: list[Any] = []
    with storage.transaction():
        fresh = storage.insert_many(prepared, op="publish")
        published = [f for f, ok in zip(prepared, fresh) if ok]
        children = list(map(history_entry, published, new_ids(len(published))))
        storage.insert_many(children)
    child_iter = iter(children)
    for f, ok in zip(prepared, fresh):
        if not ok:
            results.append(None)
        elif with_history:
            results.append((public(f), public(next(child_iter))))
        else:
            results.append(public(f))
    session.events.after("create", session, [r[0] if isinstance(r, tuple) else r for r in results])
    return results[0] if single else results
