"""A failing driver surfaces as StorageError from every operation, carrying the
driver's own exception, and the store works again once the driver does.

Faults are injected beneath the backend, where a real failure would come from: the
LMDB environment, the sqlite3 connection, the TinyDB file (replaced by a directory),
the mongomock collections, the memory backend's dict. Nothing of the backend itself
is patched, so these tests prove the backend's code paths, not only the base class's
translation.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import lmdb
import pymongo.errors
import pytest
from damas_core.backends.base import Patch

from damas_core.errors import BadRequest, StorageError
from damas_core.query.ast import All, Eq
from damas_core.registry import open_storage
from tests.conftest import BACKENDS, backend_url


class Broken:
    """Stands for a driver object that has failed: every use raises ``error()``."""

    def __init__(self, error: Callable[[], BaseException]) -> None:
        object.__setattr__(self, "_error", error)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise object.__getattribute__(self, "_error")()

    def _fail(self, *args, **kwargs):
        raise object.__getattribute__(self, "_error")()

    __getitem__ = __setitem__ = __delitem__ = __contains__ = __iter__ = __len__ = _fail


@contextmanager
def broken_driver(storage) -> Iterator[type[BaseException]]:
    """Break the driver under ``storage`` for the block; yield the error type raised."""
    scheme = storage.scheme
    if scheme == "lmdb":
        h = storage._h
        real = h.env
        h.env = Broken(lambda: lmdb.DiskError("injected: disk failed"))
        try:
            yield lmdb.DiskError
        finally:
            h.env = real
    elif scheme == "sqlite":
        real = storage._conn
        storage._conn = Broken(lambda: sqlite3.OperationalError("injected: disk I/O error"))
        try:
            yield sqlite3.OperationalError
        finally:
            storage._conn = real
    elif scheme == "tinydb":
        path = storage.path
        shutil.move(path, path + ".away")
        os.mkdir(path)  # reading or replacing the file now fails in the OS
        try:
            yield OSError
        finally:
            os.rmdir(path)
            shutil.move(path + ".away", path)
    elif scheme in ("mongomock", "mongodb"):
        names = ("_collection", "_changes_coll", "_state")
        real = [getattr(storage, n) for n in names]
        for n in names:
            setattr(storage, n, Broken(lambda: pymongo.errors.AutoReconnect("injected")))
        try:
            yield pymongo.errors.AutoReconnect
        finally:
            for n, r in zip(names, real):
                setattr(storage, n, r)
    elif scheme == "memory":
        real = storage._data, storage._feed
        storage._data = storage._feed = Broken(lambda: MemoryError("injected"))
        try:
            yield MemoryError
        finally:
            storage._data, storage._feed = real
    elif scheme == "postgresql":
        import psycopg

        # The server ends the store's connection, and no new one can be made until the
        # block ends (the address points at a port nobody listens on).
        real = storage.conninfo
        if storage._conn is not None and not storage._conn.closed:
            with psycopg.connect(real, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (storage._conn.info.backend_pid,))
        storage.conninfo = "postgresql://127.0.0.1:1/none"
        try:
            yield psycopg.OperationalError
        finally:
            storage.conninfo = real
    else:
        raise AssertionError(f"no driver fault for {scheme}")


PRIMITIVES = {
    "get_many": lambda s: s.get_many(["/f"]),
    "insert_many": lambda s: s.insert_many([{"_id": "/new"}]),
    "patch_many": lambda s: s.patch_many([Patch("/f", set={"k": 2})]),
    "delete_many": lambda s: s.delete_many(["/f"]),
    "scan": lambda s: list(s.scan()),
    "find": lambda s: s.find(Eq(("k",), 1)),
    "find_elements": lambda s: s.find_elements(All()),
    "count": lambda s: s.count(Eq(("k",), 1)),
    "transaction": lambda s: _read_in_a_transaction(s),
    "changes": lambda s: s.changes(0, 10),
    "last_seq": lambda s: s.last_seq(),
    "drop_tombstones": lambda s: s.drop_tombstones(1),
}


def _read_in_a_transaction(storage) -> None:
    with storage.transaction():
        storage.get_many(["/f"])


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    s = open_storage(backend_url(request.param, tmp_path))
    s.insert_many([{"_id": "/f", "k": 1}])
    yield s
    s.close()


@pytest.mark.parametrize("call", sorted(PRIMITIVES))
def test_every_primitive_surfaces_a_driver_failure(store, call):
    before = store.changes(0, 10)
    with broken_driver(store) as error, pytest.raises(StorageError) as info:
        PRIMITIVES[call](store)
    assert isinstance(info.value.__cause__, error), info.value.__cause__
    assert type(store).__name__ in str(info.value)
    # Working again, and nothing was half written.
    assert store.get("/f") == {"_id": "/f", "k": 1}
    assert store.changes(0, 10) == before
    assert store.insert_many([{"_id": "/g"}]) == [True]


def test_a_driver_failing_inside_a_transaction_rolls_it_back(store):
    if not store.atomic:
        pytest.skip(f"{store.scheme} without server transactions cannot roll back a dead driver")
    if store.scheme == "memory":
        pytest.skip("memory:// has no driver beneath its state to break and mend")
    before = store.changes(0, 10)
    fault = broken_driver(store)
    try:
        with pytest.raises(StorageError), store.transaction():
            store.insert_many([{"_id": "/half"}])
            fault.__enter__()  # broken until after the commit (TinyDB writes then)
            store.insert_many([{"_id": "/other"}, {"_id": "/more"}])
    finally:
        fault.__exit__(None, None, None)
    assert store.get_many(["/half", "/other"]) == [None, None]
    assert store.changes(0, 10) == before
    assert store.insert_many([{"_id": "/half"}]) == [True]


CALLS = {
    "create": lambda t: t.create({"_id": "/new"}),
    "read": lambda t: t.read("/f"),
    "update": lambda t: t.update({"_id": "/f", "k": 1}),
    "delete": lambda t: t.delete("/f"),
    "graph": lambda t: t.graph("/f"),
    "search": lambda t: t.search("k:1"),
    "publish": lambda t: t.publish({"_id": "/p", "comment": "c", "origin": "o"}),
    "lock": lambda t: t.lock("/f"),
    "comment": lambda t: t.comment({"#parent": "/f", "comment": "c"}),
}


@pytest.mark.parametrize("op", sorted(CALLS))
def test_every_operation_surfaces_a_driver_failure(system, op):
    system.create({"_id": "/f", "k": 1})
    with broken_driver(system.storage) as error, pytest.raises(StorageError) as info:
        CALLS[op](system)
    assert isinstance(info.value.__cause__, error)
    assert system.read("/f")["k"] == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"_id": "/bad", "v": {1, 2}},
        {"_id": "/bad", "": 1},
        {"_id": "/bad", "v": [[[[]]]] * 2 + [object()]},
    ],
)
def test_storage_refuses_what_is_not_an_element_and_writes_nothing(store, bad):
    with pytest.raises(BadRequest, match=r"^insert error"):
        store.insert_many([{"_id": "/ok"}, bad])
    assert store.get_many(["/ok", "/bad"]) == [None, None]
    assert store.insert_many([{"_id": "/ok"}]) == [True]
