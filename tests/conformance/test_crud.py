"""create, read, update, upsert, delete: the same answers on every backend."""

from __future__ import annotations

import time

import pytest

from damas_core.errors import BadRequest


def test_create_one_gives_one_element_with_author_and_time(tracker):
    before = int(time.time() * 1000)
    e = tracker.create({"_id": "/a.txt", "size": 3})
    assert e["_id"] == "/a.txt" and e["size"] == 3
    assert e["author"] == "damas"
    assert before <= e["time"] <= int(time.time() * 1000) + 1
    assert tracker.read("/a.txt") == e


def test_create_list_gives_list_in_order_with_none_for_existing(tracker):
    tracker.create({"_id": "/b"})
    out = tracker.create([{"_id": "/a"}, {"_id": "/b"}, {"_id": "/c"}])
    assert [e and e["_id"] for e in out] == ["/a", None, "/c"]


def test_create_existing_id_returns_none_and_keeps_stored(tracker):
    tracker.create({"_id": "/a", "v": 1})
    assert tracker.create({"_id": "/a", "v": 2}) is None
    assert tracker.read("/a")["v"] == 1


def test_create_duplicate_ids_in_one_call_first_wins(tracker):
    out = tracker.create([{"_id": "/a", "v": 1}, {"_id": "/a", "v": 2}])
    assert out[0]["v"] == 1 and out[1] is None


def test_id_array_unfolds_into_one_element_per_id(tracker):
    out = tracker.create({"_id": ["/x", "/y"], "kind": "shot"})
    assert [e["_id"] for e in out] == ["/x", "/y"]
    assert tracker.read(["/x", "/y"])[1]["kind"] == "shot"


def test_placeholder_and_missing_id_get_ulids(tracker):
    a = tracker.create({"_id": "/renders/{#}.exr"})
    b = tracker.create({"name": "no id"})
    assert a["_id"].startswith("/renders/") and a["_id"].endswith(".exr")
    assert len(a["_id"]) == len("/renders/.exr") + 26
    assert len(b["_id"]) == 26 and tracker.read(b["_id"])["name"] == "no id"
    c = tracker.create({"name": "no id"})
    assert c["_id"] != b["_id"]


def test_read_single_list_and_holes(tracker):
    tracker.create([{"_id": "/a"}, {"_id": "/b"}])
    assert tracker.read("/a")["_id"] == "/a"
    assert tracker.read("/nope") is None
    out = tracker.read(["/b", "/nope", "/a", "/a"])
    assert [e and e["_id"] for e in out] == ["/b", None, "/a", "/a"]
    assert tracker.read([]) == []  # an empty list in, an empty list out


def test_returned_elements_are_copies(tracker):
    e = tracker.create({"_id": "/a", "tags": ["x"]})
    e["tags"].append("mutated")
    got = tracker.read("/a")
    got["tags"].append("again")
    assert tracker.read("/a")["tags"] == ["x"]


def test_ids_with_special_characters(tracker):
    ids = [
        "/a b/c;d?e#f%g.txt",
        "/ünï/cødé",
        "/x/..y/.z",
        "/-rf",
        "/#notes;x",
        "@weird:id",
        "/" + "p" * 1000,
    ]
    tracker.create([{"_id": i} for i in ids])
    assert [e["_id"] for e in tracker.read(ids)] == ids


def test_update_sets_and_null_removes_without_bumping_time(tracker):
    e = tracker.create({"_id": "/a", "k": 1, "gone": True})
    out = tracker.update({"_id": "/a", "k": 2, "new": "x", "gone": None})
    assert out["k"] == 2 and out["new"] == "x" and "gone" not in out
    assert out["time"] == e["time"]
    assert tracker.read("/a") == out


def test_update_missing_is_none_and_list_has_holes(tracker):
    tracker.create({"_id": "/a"})
    assert tracker.update({"_id": "/nope", "k": 1}) is None
    out = tracker.update([{"_id": "/a", "k": 1}, {"_id": "/nope", "k": 1}])
    assert out[0]["k"] == 1 and out[1] is None
    assert tracker.read("/nope") is None


