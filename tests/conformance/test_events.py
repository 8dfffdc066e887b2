"""Every writing operation runs its events: each ``pre-*`` hook it runs can veto it
(nothing written), and its events fire with what it wrote.

The writing operations are listed here explicitly; a public ``Session`` method that is
in neither list below fails :func:`test_every_session_method_is_listed`, so a new
writing operation cannot be added without its events.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from damas_core.errors import Forbidden
from damas_core.events import KINDS
from damas_core.tracker import Session

READS = {"read", "graph", "search", "search_elements", "search_one", "search_mongo", "changes"}
#: writing operation → the call, the pre-hooks that can veto it
WRITES: dict[str, tuple[Callable[[Session], Any], tuple[str, ...]]] = {
    "create": (lambda s: s.create({"_id": "/new", "k": 1}), ("pre-create",)),
    "publish": (
        lambda s: s.publish({"_id": "/p", "comment": "c", "origin": "paris"}),
        ("pre-create",),
    ),
    "comment": (lambda s: s.comment({"#parent": "/f", "comment": "hi"}), ("pre-create",)),
    "update": (lambda s: s.update({"_id": "/f", "k": 2}), ("pre-update",)),
    "upsert": (
        lambda s: s.upsert([{"_id": "/new", "k": 1}, {"_id": "/f", "k": 2}]),
        ("pre-create", "pre-update"),
    ),
    "version": (lambda s: s.version("/f", {"k": 2}), ("pre-update", "pre-create")),
    "lock": (lambda s: s.lock("/f"), ("pre-update",)),
    "unlock": (lambda s: s.unlock("/f"), ("pre-update",)),
    "delete": (lambda s: s.delete("/f"), ("pre-delete",)),
}
VETOES = [(op, hook) for op, (_, hooks) in WRITES.items() for hook in hooks]


def test_every_session_method_is_listed():
    public = {
        name
        for name, member in inspect.getmembers(Session)
        if not name.startswith("_") and callable(member) and name not in ("hidden", "renewed")
    }
    assert public - READS - set(WRITES) == set(), "a new Session method: list it here"
    assert set(WRITES) <= public


def setup(system, op: str, who: str):
    """The store each call acts on, and the session making it (an admin or an editor)."""
    system.create([{"_id": "@eddie", "class": "editor"}, {"_id": "/f", "k": 1}])
    name = "damas" if who == "admin" else "eddie"
    if op == "unlock":
        system.update({"_id": "/f", "lock": name})
    return system if who == "admin" else system.as_user("eddie")


@pytest.mark.parametrize("who", ["admin", "editor"])
@pytest.mark.parametrize(("op", "hook"), VETOES, ids=[f"{o}-{h}" for o, h in VETOES])
def test_a_pre_hook_vetoes_the_operation(system, who, op, hook):
    session = setup(system, op, who)
    seen: list[Any] = []

    def veto(session, items):
        seen.append(items)
        raise Forbidden(f"vetoed by {hook}")

    system.on(hook, veto)
    before = list(system.storage.scan())
    call, _ = WRITES[op]
    with pytest.raises(Forbidden, match=f"vetoed by {hook}"):
        call(session)
    assert seen and seen[0], "the hook saw what was about to be written"
    assert list(system.storage.scan()) == before


def record(system) -> list[tuple[str, Any]]:
    fired: list[tuple[str, Any]] = []
    for name in KINDS:
        system.on(name, lambda s, results, name=name: fired.append((name, results)))
    return fired


@pytest.mark.parametrize("who", ["admin", "editor"])
def test_each_operation_fires_its_events_with_its_results(system, who):
    session = setup(system, "", who)
    fired = record(system)
    me = session.username

    def events_of(call):
        fired.clear()
        out = call(session)
        return out, list(fired)

    new, events = events_of(lambda s: s.create({"_id": "/new", "k": 1}))
    assert events == [("create", [new])] and new["_id"] == "/new"

    pub, events = events_of(lambda s: s.publish({"_id": "/p", "comment": "c", "origin": "o"}))
    assert events == [("create", [pub])]

    note, events = events_of(lambda s: s.comment({"#parent": "/f", "comment": "hi"}))
    assert events == [("create", [note])] and system.read(note["_id"]) == note

    changed, events = events_of(lambda s: s.update({"_id": "/f", "k": 2}))
    assert events == [("update", [changed])] and changed["k"] == 2

    both, events = events_of(lambda s: s.upsert([{"_id": "/u", "k": 1}, {"_id": "/f", "k": 3}]))
    assert events == [("create", [both[0]]), ("update", [both[1]])]
    assert both[0]["_id"] == "/u" and both[1]["k"] == 3

    head, events = events_of(lambda s: s.version("/f", {"k": 4}))
    assert [name for name, _ in events] == ["update", "create"]
    assert events[0][1] == [head] == [system.read("/f")]
    (child,) = events[1][1]
    assert child["#parent"] == "/f" and child["k"] == 3 and system.read(child["_id"]) == child

    assert events_of(lambda s: s.lock("/f")) == (True, [("update", [system.read("/f")])])
    assert system.read("/f")["lock"] == me
    assert events_of(lambda s: s.lock("/f")) == (True, [])  # held already: nothing written
    assert events_of(lambda s: s.unlock("/f")) == (True, [("update", [system.read("/f")])])
    assert "lock" not in system.read("/f")

    assert events_of(lambda s: s.delete("/new")) == ("/new", [("delete", ["/new"])])


def test_upsert_hooks_replace_what_is_written(system):
    system.create({"_id": "/f", "k": 1})
    system.on("pre-create", lambda s, items: [dict(i, made=True) for i in items])
    system.on("pre-update", lambda s, items: [dict(i, changed=True) for i in items])
    new, old = system.upsert([{"_id": "/n"}, {"_id": "/f", "k": 2}])
    assert new["made"] is True and "changed" not in new
    assert old["changed"] is True and old["k"] == 2 and "made" not in old
    head = system.version("/f", {"k": 3})
    assert head["changed"] is True and head["k"] == 3
    assert system.read(system.search("#parent:/f")[0])["made"] is True
