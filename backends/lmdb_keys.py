"""How the LMDB backend spells things as bytes: element keys, index keys, URLs and
options.

An element's key is its ``_id`` in UTF-8 (lone surrogates kept as they are); LMDB
limits keys to 511 bytes, so a longer one keeps its first bytes (nearby ids stay
together) and ends with ``0xFF`` and a SHA-256 digest: ``0xFF`` never occurs in
UTF-8, so such a key cannot collide with a plain one.

>>> element_key("/a")
b'/a'
>>> len(element_key("/" + "x" * 600))
511
"""

from __future__ import annotations

import hashlib
import os
from itertools import islice
from operator import lt
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from damas_core.errors import BadRequest

# LMDB's compiled key size limit (also the limit of duplicate-sorted values).
MAX_KEY = 511
#: How many of an id's first bytes a digest-shortened key keeps.
LONG_PREFIX = MAX_KEY - 1 - 32
MAX_INDEX_NAME = 400
INDEX_PREFIX = b"index:"


def fit(key: bytes) -> bytes:
    """``key`` itself, or its first bytes and a digest when it is too long for LMDB."""
    if len(key) <= MAX_KEY:
        return key
    return key[:LONG_PREFIX] + b"\xff" + hashlib.sha256(key).digest()


def element_key(id: str) -> bytes:
    """The ``elements`` key of an ``_id``: its UTF-8 bytes (a digest tail past 511 bytes)."""
    key = id.encode("utf-8", "surrogatepass")
    return key if len(key) <= MAX_KEY else fit(key)


def element_keys(ids: list[str]) -> list[bytes]:
    """:func:`element_key` of each id, encoded in bulk when they are plain."""
    try:
        keys = list(map(str.encode, ids))
    except UnicodeEncodeError:  # lone surrogates: kept as they are
        keys = [i.encode("utf-8", "surrogatepass") for i in ids]
    if max(map(len, keys), default=0) > MAX_KEY:
        keys = [fit(k) for k in keys]
    return keys


def index_key(value: Any) -> bytes:
    """The index key of a scalar: numbers equal by value share one, while the number
    12, the string ``"12"`` and ``true`` stay distinct.

    >>> index_key(12) == index_key(12.0), index_key(12) == index_key("12")
    (True, False)
    >>> index_key(True) == index_key(1)
    False
    """
    if isinstance(value, str):
        return fit(b"s" + value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bool):
        return b"t" if value else b"f"
    if isinstance(value, int):
        return fit(b"n%d" % value)
    if isinstance(value, float):
        if value.is_integer():
            return fit(b"n%d" % int(value))
        return b"n" + repr(value).encode()
    raise TypeError(f"cannot index {type(value).__name__} values")


def utf8(values: list[str], prefix: str = "") -> list[bytes] | None:
    """``prefix + value`` of each value in UTF-8, encoded together; None when one
    holds a NUL or is not UTF-8. TypeError unless every value is a string."""
    encoded = (prefix + f"\x00{prefix}".join(values)).encode("utf-8", "surrogatepass")
    keys = encoded.split(b"\x00")
    return keys if len(keys) == len(values) and values else None


def sorted_after(ids: list[str], cursor: Any) -> bool:
    """True when ``ids`` are in increasing order and after every key ``cursor``'s
    database holds (so that they may be appended)."""
    if not ids or not all(map(lt, ids, islice(ids, 1, None))):
        return False
    return not cursor.last() or ids[0].encode("utf-8", "surrogatepass") > cursor.key()


def index_db_name(name: str) -> bytes:
    """The name of the sub-database indexing the top-level key ``name``."""
    return INDEX_PREFIX + name.encode("utf-8", "surrogatepass")


def check_index_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise BadRequest(f"an index names a top-level key (a non-empty string), not {name!r}")
    if len(index_db_name(name)) > MAX_INDEX_NAME:
        raise BadRequest(f"index key too long for LMDB: {name[:40]!r}…")


def store_path(url: str) -> tuple[str, dict[str, str]]:
    """The directory an ``lmdb://`` URL names, and the options in its query string.

    >>> store_path("lmdb:///srv/damas?sync=false")
    ('/srv/damas', {'sync': 'false'})
    >>> store_path("lmdb://data/store")
    ('data/store', {})
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "lmdb":
        raise BadRequest(f"not an lmdb:// URL: {url!r}")
    path = unquote(parts.netloc + parts.path)
    if not path:
        raise BadRequest(
            f"an LMDB store URL names a directory: 'lmdb:///abs/dir' or 'lmdb://rel/dir', not {url!r}"
        )
    return os.path.expanduser(path), dict(parse_qsl(parts.query))


def int_option(options: dict[str, Any], name: str, default: int) -> int:
    value = options.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number <= 0:
        raise BadRequest(f"LMDB option {name} must be a positive integer, not {value!r}")
    return number


def bool_option(options: dict[str, Any], name: str, default: bool) -> bool:
    value = options.get(name, default)
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise BadRequest(f"LMDB option {name} must be true or false, not {value!r}")


__all__ = ["LONG_PREFIX", "MAX_KEY", "element_key", "element_keys", "index_key", "store_path"]
