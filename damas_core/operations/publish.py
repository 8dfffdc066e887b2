"""publish: start tracking a file, with its first history entry."""

from __future__ import annotations

from itertools import repeat
from operator import contains, itemgetter
from typing import TYPE_CHECKING, Any

from damas_core.elements import Element, as_list, check_element, has_list_id, id_of, new_ids
from damas_core.errors import BadRequest
from damas_core.operations.common import public_all
from damas_core.operations.crud import prepare_new
from damas_core.permissions import require

if TYPE_CHECKING:
    from damas_core.tracker import Session


def _check_publishable(elements: list[Element]) -> None:
    """Each file needs an ``_id`` path starting with ``/`` and a non-blank ``comment``
    and ``origin``; checked in bulk (publishes of whole trees are where a step per file
    shows), then one by one to name the first fault."""
    if _all_publishable(elements):
        return
    for e in elements:
        fid = e["_id"]
        if not isinstance(fid, str) or not fid.startswith("/"):
            raise BadRequest(
                f"publish error: a file _id is a path starting with '/', not {fid!r}",
                op="publish",
            )
        for key in ("comment", "origin"):
            if not isinstance(e.get(key), str) or not e[key].strip():
                raise BadRequest(
                    f"publish error: {fid!r} needs a non-empty {key!r}",
                    op="publish",
                    id=fid,
                    key=key,
                )


def _all_publishable(elements: list[Element]) -> bool:
    try:
        ids = "\x00".join(map(id_of, elements))  # TypeError unless all strings
        texts = [list(map(itemgetter(key), elements)) for key in ("comment", "origin")]
    except (KeyError, TypeError):
        return False
    return (
        ids[:1] == "/"
        and ids.count("\x00/") == len(elements) - 1 == ids.count("\x00")
        and all(set(map(type, t)) == {str} and all(map(str.strip, t)) for t in texts)
    )


#: What a history entry records of a publish: who, when and why, not the file's keys,
#: so that searches on file keys (``origin:paris``) find files, not their history.
HISTORY_KEYS = ("author", "time", "comment")


def history_entries(files: list[Element], child_ids: list[str]) -> list[Element]:
    """The history child of each published file (the child ``_id`` from
    ``child_ids``), hanging off ``#parent``."""
    if all(map(_has_history_keys, files)):  # a publish stamps them: the usual case
        return [
            {"author": a, "time": t, "comment": c, "_id": i, "#parent": f}
            for (a, t, c), i, f in zip(map(_history_values, files), child_ids, map(id_of, files))
        ]
    out = []
    for file, child_id in zip(files, child_ids):
        child = {k: file[k] for k in HISTORY_KEYS if k in file}
        child["_id"] = child_id
        child["#parent"] = file["_id"]
        out.append(child)
    return out


_history_values = itemgetter(*HISTORY_KEYS)


def _has_history_keys(file: Element) -> bool:
    return "author" in file and "time" in file and "comment" in file


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
    if set(map(type, raw)) != {dict} or not all(map(contains, raw, repeat("_id"))):
        for e in raw:
            if not isinstance(e, dict) or "_id" not in e:
                check_element(e, "publish")  # raises if not an element at all
                raise BadRequest("publish error: each file needs an _id path", op="publish")
    prepared = prepare_new(session, raw, "publish", fresh_ids=False, check=_check_publishable)
    prepared = session.events.before("create", session, prepared)
    storage = session.store
    with storage.transaction():
        fresh = storage.insert_many(prepared, op="publish")
        done = all(fresh)
        published = prepared if done else [f for f, ok in zip(prepared, fresh) if ok]
        children = history_entries(published, new_ids(len(published)))
        storage.insert_many(children, op="publish")
    files: list[Any] = public_all(
        prepared if done else [f if ok else None for f, ok in zip(prepared, fresh)], session
    )
    session.events.after("create", session, files)
    if with_history:
        kids = iter(public_all(children, session))
        results: list[Any] = [None if f is None else (f, next(kids)) for f in files]
    else:
        results = files
    return results[0] if single else results
