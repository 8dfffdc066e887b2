"""A failing backend surfaces as StorageError from every operation, carrying the
original exception, and the tracker keeps working once the backend recovers."""

from __future__ import annotations

import pytest

from damas_core.errors import BadRequest, StorageError

PRIMITIVES = [
    "_get_many",
    "_insert_many",
    "_patch_many",
    "_delete_many",
    "_find",
    "_find_elements",
    "_count",
    "_transaction",
]


class Boom(OSError):
    """Stands for any driver failure (disk, connection, corruption)."""


CALLS = {
    "create": lambda t: t.create({"_id": "/new"}),
    "read": lambda t: t.read("/f"),
    "update": lambda t: t.update({"_id": "/f", "k": 1}),
    "upsert": lambda t: t.upsert({"_id": "/f", "k": 1}),
    "delete": lambda t: t.delete("/f"),
    "graph": lambda t: t.graph("/f"),
    "search": lambda t: t.search("k:1"),
    "search_elements": lambda t: t.search_elements("k:1"),
    "search_one": lambda t: t.search_one("k:1"),
    "search_mongo": lambda t: t.search_mongo({"k": 1}),
    "publish": lambda t: t.publish({"_id": "/p", "comment": "c", "origin": "o"}),
    "lock": lambda t: t.lock("/f"),
    "unlock": lambda t: t.unlock("/f"),
    "comment": lambda t: t.comment({"#parent": "/f", "comment": "c"}),
    "version": lambda t: t.version("/f", {"k": 2}),
}


@pytest.mark.parametrize("op", sorted(CALLS))
def test_every_operation_surfaces_storage_failures(system, monkeypatch, op):
    system.create({"_id": "/f", "k": 1, "lock": "damas"})
    storage_type = type(system.storage)

    def boom(*args, **kwargs):
        raise Boom("disk on fire")

    for name in PRIMITIVES:
        if hasattr(storage_type, name):
            monkeypatch.setattr(storage_type, name, boom)
    monkeypatch.setattr(storage_type, "_scan", boom)
    with pytest.raises(StorageError) as info:
        CALLS[op](system)
    assert isinstance(info.value.__cause__, Boom)
    assert type(system.storage).__name__ in str(info.value)
    monkeypatch.undo()
    assert system.read("/f")["k"] == 1


def test_failure_inside_a_transaction_rolls_back(system, monkeypatch):
    """A publish whose second write fails leaves neither the file nor its child."""
    storage_type = type(system.storage)
    real = storage_type._insert_many
    calls = {"n": 0}

    def second_fails(self, elements, *args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Boom("child write failed")
        return real(self, elements, *args)

    monkeypatch.setattr(storage_type, "_insert_many", second_fails)
    with pytest.raises(StorageError):
        system.publish({"_id": "/half", "comment": "c", "origin": "o"})
    monkeypatch.undo()
    assert system.read("/half") is None
    assert system.search("#parent:/half") == []


@pytest.mark.parametrize(
    "bad",
    [
        {"_id": "/bad", "v": {1, 2}},
        {"_id": "/bad", "": 1},
        {"_id": "/bad", "v": [[[[]]]] * 2 + [object()]},
    ],
)
def test_storage_refuses_what_is_not_an_element_and_writes_nothing(system, bad):
    storage = system.storage
    with pytest.raises(BadRequest, match=r"^insert error"):
        storage.insert_many([{"_id": "/ok"}, bad])
    assert storage.get_many(["/ok", "/bad"]) == [None, None]
    assert storage.insert_many([{"_id": "/ok"}]) == [True]
