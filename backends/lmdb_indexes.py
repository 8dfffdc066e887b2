"""The LMDB backend's secondary indexes: one duplicate-sorted sub-database per
indexed key, value key → the element keys holding it (array members one by one),
kept in the same transactions as the elements.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import compress, repeat
from operator import contains, itemgetter
from typing import Any

import lmdb
import orjson
from damas_core.backends.base import Element, index_values
from damas_core.backends.lmdb_keys import element_key, index_key, utf8


def entries(element: Element, name: str) -> set[bytes]:
    """The index keys under which ``element`` is held for the key ``name``."""
    return {index_key(v) for v in index_values(element, name)}


def hits(txn: Any, db: Any, values: tuple[Any, ...]) -> list[bytes]:
    """The element keys the index ``db`` holds under any of ``values``, sorted."""
    cursor = txn.cursor(db=db)
    keys: set[bytes] = set()
    for v in values:
        try:
            ik = index_key(v)
        except TypeError:
            continue
        if cursor.set_key(ik):
            keys.update(map(bytes, cursor.iternext_dup(keys=False, values=True)))
    return sorted(keys)


def _pairs(elements: list[Element], name: str) -> Iterator[tuple[bytes, bytes]]:
    """``(index key, element key)`` for every value ``elements`` hold under ``name``."""
    for e in elements:
        if name in e:
            key = element_key(e["_id"])
            for ik in entries(e, name):
                yield ik, key


def put_run(
    cursor: Any, elements: list[Element], keys: list[bytes], name: str, append: bool
) -> None:
    """Put the index entries of ``elements`` (stored under ``keys``) for the key
    ``name``: in bulk when every value is a string, else one by one (an entry is a
    set member: putting one twice keeps one). ``append`` when every key is after all
    the stored ones, in order."""
    has = list(map(contains, elements, repeat(name)))
    if not all(has):
        elements, keys = list(compress(elements, has)), list(compress(keys, has))
    try:
        values = list(map(itemgetter(name), elements))
        index_keys = utf8(values, prefix="s")  # TypeError unless every value is a string
    except TypeError:
        index_keys = None
    if index_keys is not None:
        try:
            _, added = cursor.putmulti(zip(index_keys, keys), dupdata=True, append=append)
        except lmdb.BadValsizeError:  # a value too long for a key: hashed, one by one
            pass
        else:
            if added == len(keys):
                return
    cursor.putmulti(_pairs(elements, name), dupdata=True)


def fill(txn: Any, main: Any, dbs: dict[str, Any]) -> None:
    """Index every stored element for the new indexes ``dbs`` (name → sub-database)."""
    put = txn.put
    markers = [(name, db, orjson.dumps(name) + b":") for name, db in dbs.items()]
    for key, raw in txn.cursor(db=main).iternext():
        if not any(m in raw for _, _, m in markers):
            continue  # cheap test: the key name does not even occur in the JSON
        element = orjson.loads(raw)
        for name, db, _ in markers:
            for ik in entries(element, name):
                put(ik, bytes(key), db=db)


__all__ = ["entries", "fill", "hits", "put_run"]
