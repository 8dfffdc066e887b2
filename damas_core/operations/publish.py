"""publish: start tracking a file, with its first history entry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from damas_core.elements import (
    Element,
    as_list,
    check_element,
    check_id,
    has_list_id,
    new_id,
    unfold,
)
from damas_core.errors import BadRequest
from damas_core.operations.common import authorize, prepare_values, public
from damas_core.operations.crud import stamp
from damas_core.permissions import require

if TYPE_CHECKING:
    from damas_core.tracker import Session


def _check_publishable(e: Element) -> None:
    fid = e["_id"]
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


def history_entry(file: Element) -> Element:
    """The child recorded with a published file, hanging off ``#parent``."""
    child = {k: file[k] for k in HISTORY_KEYS if k in file}
    child["_id"] = new_id()
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
        check_element(e, "publish")
        if "_id" not in e:
            raise BadRequest("publish error: each file needs an _id path", op="publish")
    files = unfold(raw, fresh_ids=False)
    prepared = []
    for e in files:
        _check_publishable(e)
        check_id(e["_id"], "publish", write=True)
        authorize(session, "publish", e["_id"], e.keys())
        prepared.append(stamp(session, prepare_values(e, "publish", e["_id"])))
    prepared = session.events.before("create", session, prepared)
    storage = session.storage
    results: list[Any] = []
    with storage.transaction():
        fresh = [ok for ok in storage.insert_many(prepared)]
        children = [history_entry(f) for f, ok in zip(prepared, fresh) if ok]
        storage.insert_many(children)
    child_iter = iter(children)
    for f, ok in zip(prepared, fresh):
        if not ok:
            results.append(None)
        elif with_history:
            results.append((public(dict(f)), public(next(child_iter))))
        else:
            results.append(public(dict(f)))
    session.events.after("create", session, [r[0] if isinstance(r, tuple) else r for r in results])
    return results[0] if single else results
