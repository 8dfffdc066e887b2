"""search, search_elements, search_one, search_mongo across backends."""

from __future__ import annotations

import pytest

from damas_core.errors import BadRequest, NotImplementedByBackend


@pytest.fixture
def shots(tracker):
    tracker.create(
        [
            {
                "_id": "/p/a.exr",
                "type": "shot",
                "file_size": 100,
                "tags": ["hero", "fx"],
                "#parent": "/p",
            },
            {"_id": "/p/b.exr", "type": "shot", "file_size": 2000, "tags": ["bg"], "#parent": "/p"},
            {"_id": "/p/c.mov", "type": "movie", "file_size": 50, "meta": {"codec": "prores"}},
            {"_id": "/p/d.txt", "type": "note", "file_size": "12", "name": "Shot notes"},
            {"_id": "/p/e.txt", "file_size": 12, "flag": True},
        ]
    )
    return tracker


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("*", ["/p/a.exr", "/p/b.exr", "/p/c.mov", "/p/d.txt", "/p/e.txt"]),
        ("type:shot", ["/p/a.exr", "/p/b.exr"]),
        ("file_size>99", ["/p/a.exr", "/p/b.exr"]),
        ("file_size<=50", ["/p/c.mov", "/p/e.txt"]),
        ("file_size:12", ["/p/d.txt", "/p/e.txt"]),
        ('file_size:"12"', ["/p/d.txt"]),
        ("tags:hero", ["/p/a.exr"]),
        ("meta.codec:prores", ["/p/c.mov"]),
        ("#parent:/p", ["/p/a.exr", "/p/b.exr"]),
        ("_id:/p/c.mov", ["/p/c.mov"]),
        ("name:/^shot/i", ["/p/d.txt"]),
        ("_id:/exr$/", ["/p/a.exr", "/p/b.exr"]),
        ("type:shot file_size>1000", ["/p/b.exr"]),
        ("type:shot OR type:movie", ["/p/a.exr", "/p/b.exr", "/p/c.mov"]),
        ("-type:shot", ["/p/c.mov", "/p/d.txt", "/p/e.txt"]),
        ("NOT type:*", ["/p/e.txt"]),
        ("flag:true", ["/p/e.txt"]),
        ("(type:shot OR type:note) -tags:bg", ["/p/a.exr", "/p/d.txt"]),
        ("nothing:here", []),
    ],
)
def test_search_language(shots, query, expected):
    assert shots.search(query) == expected


def test_search_sort_skip_limit(shots):
    by_size = shots.search("file_size>0", sort=[["file_size", -1]])
    assert by_size == ["/p/b.exr", "/p/a.exr", "/p/c.mov", "/p/e.txt"]
    # descending: strings sort above numbers, so "12" (a string) comes first
    assert shots.search("*", sort="-file_size", skip=1, limit=2) == ["/p/b.exr", "/p/a.exr"]
    assert shots.search("*", skip=3) == ["/p/d.txt", "/p/e.txt"]
    assert shots.search("*", limit=1) == ["/p/a.exr"]


def test_sort_across_types_follows_one_order(shots):
    # numbers before strings, then missing-first on ascending
    assert shots.search("*", sort={"file_size": 1}) == [
        "/p/e.txt",
        "/p/c.mov",
        "/p/a.exr",
        "/p/b.exr",
        "/p/d.txt",
    ]


@pytest.mark.parametrize(
    ("query", "sort", "skip", "limit"),
    [
        ("*", None, 0, None),
        ("type:shot OR file_size<60", None, 0, None),
        ("file_size>0", [["file_size", -1]], 0, None),
        ("*", "-file_size", 1, 2),
        ("*", None, 3, None),
        ("*", None, 0, 1),
        ("nothing:here", None, 0, None),
    ],
)
def test_search_elements_is_search_then_read(shots, query, sort, skip, limit):
    ids = shots.search(query, sort=sort, skip=skip, limit=limit)
    found = shots.search_elements(query, sort=sort, skip=skip, limit=limit)
    assert [e["_id"] for e in found] == ids
    assert found == shots.read(ids)


def test_search_elements_bad_input(shots):
    for bad in ("", "(type:shot", 5):
        with pytest.raises(BadRequest):
            shots.search_elements(bad)
    with pytest.raises(BadRequest):
        shots.search_elements("*", skip=-1)
    with pytest.raises(BadRequest):
        shots.search_elements("*", sort={"file_size": 2})


def test_search_one(shots):
    assert shots.search_one("type:shot")["_id"] == "/p/a.exr"
    assert shots.search_one("type:nothing") is None


def test_search_mongo(shots):
    out = shots.search_mongo({"type": "shot"})
    assert out == {"count": 2, "ids": ["/p/a.exr", "/p/b.exr"]}
    paged = shots.search_mongo({"file_size": {"$gte": 50}}, sort={"file_size": -1}, limit=1, skip=1)
    assert paged == {"count": 3, "ids": ["/p/a.exr"]}
    assert shots.search_mongo({"_id": "REGEX_mov$"})["ids"] == ["/p/c.mov"]
    assert shots.search_mongo({"$or": [{"type": "note"}, {"flag": True}]})["count"] == 2
    assert shots.search_mongo({"type": {"$in": ["movie", "note"]}})["ids"] == [
        "/p/c.mov",
        "/p/d.txt",
    ]
    assert shots.search_mongo({"type": {"$exists": False}})["ids"] == ["/p/e.txt"]


def test_search_mongo_unsupported_operator_is_501(shots):
    with pytest.raises(NotImplementedByBackend):
        shots.search_mongo({"$where": "this.a == 1"})


@pytest.mark.parametrize("bad", ["", "key:", "(type:shot", "a:/(/", "foo", "x OR"])
def test_bad_queries_are_bad_requests(shots, bad):
    with pytest.raises(BadRequest):
        shots.search(bad)


def test_bad_paging(shots):
    with pytest.raises(BadRequest):
        shots.search("*", skip=-1)
    with pytest.raises(BadRequest):
        shots.search("*", sort={"file_size": 2})


def test_catastrophic_regex_runs_in_linear_time(tracker):
    tracker.create([{"_id": "/x", "name": "a" * 50_000 + "!"}, {"_id": "/y", "name": "a" * 50_000}])
    assert tracker.search("name:/(a+)+$/") == ["/y"]
    assert tracker.search("name:/^(a|aa)+b/") == []
