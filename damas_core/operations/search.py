"""search, search_elements, search_one, search_mongo: queries in the search language or
as MongoDB dicts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from damas_core.elements import RESERVED_PREFIX, SETTINGS_ID, Element
from damas_core.errors import BadRequest
from damas_core.operations.common import check_queryable, public, public_all
from damas_core.permissions import require
from damas_core.query.ast import And, Node, Regex, Sort
from damas_core.query.mongo_query import from_mongo
from damas_core.query.parser import parse
from damas_core.query.sort import normalize_sort

if TYPE_CHECKING:
    from damas_core.tracker import Session

#: Internal elements every store has (every search leaves out every internal element,
#: ids starting with RESERVED_PREFIX: also token revocations and sign-in limits).
HIDDEN_IDS = (SETTINGS_ID,)
#: Every internal element, as a query: an ``_id`` prefix.
_INTERNAL = Regex(("_id",), r"^\~", "")


def _as_query(query: str | Node) -> Node:
    if isinstance(query, Node):
        return query
    if not isinstance(query, str):
        raise BadRequest(
            f"search error: a query is a string, not {type(query).__name__}", op="search"
        )
    return parse(query)


def _page(skip: Any, limit: Any) -> tuple[int, int | None]:
    for name, v in (("skip", skip), ("limit", limit)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise BadRequest(
                f"search error: {name} must be a whole number >= 0, not {v!r}", op="search"
            )
    return skip or 0, limit or None


def _wanted(skip: int, limit: int | None) -> int | None:
    """How many matches to ask the storage for first: ``len(HIDDEN_IDS)`` more than
    the page needs, which is enough unless other internal elements (revocations,
    sign-in limits) match too: then :func:`_visible` asks again for more."""
    return None if limit is None else skip + limit + len(HIDDEN_IDS)


def _visible(
    find: Callable[[int | None], list[Any]],
    key: Callable[[Any], str],
    skip: int,
    limit: int | None,
) -> list[Any]:
    """The page of what ``find(n)`` (the first ``n`` matches, ``None``: all) holds
    without internal elements, asking for more while internal ones left it short."""
    wanted = _wanted(skip, limit)
    while True:
        found = find(wanted)
        visible = [x for x in found if not key(x).startswith(RESERVED_PREFIX)]
        if wanted is None or len(found) < wanted or len(visible) >= skip + (limit or 0):
            return _page_of(visible, skip, limit)
        wanted *= 2


def _page_of(items: list[Any], skip: int, limit: int | None) -> list[Any]:
    return items[skip : None if limit is None else skip + limit]


def _checked(session: Session, node: Node, sort: Any, op: str) -> Sort:
    """The normalized sort, once ``node`` and it are known to test no private key."""
    normalized = normalize_sort(sort)
    check_queryable(session, node, normalized, op)
    return normalized


def visible_ids(
    session: Session, node: Node, sort: Sort, skip: int, limit: int | None
) -> list[str]:
    """Matching ids without the internal elements, then paged."""
    return _visible(lambda n: session.storage.find(node, sort, 0, n), str, skip, limit)


def search(
    session: Session, query: str | Node, sort: Any = None, skip: int = 0, limit: int | None = None
) -> list[str]:
    """Ids of the elements matching ``query``, sorted by ``sort`` (default ``_id``).
    A query or sort on a key the caller's reads never return raises ``BadRequest``
    (see :func:`~damas_core.operations.common.check_queryable`)."""
    require(session.user_class, "search", session.username)
    skip, limit = _page(skip, limit)
    node = _as_query(query)
    return visible_ids(session, node, _checked(session, node, sort, "search"), skip, limit)


def search_elements(
    session: Session, query: str | Node, sort: Any = None, skip: int = 0, limit: int | None = None
) -> list[Element]:
    """The elements :func:`search` gives the ids of, in the same order, read in one pass
    (as reads return them: without private keys)."""
    require(session.user_class, "search_elements", session.username)
    skip, limit = _page(skip, limit)
    node = _as_query(query)
    order = _checked(session, node, sort, "search_elements")
    visible = _visible(
        lambda n: session.storage.find_elements(node, order, 0, n),
        lambda e: e["_id"],
        skip,
        limit,
    )
    return public_all(visible, session)


def search_one(session: Session, query: str | Node) -> Element | None:
    """The first element (in ``_id`` order) matching ``query``, or ``None``."""
    require(session.user_class, "search_one", session.username)
    node = _as_query(query)
    ids = visible_ids(session, node, _checked(session, node, None, "search_one"), 0, 1)
    if not ids:
        return None
    return public(session.storage.get(ids[0]), session)


def search_mongo(
    session: Session, query: Any, sort: Any = None, limit: int = 0, skip: int = 0
) -> dict[str, Any]:
    """``{"count": N, "ids": [...]}`` for a MongoDB-style query dict: ``count`` is the
    total number of matches, ``ids`` the page after ``sort``, ``skip`` and ``limit``."""
    require(session.user_class, "search_mongo", session.username)
    skip, limit = _page(skip, limit)
    node = from_mongo(query if query is not None else {})
    ids = visible_ids(session, node, _checked(session, node, sort, "search_mongo"), skip, limit)
    # internal elements matched too are not counted (an _id prefix: a key range where
    # the store orders ids)
    count = session.storage.count(node) - session.storage.count(And((node, _INTERNAL)))
    return {"count": count, "ids": ids}
