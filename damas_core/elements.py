"""Element shapes shared by every operation: one-or-many inputs, ``_id`` unfolding,
fresh ids, control keys and the reserved internal ids.

>>> unfold([{"_id": ["/a", "/b"], "k": 1}], "create")
[{'_id': '/a', 'k': 1}, {'_id': '/b', 'k': 1}]
>>> len(unfold([{"_id": "/shots/{#}.exr"}], "create")[0]["_id"]) == len("/shots/.exr") + 26
True
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, repeat
from operator import contains, itemgetter
from typing import Any

import orjson

from damas_core.errors import BadRequest

Element = dict[str, Any]

#: Ids starting with this are internal (settings, token revocations): operations never
#: write them and never return them.
RESERVED_PREFIX = "~"
#: The one internal element: the tracker's settings.
SETTINGS_ID = "~damas"
#: Placeholder replaced by a fresh ULID inside a given ``_id``.
ULID_PLACEHOLDER = "{#}"
#: Characters in a ULID.
ULID_LENGTH = 26
#: Keys an operation sets itself: who did it and when.
CONTROL_KEYS = ("author", "time")
MAX_ID_LENGTH = 4096
#: How deep an element may nest.
MAX_DEPTH = 64
#: Elements encoded together by :func:`encode_all`.
RUN = 256
#: The most bytes of element data one call may copy (the default HTTP body limit):
#: the keys an ``_id`` list gives each element it unfolds into, the comment a
#: ``#parent`` list gives each parent, the elements a read repeats for repeated ids.
#: Without it a small body could make the tracker store or answer gigabytes.
MAX_COPIED_SIZE = 50 * 1024 * 1024

_dumps = orjson.dumps
#: An element's ``_id``, as a C-level callable (for ``map`` over many elements).
id_of = itemgetter("_id")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # in increasing order
# A random byte to a character of the alphabet: 256 = 8 × 32, so each is as likely.
_RANDOM_CHARACTER = bytes(_CROCKFORD.encode()[b % 32] for b in range(256))


def now_ms() -> int:
    """Milliseconds since the epoch: the unit of ``time`` and ``synced_<site>``."""
    return time.time_ns() // 1_000_000


def new_id() -> str:
    """A fresh ULID string: sortable by creation time, unique across processes."""
    return new_ids(1)[0]


def new_ids(count: int) -> list[str]:
    """``count`` fresh ULIDs (https://github.com/ulid/spec): 48 bits of milliseconds
    then 80 random bits, in Crockford's base 32, so they sort by creation time (to the
    millisecond) and never collide in practice.

    Made in bulk, for publishes of many files, and in increasing order, as the spec's
    monotonic ULIDs are: a call draws one random part and counts up in its last
    characters (as few as ``count`` needs: 3 for up to 32768 ids), so the ids of one
    call are distinct and sorted, and a store puts them one after the other. One id
    alone is random in all its 80 bits.

    >>> a, b = new_ids(2)
    >>> len(a), a[:10] == b[:10], a < b
    (26, True, True)
    """
    ms = time.time_ns() // 1_000_000
    head = "".join(_CROCKFORD[(ms >> shift) & 31] for shift in range(45, -1, -5))
    counted = 0
    while 32**counted < count:
        counted += 1
    drawn = os.urandom(16 - counted).translate(_RANDOM_CHARACTER).decode()
    return _counting(head + drawn, counted, count)


# Every spelling of 1 and 2 characters, in order: the counting part of bulk ids.
_ONE = list(_CROCKFORD)
_TWO = [a + b for a in _CROCKFORD for b in _CROCKFORD]


def _counting(prefix: str, digits: int, count: int) -> list[str]:
    """The first ``count`` of ``prefix`` followed by ``digits`` base-32 digits counting
    up from zero."""
    if digits <= 2:
        return [prefix + d for d in (_TWO if digits == 2 else _ONE if digits else [""])[:count]]
    heads = _counting(prefix, digits - 2, -(-count // 1024))
    out = [h + d for h in heads for d in _TWO]
    del out[count:]
    return out


def as_list(items: Any, op: str) -> tuple[list[Any], bool]:
    """``(items as a list, True if a single item was given)``."""
    if isinstance(items, list | tuple):
        return list(items), False
    if items is None:
        raise BadRequest(f"{op} error: nothing given", op=op)
    return [items], True


def check_id(value: Any, op: str, *, write: bool = False) -> str:
    """An ``_id`` must be a non-empty string of bounded length, without NUL; ids
    starting with ``~`` are reserved and cannot be written."""
    if (
        type(value) is str
        and 0 < len(value) <= MAX_ID_LENGTH
        and "\x00" not in value
        and not (write and value[0] == RESERVED_PREFIX)
    ):
        return value  # the common case, checked in one go
    if not isinstance(value, str) or value == "":
        raise BadRequest(f"{op} error: an _id must be a non-empty string, not {value!r}", op=op)
    if len(value) > MAX_ID_LENGTH:
        raise BadRequest(f"{op} error: _id longer than {MAX_ID_LENGTH} characters", op=op)
    if "\x00" in value:
        raise BadRequest(f"{op} error: _id contains a NUL character: {value!r}", op=op, id=value)
    if write and value.startswith(RESERVED_PREFIX):
        raise BadRequest(
            f"{op} error: ids starting with {RESERVED_PREFIX!r} are reserved: {value!r}",
            op=op,
            id=value,
        )
    return value


def check_ids(ids: Any, op: str, *, write: bool = False) -> tuple[list[str], bool]:
    """Validate a one-or-many id argument (for a write: see :func:`check_id`); returns
    ``(ids, single)``."""
    items, single = as_list(ids, op)
    if not _ids_ok(items, write=write):
        items = [check_id(i, op, write=write) for i in items]  # names the bad one
    return items, single


def _ids_ok(ids: list[Any], *, write: bool) -> bool:
    """True when every id passes :func:`check_id`, checked in bulk on the ids joined
    by NULs (which no id may hold): bulk calls are where a step per id shows."""
    try:
        joined = "\x00".join(ids)  # TypeError unless every id is a string
    except TypeError:
        return False
    return _joined_ok(joined, ids, write=write)


def _joined_ok(joined: str, ids: Sequence[str], *, write: bool) -> bool:
    """:func:`_ids_ok` on ``ids`` (strings) already joined by NULs."""
    return bool(
        joined
        and joined.count("\x00") == len(ids) - 1  # no NUL inside an id
        and not (joined[0] == "\x00" or joined[-1] == "\x00" or "\x00\x00" in joined)  # no ""
        and not (write and (joined[0] == RESERVED_PREFIX or f"\x00{RESERVED_PREFIX}" in joined))
        and (len(joined) <= MAX_ID_LENGTH or max(map(len, ids)) <= MAX_ID_LENGTH)
    )


def any_reserved(ids: list[str]) -> bool:
    """True when some of these (checked) ids is internal (starts with ``~``)."""
    return bool(ids) and (
        ids[0][:1] == RESERVED_PREFIX or f"\x00{RESERVED_PREFIX}" in "\x00".join(ids)
    )


def encode(element: Any, op: str) -> bytes:
    """The element as JSON bytes, after checking it is an element: a JSON object with
    non-empty string keys, nested at most :data:`MAX_DEPTH` levels.

    >>> encode({"_id": "/a", "n": [1, {"b": None}]}, "create")
    b'{"_id":"/a","n":[1,{"b":null}]}'
    """
    if element.__class__ is dict and "" not in element:  # the common case, first
        try:
            raw = _dumps(element)
        except (TypeError, orjson.JSONEncodeError):
            pass
        else:
            # Nesting needs an opening bracket per level: with few of them (the usual
            # flat element has no '[' and no '{' but the first), nothing to walk.
            if (91 in raw or raw.rfind(123) > 0) and raw.count(91) + raw.count(123) > MAX_DEPTH:
                _check_depth(element, op, 0)
            return raw
    if not isinstance(element, dict):
        raise BadRequest(
            f"{op} error: an element must be a JSON object, not {type(element).__name__}", op=op
        )
    if "" in element:
        raise BadRequest(f"{op} error: keys must be non-empty strings", op=op)
    try:
        raw = _dumps(element)
    except (TypeError, orjson.JSONEncodeError) as e:
        _check_depth(element, op, 0)  # too deep is the clearer error, when it is the cause
        raise BadRequest(f"{op} error: element is not JSON: {e}", op=op) from None
    if raw.count(91) + raw.count(123) > MAX_DEPTH:
        _check_depth(element, op, 0)
    return raw


def encode_all(elements: Sequence[Any], op: str) -> Iterator[bytes]:
    """:func:`encode` of each element, made a run of :data:`RUN` at a time as they are
    asked for (a caller writing them need not hold them all)."""
    runs = (elements[start : start + RUN] for start in range(0, len(elements), RUN))
    return chain.from_iterable(map(encode_run, runs, repeat(op)))


def encode_run(elements: Sequence[Any], op: str) -> list[bytes]:
    """:func:`encode` of each element. A run of flat elements (the usual case: no
    nested object or array) is checked in bulk, without a Python step each."""
    if set(map(type, elements)) != {dict}:
        return [encode(e, op) for e in elements]
    try:
        values = list(map(_dumps, elements))
    except (TypeError, orjson.JSONEncodeError):
        return [encode(e, op) for e in elements]  # names the fault
    # Nothing nests when no JSON holds a '[', and the last '{' of each is its first.
    if (
        not has_key(elements, "")
        and set(map(bytes.rfind, values, repeat(b"{"))) == {0}
        and b"[" not in b"".join(values)
    ):
        return values
    for e, raw in zip(elements, values):
        if "" in e or raw.count(91) + raw.count(123) > MAX_DEPTH:
            encode(e, op)  # raises, or finds the brackets were inside strings
    return values


def check_element(element: Any, op: str) -> Element:
    """Raise ``BadRequest`` unless ``element`` is an element (see :func:`encode`)."""
    encode(element, op)
    return element


def _check_depth(value: Any, op: str, depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise BadRequest(f"{op} error: element nested deeper than {MAX_DEPTH} levels", op=op)
    children = value.values() if isinstance(value, dict) else value
    for child in children:
        if isinstance(child, dict | list):
            _check_depth(child, op, depth + 1)


def fill_id(value: str, op: str) -> str:
    """Replace every ``{#}`` in ``value`` by its own fresh ULID. The length the id will
    have is checked first, so an id of many placeholders is refused (``BadRequest``)
    before any is filled in.

    >>> fill_id("/a/{#}", "create")[:3], len(fill_id("/a/{#}", "create"))
    ('/a/', 29)
    >>> fill_id("{#}" * 2000, "create")
    Traceback (most recent call last):
    ...
    damas_core.errors.BadRequest: create error: _id longer than 4096 characters once its 2000 {#} are filled in
    """
    count = value.count(ULID_PLACEHOLDER)
    if count == 0:
        return value
    if len(value) + count * (ULID_LENGTH - len(ULID_PLACEHOLDER)) > MAX_ID_LENGTH:
        raise BadRequest(
            f"{op} error: _id longer than {MAX_ID_LENGTH} characters once its {count} "
            f"{ULID_PLACEHOLDER} are filled in",
            op=op,
        )
    parts = value.split(ULID_PLACEHOLDER)
    ulids = new_ids(count)
    return parts[0] + "".join(u + p for u, p in zip(ulids, parts[1:]))


def copied_size(element: Element, skip: tuple[str, ...] = ("_id",)) -> int:
    """The encoded size of ``element``'s keys but ``skip``: what one copy of it costs
    (0 for what is not JSON: the storage refuses that with its own error)."""
    try:
        return len(_dumps({k: v for k, v in element.items() if k not in skip}))
    except (TypeError, orjson.JSONEncodeError):
        return 0


def check_copied(total: int, op: str, what: str) -> None:
    """Raise :class:`BadRequest` when ``total`` bytes of copies pass
    :data:`MAX_COPIED_SIZE`; ``what`` names the lists that copy.

    >>> check_copied(60_000_000, "create", "the _id lists")
    Traceback (most recent call last):
    ...
    damas_core.errors.BadRequest: create error: the _id lists would copy 60000000 bytes of element data, more than the 52428800 bytes one call may copy; send fewer ids at once
    """
    if total > MAX_COPIED_SIZE:
        raise BadRequest(
            f"{op} error: {what} would copy {total} bytes of element data, more than the "
            f"{MAX_COPIED_SIZE} bytes one call may copy; send fewer ids at once",
            op=op,
        )


def unfold(elements: Sequence[Element], op: str, *, fresh_ids: bool = True) -> list[Element]:
    """One element per id: ``{_id: [a, b], k: v}`` gives two elements, as long as the
    copies hold at most :data:`MAX_COPIED_SIZE` bytes in all. With ``fresh_ids``, a
    missing ``_id`` becomes a ULID and ``{#}`` is filled in (see :func:`fill_id`).
    Always returns new dicts: callers may change them freely."""
    try:  # the usual case, in bulk: every _id a string without a placeholder
        if ULID_PLACEHOLDER not in "\x00".join(map(id_of, elements)):
            return list(map(dict, elements))
    except (KeyError, TypeError):
        pass
    out: list[Element] = []
    copied = 0
    for e in elements:
        ids = e.get("_id")
        if isinstance(ids, str) and ULID_PLACEHOLDER not in ids:
            out.append(dict(e))
        elif isinstance(ids, list):
            if not ids:
                raise BadRequest(f"{op} error: an _id list must not be empty", op=op)
            if len(ids) > 1:
                copied += len(ids) * copied_size(e)
                check_copied(copied, op, "the _id lists")
            for i in ids:
                out.append({**e, "_id": fill_id(i, op) if fresh_ids and isinstance(i, str) else i})
        elif ids is None and fresh_ids:
            out.append({**e, "_id": new_id()})
        else:
            out.append(
                {**e, "_id": fill_id(ids, op) if fresh_ids and isinstance(ids, str) else ids}
            )
    return out


def unfold_new(elements: Sequence[Element], op: str, *, fresh_ids: bool = True) -> list[Element]:
    """:func:`unfold` elements about to be created, then :func:`check_id` each ``_id``
    for a write (``BadRequest`` naming the first bad one). The usual call, every
    ``_id`` a plain string, is checked in one pass over the ids joined by NULs."""
    try:
        ids = list(map(id_of, elements))
        joined = "\x00".join(ids)
    except (KeyError, TypeError):
        pass
    else:
        if ULID_PLACEHOLDER not in joined and _joined_ok(joined, ids, write=True):
            return list(map(dict, elements))
    out = unfold(elements, op, fresh_ids=fresh_ids)
    ids = list(map(id_of, out))
    if not _ids_ok(ids, write=True):
        for i in ids:
            check_id(i, op, write=True)  # names the bad one
    return out


def has_key(elements: Iterable[Element], key: str) -> bool:
    """True when one of ``elements`` (dicts) holds ``key``; in C, for bulk calls."""
    return any(map(contains, elements, repeat(key)))


def has_list_id(items: Sequence[Any]) -> bool:
    """True when an element's ``_id`` is a list (so one item gives several results)."""
    return any(isinstance(e, dict) and isinstance(e.get("_id"), list) for e in items)
