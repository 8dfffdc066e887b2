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


def graph(session: Session, ids: Any, depth: int = 0) -> list[Element]:
    """The nodes ``ids`` and every node reached through links whose ``tgt_id`` is in
    the set (taking the link's ``src_id``), ``depth`` levels deep (0: no limit). The
    walk starts from the given ids that exist; a link's ``src_id`` that does not exist
    is walked through but not returned as a node.

    Returns the nodes first (the given ids that exist, then the ones reached, in the
    order they were reached), then the links walked. Ids that do not exist are left out.
    """
    require(session.user_class, "graph", session.username)
    id_list, _ = check_ids(ids, "graph")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise BadRequest(
            f"graph error: depth must be a whole number >= 0, not {depth!r}", op="graph"
        )
    storage = session.storage
    wanted = [i for i in dict.fromkeys(id_list) if not session.hidden(i)]
    start = [e for e in storage.get_many(wanted) if e is not None]
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
    nodes = start + reached
    return public_all([*nodes, *links.values()], session)