def test_update_needs_id_and_a_key(tracker):
    tracker.create({"_id": "/a"})
    with pytest.raises(BadRequest):
        tracker.update({"k": 1})
    with pytest.raises(BadRequest):
        tracker.update({"_id": "/a"})


def test_update_with_id_array(tracker):
    tracker.create([{"_id": "/a"}, {"_id": "/b"}])
    out = tracker.update({"_id": ["/a", "/b"], "tag": "t"})
    assert [e["tag"] for e in out] == ["t", "t"]


def test_update_replaces_nested_objects_whole(tracker):
    tracker.create({"_id": "/a", "meta": {"x": 1, "y": 2}})
    assert tracker.update({"_id": "/a", "meta": {"x": 3}})["meta"] == {"x": 3}


def test_upsert_creates_or_updates(tracker):
    created = tracker.upsert({"_id": "/a", "k": 1})
    assert created["k"] == 1 and created["author"] == "damas" and "time" in created
    updated = tracker.upsert({"_id": "/a", "k": 2, "x": None})
    assert updated["k"] == 2 and updated["time"] == created["time"]
    fresh = tracker.upsert({"_id": "null", "k": 3})
    assert fresh["_id"] != "null" and len(fresh["_id"]) == 26
    noid = tracker.upsert({"k": 4})
    assert len(noid["_id"]) == 26 and tracker.read(noid["_id"])["k"] == 4


def test_upsert_list(tracker):
    tracker.create({"_id": "/a", "k": 0})
    out = tracker.upsert([{"_id": "/a", "k": 1}, {"_id": "/b", "k": 2}])
    assert [(e["_id"], e["k"]) for e in out] == [("/a", 1), ("/b", 2)]


def test_delete_returns_ids_and_none_for_missing(tracker):
    tracker.create([{"_id": "/a"}, {"_id": "/b"}])
    assert tracker.delete("/a") == "/a"
    assert tracker.delete("/a") is None
    assert tracker.delete(["/b", "/nope"]) == ["/b", None]
    assert tracker.read(["/a", "/b"]) == [None, None]


def test_delete_removes_links_to_and_from(tracker):
    tracker.create([{"_id": "/a"}, {"_id": "/b"}, {"_id": "/c"}])
    tracker.create(
        [
            {"_id": "l1", "src_id": "/a", "tgt_id": "/b"},
            {"_id": "l2", "src_id": "/b", "tgt_id": "/c"},
            {"_id": "l3", "src_id": "/a", "tgt_id": "/c"},
        ]
    )
    assert tracker.delete("/b") == "/b"
    assert tracker.read(["l1", "l2", "l3"])[:2] == [None, None]
    assert tracker.read("l3")["_id"] == "l3"


@pytest.mark.parametrize(
    "bad",
    [
        42,
        "a string",
        {"_id": ""},
        {"_id": 12},
        {"_id": "x\x00y"},
        {"_id": "~damas"},
        {"_id": "/ok", 1: 2},
        {"_id": []},
    ],
)
def test_create_bad_input_raises_and_changes_nothing(tracker, bad):
    tracker.create({"_id": "/keep"})
    with pytest.raises(BadRequest):
        tracker.create([{"_id": "/first"}, bad])
    assert tracker.search("*") == ["/keep"]


def test_very_deep_element_is_refused(tracker):
    deep: dict = {}
    node = deep
    for _ in range(300):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(BadRequest):
        tracker.create({"_id": "/deep", "v": deep})
    assert tracker.read("/deep") is None


def test_read_bad_ids(tracker):
    with pytest.raises(BadRequest):
        tracker.read(None)
    with pytest.raises(BadRequest):
        tracker.read([1])
    with pytest.raises(BadRequest):
        tracker.read("")


def test_internal_ids_are_never_visible(system):
    system.set_setting("secret", "s3")
    assert system.read("~damas") is None
    assert "~damas" not in system.search("*")
    assert system.search_elements("*") == []
    assert system.search_elements("*", limit=1) == []
    assert system.search_mongo({})["count"] == 0
    with pytest.raises(BadRequest):
        system.update({"_id": "~damas", "secret": "x"})
    with pytest.raises(BadRequest):
        system.delete("~damas")
    assert system.get_setting("secret") == "s3"
