"""graph: the elements linked to a set of ids, walking links backwards."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from damas_core.elements import Element, check_ids
from damas_core.errors import BadRequest
from damas_core.operations.common import public_all
from damas_core.permissions import require
from damas_core.query.ast import In

if TYPE_CHECKING:
    from damas_core.tracker import Session


def graph(session: Session, ids: Any, depth: int = 0) -> list[Element | None]:
    """The nodes ``ids`` and every node reached through links whose ``tgt_id`` is in
    the set (taking the link's ``src_id``), ``depth`` levels deep (0: no limit). The
    walk starts from the given ids that exist; a link's ``src_id`` that does not exist
    is walked through but not returned as a node.

    Returns the nodes first, then the links walked. The nodes are the given ids, then
    the ones reached, in the order they were reached. For a list of ids, each distinct
    id given has its place, in the order given, with ``None`` where it does not exist
    (as damas-core answers, and its clients expect); one id given alone that does not
    exist gives ``[]``.

    >>> import damas_core
    >>> t = damas_core.open("memory://")
    >>> _ = t.create([{"_id": "/a"}, {"_id": "/b"}, {"_id": "l", "src_id": "/b", "tgt_id": "/a"}])
    >>> [e and e["_id"] for e in t.graph(["/a", "/missing"])]
    ['/a', None, '/b', 'l']
    >>> t.graph("/missing")
    []
    """
    require(session.user_class, "graph", session.username)
    id_list, single = check_ids(ids, "graph")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise BadRequest(
            f"graph error: depth must be a whole number >= 0, not {depth!r}", op="graph"
        )
    storage = session.storage
    asked = list(dict.fromkeys(id_list))
    given = [None if session.hidden(i) else e for i, e in zip(asked, storage.get_many(asked))]
    start = [e for e in given if e is not None]
    seen: dict[str, None] = dict.fromkeys(e["_id"] for e in start)
    links: dict[str, Element] = {}
    frontier = list(seen)
    level = 0
    while frontier and (depth == 0 or level < depth):
        level += 1
        found = storage.find_elements(In(("tgt_id",), tuple(frontier)))
        frontier = []
        for link in found:
            if link["_id"] in links or session.hidden(link["_id"]):
                continue
            links[link["_id"]] = link
            src = link.get("src_id")
            if isinstance(src, str) and src not in seen and not session.hidden(src):
                seen[src] = None
                frontier.append(src)
    reached = [n for n in storage.get_many(list(seen)[len(start) :]) if n is not None]
    return public_all([*(start if single else given), *reached, *links.values()], session)
