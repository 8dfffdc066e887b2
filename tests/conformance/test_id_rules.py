"""Ids given to operations: ``{#}`` placeholders are measured before they are filled
in, upsert gives every ``"null"`` id its own fresh id after unfolding, an empty id
list gives an empty result, and a refused lock names who holds what."""

from __future__ import annotations

import re

import pytest

import damas_core.elements
from damas_core.elements import MAX_ID_LENGTH, ULID_LENGTH
from damas_core.errors import BadRequest, Conflict, NotFound

#: The most placeholders an id of nothing else can hold: each becomes 26 characters.
MOST = MAX_ID_LENGTH // ULID_LENGTH


def test_an_id_of_many_placeholders_is_refused_before_any_is_filled(tracker, monkeypatch):
    made: list[int] = []
    real = damas_core.elements.new_ids
    monkeypatch.setattr(damas_core.elements, "new_ids", lambda n: made.append(n) or real(n))
    for op in (tracker.create, tracker.upsert):
        with pytest.raises(BadRequest, match=re.escape("20000 {#} are filled in")):
            op({"_id": "{#}" * 20000})
        with pytest.raises(BadRequest, match=re.escape(f"{MOST + 1} {{#}} are filled in")):
            op({"_id": ["/ok/{#}", "{#}" * (MOST + 1)]})
    assert tracker.search("*") == []
    # the embedded library fills nothing in before refusing (a server fills in nothing)
    assert all(n <= 1 for n in made)


def test_an_id_filled_in_to_the_limit_is_accepted(tracker):
    created = tracker.create({"_id": "{#}" * MOST})
    assert len(created["_id"]) == MOST * ULID_LENGTH <= MAX_ID_LENGTH
    assert len({created["_id"][i : i + ULID_LENGTH] for i in range(0, MOST * 26, 26)}) == MOST


@pytest.mark.parametrize("absent", ["null", None])
def test_upsert_gives_each_null_id_its_own_fresh_id(tracker, absent):
    made = tracker.upsert({"_id": [absent, absent], "c": "d"})
    ids = [e["_id"] for e in made]
    assert len(set(ids)) == 2 and "null" not in ids
    assert sorted(tracker.search("c:d")) == sorted(ids)
    assert tracker.read("null") is None


def test_upsert_mixes_null_named_and_absent_ids(tracker):
    tracker.create({"_id": "/a", "n": 0})
    made = tracker.upsert([{"_id": ["null", "/a", "/b/{#}"], "n": 1}, {"n": 2}])
    assert [e["n"] for e in made] == [1, 1, 1, 2]
    assert made[1]["_id"] == "/a" and made[2]["_id"].startswith("/b/")
    assert len({e["_id"] for e in made}) == 4
    assert len(tracker.search("n:1")) == 3


def test_an_empty_id_list_gives_an_empty_result(tracker):
    # the library's rule; over HTTP an empty id list is a 400, as in damas-core
    tracker.create({"_id": "/a"})
    assert tracker.read([]) == []
    assert tracker.graph([]) == []
    assert tracker.delete([]) == []
    assert tracker.lock([]) is True and tracker.unlock([]) is True
    assert tracker.read("/a") is not None


def test_a_refused_lock_names_the_holders(tracker):
    tracker.create([{"_id": "/a"}, {"_id": "/b", "lock": "bob"}, {"_id": "/c", "lock": "cy"}])
    assert tracker.lock(["/a", "/b"]) is False
    with pytest.raises(Conflict, match="lock error: '/b' is locked by @bob") as e:
        tracker.lock(["/a", "/b", "/c"], strict=True)
    assert e.value.locked == {"/b": "@bob", "/c": "@cy"}
    assert e.value.to_dict()["locked"] == {"/b": "@bob", "/c": "@cy"}
    assert "lock" not in tracker.read("/a")  # nothing changed
    with pytest.raises(Conflict, match="unlock error: '/b' is locked by @bob") as e:
        tracker.unlock("/b", strict=True)
    assert e.value.locked == {"/b": "@bob"}
    with pytest.raises(Conflict, match="unlock error: '/a' is not locked") as e:
        tracker.unlock("/a", strict=True)
    assert e.value.locked == {}
    with pytest.raises(Conflict, match="'/zz' not found"):
        tracker.lock(["/a", "/zz"], strict=True)
    with pytest.raises(NotFound, match="lock error: not found: '/zz'"):
        tracker.lock("/zz", strict=True)
    assert tracker.lock(["/a"], strict=True) is True
