"""create, read, update, upsert, delete."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from itertools import repeat
from operator import contains
from typing import TYPE_CHECKING, Any

from damas_core.backends.base import Patch
from damas_core.elements import (
    Element,
    any_reserved,
    as_list,
    check_copied,
    check_element,
    check_id,
    check_ids,
    copied_size,
    encode_run,
    has_key,
    has_list_id,
    new_ids,
    now_ms,
    unfold,
    unfold_new,
)
from damas_core.errors import BadRequest
from damas_core.operations.common import (
    authorize,
    prepare_values,
    private_keys,
    public,
    public_all,
)
from damas_core.ordering import MISSING
from damas_core.permissions import require
from damas_core.query.ast import In, Or

if TYPE_CHECKING:
    from damas_core.tracker import Session


def _single_result(results: list[Any], single: bool) -> Any:
    return results[0] if single else results


def stamp(session: Session, elements: list[Element]) -> list[Element]:
    """Set ``author`` and ``time`` (the same for the whole call) on new elements, in
    place, unless a caller allowed to set them (an admin) did."""
    user, now = session.username, now_ms()
    if not session.is_admin:  # who cannot have set them (permissions.RESTRICTED_KEYS)
        for e in elements:
            e["author"] = user
            e["time"] = now
        return elements
    for e in elements:
        if "author" not in e:
            e["author"] = user
        if "time" not in e:
            e["time"] = now
    return elements


def prepare_new(
    session: Session,
    raw: list[Any],
    op: str,
    *,
    fresh_ids: bool = True,
    check: Callable[[list[Element]], None] | None = None,
) -> list[Element]:
    """Unfold, authorize and stamp elements about to be created (nothing written);
    ``check`` is run on the unfolded elements (and raises on a bad one). The storage
    checks each one is JSON as it writes it (once the pre-hooks have run)."""
    if set(map(type, raw)) != {dict}:  # in bulk: a Python step per element shows here
        for e in raw:
            check_element(e, op)  # raises the clear error
    out = unfold_new(raw, op, fresh_ids=fresh_ids)
    if check is not None:
        check(out)
    admin = session.is_admin
    if admin and not (has_key(out, "class") or has_key(out, "password")):
        return stamp(session, out)  # nothing to do per element
    for index, e in enumerate(out):
        element_id = e["_id"]
        if not admin:
            authorize(session, op, element_id, e.keys())
        if "class" in e or "password" in e:
            out[index] = prepare_values(e, op, element_id, admin=admin)
    return stamp(session, out)


def create(session: Session, elements: Any) -> Any:
    """Create elements; ``None`` where the ``_id`` already exists."""
    raw, single = as_list(elements, "create")
    require(session.user_class, "create", session.username)
    single = single and not has_list_id(raw)
    prepared = prepare_new(session, raw, "create")
    prepared = session.events.before("create", session, prepared)
    inserted = session.store.insert_many(prepared, op="create")
    # The storage keeps its own copy: the prepared dicts are the caller's now.
    if not all(inserted):
        prepared = [e if ok else None for e, ok in zip(prepared, inserted)]
    results = public_all(prepared, session)
    session.events.after("create", session, results)
    return _single_result(results, single)


def read(session: Session, ids: Any) -> Any:
    """The elements with these ids (``None`` where absent), without password hashes."""
    require(session.user_class, "read", session.username)
    if ids.__class__ is str:  # one id: the most common call, on its own path
        check_id(ids, "read")
        return None if session.hidden(ids) else public(session.store.get_many([ids])[0], session)
    id_list, single = check_ids(ids, "read")
    storage = session.store
    if len(set(id_list)) < len(id_list):
        results = _read_repeated(session, id_list)
    elif any_reserved(id_list):  # internal ids read as absent
        found = iter(storage.get_many([i for i in id_list if not session.hidden(i)]))
        results = [None if session.hidden(i) else next(found) for i in id_list]
    else:
        results = storage.get_many(id_list)
    return _single_result(public_all(results, session), single)


def _read_repeated(session: Session, id_list: list[str]) -> list[Element | None]:
    """:func:`read` of ids some of which repeat: each is read once, and a repeat gets
    its own copy, at most :data:`~damas_core.elements.MAX_COPIED_SIZE` bytes of them."""
    asked = [i for i in dict.fromkeys(id_list) if not session.hidden(i)]
    found = dict(zip(asked, session.store.get_many(asked)))
    counts = Counter(id_list)
    copied = sum(
        (counts[i] - 1) * copied_size(e, ()) for i, e in found.items() if e and counts[i] > 1
    )
    check_copied(copied, "read", "the repeated ids")
    results: list[Element | None] = []
    seen: set[str] = set()
    for i in id_list:
        e = found.get(i)
        results.append(dict(e) if e is not None and i in seen else e)
        seen.add(i)
    return results


def _split_changes(element: Element) -> tuple[dict[str, Any], tuple[str, ...]]:
    changes = {k: v for k, v in element.items() if k != "_id"}
    to_set = {k: v for k, v in changes.items() if v is not None}
    to_unset = tuple(k for k, v in changes.items() if v is None)
    return to_set, to_unset


def update(session: Session, elements: Any, expect: Any = None) -> Any:
    """Set keys on existing elements (``null`` removes a key); ``None`` where absent.
    Each element needs an ``_id`` and at least one other key. ``time`` is not bumped.

    ``expect`` makes the update a compare-and-set: a JSON object of keys and the
    values the stored element must hold (``null``: the key is absent), else nothing is
    written and the answer is ``None``, as for a missing element. Of writers racing on
    the same expectation, exactly one wins. For a list of elements, ``expect`` is a
    list as long, each element's expectation or ``null`` (none), all checked and
    written in one step. Keys the session cannot read cannot be expected (400), or the
    answer would tell what reads hide.

    >>> import damas_core
    >>> t = damas_core.open("memory://")
    >>> _ = t.create({"_id": "v", "holder": "a"})
    >>> t.update({"_id": "v", "holder": "b"}, expect={"holder": "a"})["holder"]
    'b'
    >>> t.update({"_id": "v", "holder": "c"}, expect={"holder": "a"}) is None
    True
    >>> [e and e["holder"] for e in t.update([{"_id": "v", "holder": "d"}] * 2,
    ...                                      expect=[{"holder": "b"}, {"holder": "b"}])]
    ['d', None]
    """
    raw, single = as_list(elements, "update")
    single = single and not has_list_id(raw)
    guards = _expectations(session, expect, raw, single)
    if not _all_updates(raw):
        for e in raw:
            check_element(e, "update")
            if "_id" not in e:
                raise BadRequest("update error: each element needs an _id", op="update")
            if len(e) < 2:
                raise BadRequest(
                    f"update error: nothing to change on {e['_id']!r}",
                    op="update",
                    id=str(e["_id"]),
                )
    items = unfold(raw, "update", fresh_ids=False)
    check_ids([e["_id"] for e in items], "update", write=True)
    items = session.events.before("update", session, items)
    storage = session.store
    admin = session.is_admin
    with storage.transaction():
        # the stored elements decide here only with author_mode (the trust check below
        # every write reads its own): otherwise a patch of a missing element is refused
        # by the storage
        owned = not admin and session.author_mode
        existing = storage.get_many([e["_id"] for e in items]) if owned else repeat(True)
        patches = []
        for e, old, guard in zip(items, existing, guards or repeat(None)):
            if old is None:
                patches.append(None)
                continue
            if not admin:
                stored = old if owned else None
                authorize(session, "update", e["_id"], (k for k in e if k != "_id"), stored)
            to_set, to_unset = _split_changes(prepare_values(e, "update", e["_id"], admin=admin))
            patches.append(Patch(e["_id"], set=to_set, unset=to_unset, expect=guard))
        applied = storage.patch_many([p for p in patches if p is not None], op="update")
        flags = iter(applied)
        ok = [p is not None and next(flags) for p in patches]
        fresh = storage.get_many([e["_id"] for e in items])
    results = [public(f, session) if good else None for f, good in zip(fresh, ok)]
    session.events.after("update", session, results)
    return _single_result(results, single)


def _expectations(
    session: Session, expect: Any, raw: list[Any], single: bool
) -> list[dict[str, Any] | None] | None:
    """The ``expect`` of an update as each element's guard, or ``None`` for no
    expectation at all; ``BadRequest`` for a JSON object with a list of elements, a
    list of another length (or with an ``_id`` list), or a wrong expectation."""
    if expect is None:
        return None
    if isinstance(expect, list):
        if single or len(expect) != len(raw) or has_list_id(raw):
            raise BadRequest(
                "update error: a list of expectations goes with a list of as many "
                "elements, each with one _id",
                op="update",
            )
        return [None if x is None else _expectation(session, x) for x in expect]
    if not single:
        raise BadRequest(
            "update error: expect for a list of elements is a list as long (one "
            "expectation or null each)",
            op="update",
        )
    return [_expectation(session, expect)]


def _expectation(session: Session, expect: Any) -> dict[str, Any]:
    """One expectation as a patch's guard (``null`` → :data:`MISSING`); ``BadRequest``
    for anything but a JSON object of readable keys."""
    if not isinstance(expect, dict) or not expect or not all(isinstance(k, str) for k in expect):
        raise BadRequest(
            f"update error: expect is a JSON object of keys and the values they must hold, "
            f"not {expect!r}",
            op="update",
        )
    hidden = private_keys(session)
    for key in expect:
        if key.removeprefix("#") in hidden or key == "_id":
            raise BadRequest(f"update error: {key!r} cannot be expected", op="update", key=key)
    return {k: MISSING if v is None else v for k, v in expect.items()}


def _all_updates(raw: list[Any]) -> bool:
    """True when every item is a JSON object with an ``_id`` and a key to change, checked
    in bulk (a call recording a thousand copies is where a step per item shows)."""
    if set(map(type, raw)) != {dict} or not all(map(contains, raw, repeat("_id"))):
        return False
    if min(map(len, raw)) < 2:
        return False
    try:
        encode_run(raw, "update")
    except BadRequest:
        return False
    return True


def upsert(session: Session, elements: Any) -> Any:
    """Create each element, or update it when its ``_id`` exists. An absent ``_id``
    or ``"null"`` creates a new element with a fresh id."""
    raw, single = as_list(elements, "upsert")
    single = single and not has_list_id(raw)
    require(session.user_class, "upsert", session.username)
    for e in raw:
        check_element(e, "upsert")
    items = unfold(raw, "upsert")
    # damas-core's "null" (and null, in an _id list) asks for a new element: each its own id
    unnamed = [e for e in items if e["_id"] is None or e["_id"] == "null"]
    for e, fresh_id in zip(unnamed, new_ids(len(unnamed))):
        e["_id"] = fresh_id
    storage = session.store
    results: list[Element | None] = []
    events = session.events
    with storage.transaction():
        existing = storage.get_many([check_id(e["_id"], "upsert", write=True) for e in items])
        new = [old is None for old in existing]
        creates = []
        for e, is_new in zip(items, new):
            if is_new:
                authorize(session, "upsert", e["_id"], e.keys())
                values = {k: v for k, v in e.items() if v is not None}
                creates.append(prepare_values(values, "upsert", e["_id"], admin=session.is_admin))
        # new elements run the create events, existing ones the update events
        if creates:
            creates = events.before("create", session, stamp(session, creates))
        updates = [e for e, is_new in zip(items, new) if not is_new]
        if updates:
            updates = events.before("update", session, updates)
        patches = []
        for e, old in zip(updates, (old for old in existing if old is not None)):
            authorize(session, "upsert", e["_id"], (k for k in e if k != "_id"), old)
            to_set, to_unset = _split_changes(
                prepare_values(e, "upsert", e["_id"], admin=session.is_admin)
            )
            patches.append(Patch(e["_id"], set=to_set, unset=to_unset))
        storage.insert_many(creates, op="upsert")
        storage.patch_many(patches, op="upsert")
        made, changed = iter(creates), iter(updates)
        fresh = storage.get_many([next(made if n else changed)["_id"] for n in new])
    results = public_all(fresh, session)
    if creates:
        events.after("create", session, [r for r, n in zip(results, new) if n])
    if updates:
        events.after("update", session, [r for r, n in zip(results, new) if not n])
    return _single_result(results, single)


def delete(session: Session, ids: Any) -> Any:
    """Delete elements and every link to or from them; the deleted id or ``None``."""
    require(session.user_class, "delete", session.username)
    id_list, single = check_ids(ids, "delete")
    for i in id_list:
        check_id(i, "delete", write=True)
    id_list = session.events.before("delete", session, id_list)
    storage = session.store
    with storage.transaction():
        existing = storage.get_many(id_list)
        for i, old in zip(id_list, existing):
            if old is not None:
                authorize(session, "delete", i, (), old)
        present = list(dict.fromkeys(i for i, old in zip(id_list, existing) if old is not None))
        links: list[str] = []
        if present:
            values = tuple(present)
            links = storage.find(Or((In(("src_id",), values), In(("tgt_id",), values))))
        removed = set()
        for i, ok in zip(present, storage.delete_many(present, op="delete")):
            if ok:
                removed.add(i)
        storage.delete_many([link for link in links if link not in removed], op="delete")
    results = []
    seen: set[str] = set()
    for i in id_list:
        results.append(i if i in removed and i not in seen else None)
        seen.add(i)
    session.events.after("delete", session, results)
    return _single_result(results, single)
