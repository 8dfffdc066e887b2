"""Backend URLs to storage classes: one registry keyed by URL scheme.

Drivers are imported only when their scheme is opened, and a missing optional driver
is reported with the extra that installs it.

>>> from damas_core.registry import open_storage
>>> open_storage("memory://").scheme
'memory'
>>> open_storage("ftp://x")
Traceback (most recent call last):
...
damas_core.errors.BadRequest: unknown store URL scheme 'ftp' in 'ftp://x' (known: memory, lmdb, tinydb, mongodb, mongomock, sqlite, postgresql, postgres)
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

from damas_core.backends.base import Storage
from damas_core.errors import BadRequest, NotImplementedByBackend

# scheme -> (module, class name, pip extra that provides its driver or None)
BACKENDS: dict[str, tuple[str, str, str | None]] = {
    "memory": ("damas_core.backends.memory", "MemoryStorage", None),
    "lmdb": ("damas_core.backends.lmdb", "LMDBStorage", None),
    "tinydb": ("damas_core.backends.tinydb", "TinyDBStorage", "tinydb"),
    "mongodb": ("damas_core.backends.mongodb", "MongoStorage", "mongodb"),
    "mongomock": ("damas_core.backends.mongodb", "MongoStorage", "dev"),
    "sqlite": ("damas_core.backends.sqlite", "SQLiteStorage", "sqlite"),
    "postgresql": ("damas_core.backends.postgresql", "PostgreSQLStorage", "postgresql"),
    "postgres": ("damas_core.backends.postgresql", "PostgreSQLStorage", "postgresql"),
}


def storage_class(url: str) -> type[Storage]:
    """The storage class for ``url``'s scheme, importing its module on first use."""
    if not isinstance(url, str) or "://" not in url:
        raise BadRequest(f"a store URL looks like 'lmdb:///path/to/store', not {url!r}")
    scheme = urlsplit(url).scheme.lower()
    try:
        module_name, class_name, extra = BACKENDS[scheme]
    except KeyError:
        known = ", ".join(BACKENDS)
        raise BadRequest(
            f"unknown store URL scheme {scheme!r} in {url!r} (known: {known})"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        hint = f"pip install 'damas-core[{extra}]'" if extra else "reinstall damas-core"
        raise NotImplementedByBackend(
            f"the {scheme} backend needs a driver that is not installed ({e.name}): {hint}"
        ) from e
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, Storage)):
        raise TypeError(f"{module_name}.{class_name} is not a Storage")
    return cls


def open_storage(url: str, **options: Any) -> Storage:
    """Open the backend that ``url`` names, with backend ``options``."""
    return storage_class(url)(url, **options)
