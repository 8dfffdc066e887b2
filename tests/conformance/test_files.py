"""publish, lock, unlock, comment, version."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import damas_core
from damas_core.errors import BadRequest


def pub(tracker, path, **extra):
    return tracker.publish({"_id": path, "comment": "first", "origin": "paris", **extra})


def test_publish_creates_file_and_history_child(tracker):
    f = pub(tracker, "/shots/a.exr", file_size=10)
    assert f["_id"] == "/shots/a.exr" and f["author"] == "damas" and f["origin"] == "paris"
    children = tracker.search("#parent:/shots/a.exr")
    assert len(children) == 1
    child = tracker.read(children[0])
    assert child["comment"] == "first" and child["author"] == "damas" and child["time"] == f["time"]
    assert "file_size" not in child and "origin" not in child
    assert tracker.search("origin:paris") == ["/shots/a.exr"]


def test_publish_with_history_returns_pairs(tracker):
    file, child = tracker.publish({"_id": "/a", "comment": "c", "origin": "o"}, with_history=True)
    assert child["#parent"] == file["_id"] == "/a"


def test_publish_refuses_tracked_path_and_writes_nothing(tracker):
    pub(tracker, "/a")
    assert pub(tracker, "/a") is None
    assert len(tracker.search("#parent:/a")) == 1
    out = tracker.publish(
        [
            {"_id": "/a", "comment": "again", "origin": "x"},
            {"_id": "/b", "comment": "new", "origin": "x"},
        ]
    )
    assert out[0] is None and out[1]["_id"] == "/b"


@pytest.mark.parametrize(
    "bad",
    [
        {"_id": "relative/path", "comment": "c", "origin": "o"},
        {"_id": "/a", "origin": "o"},
        {"_id": "/a", "comment": "", "origin": "o"},
        {"_id": "/a", "comment": "c"},
        {"comment": "c", "origin": "o"},
    ],
)
def test_publish_bad_input(tracker, bad):
    with pytest.raises(BadRequest):
        tracker.publish([{"_id": "/ok", "comment": "c", "origin": "o"}, bad])
    assert tracker.search("*") == []


_TEXTS = st.one_of(st.just(None), st.sampled_from(["", " ", "\t\n", "ok", " x "]), st.integers())
_PATHS = st.one_of(st.sampled_from(["/a", "/b/c", "/d e", "rel", "", " /x"]), st.integers())


def _publishable(e: dict) -> bool:
    def text(key):
        return isinstance(e.get(key), str) and e[key].strip() != ""

    return (
        isinstance(e["_id"], str)
        and e["_id"].startswith("/")
        and text("comment")
        and text("origin")
    )


@settings(max_examples=150, deadline=None)
@given(
    files=st.lists(
        st.fixed_dictionaries({"_id": _PATHS}, optional={"comment": _TEXTS, "origin": _TEXTS}),
        min_size=1,
        max_size=6,
        unique_by=lambda e: str(e["_id"]),
    )
)
def test_publish_checks_every_file_of_a_batch(files):
    """A batch is published whole when every file is publishable, else refused whole
    with a BadRequest, whichever file is at fault."""
    files = [{k: v for k, v in f.items() if v is not None} for f in files]
    tracker = damas_core.open("memory://")
    if all(map(_publishable, files)):
        out = tracker.publish(files)
        assert [f["_id"] for f in out] == [f["_id"] for f in files]
        assert len(tracker.search("#parent:*")) == len(files)
    else:
        with pytest.raises(BadRequest):
            tracker.publish(files)
        assert tracker.search("*") == []


def test_lock_and_unlock(tracker):
    tracker.create([{"_id": "/a"}, {"_id": "/b"}])
    assert tracker.lock("/a") is True
    assert tracker.read("/a")["lock"] == "damas"
    assert tracker.lock("/a") is True  # holding it already is fine
    assert tracker.lock(["/a", "/b"]) is True
    assert tracker.unlock(["/a", "/b"]) is True
    assert "lock" not in tracker.read("/a")
    assert tracker.unlock("/a") is False  # not locked


def test_lock_is_all_or_nothing(tracker):
    tracker.create([{"_id": "/a"}, {"_id": "/b"}])
    assert tracker.lock(["/a", "/missing"]) is False
    assert "lock" not in tracker.read("/a")
    tracker.update({"_id": "/b", "lock": "someone"})
    assert tracker.lock(["/a", "/b"]) is False
    assert "lock" not in tracker.read("/a") and tracker.read("/b")["lock"] == "someone"


def test_unlock_someone_elses_needs_force(tracker):
    tracker.create([{"_id": "/a", "lock": "bob"}, {"_id": "/b"}])
    assert tracker.unlock("/a") is False
    assert tracker.read("/a")["lock"] == "bob"
    assert tracker.unlock(["/a", "/b"], force=True) is False  # /b not locked
    assert tracker.read("/a")["lock"] == "bob"
    assert tracker.unlock("/a", force=True) is True
    assert "lock" not in tracker.read("/a")


def test_comment_one_and_several_parents(tracker):
    tracker.create([{"_id": "/a"}, {"_id": "/b"}])
    c = tracker.comment({"#parent": "/a", "comment": "nice"})
    assert (
        c["#parent"] == "/a" and c["author"] == "damas" and "time" in c and c["comment"] == "nice"
    )
    many = tracker.comment({"#parent": ["/a", "/b", "/nope"], "comment": "all"})
    assert [x and x["#parent"] for x in many] == ["/a", "/b", None]
    assert len(tracker.search("#parent:/a")) == 2
    assert tracker.comment({"#parent": "/nope", "comment": "x"}) is None
    listed = tracker.comment([{"#parent": "/a", "comment": "1"}, {"#parent": "/b", "comment": "2"}])
    assert [x["comment"] for x in listed] == ["1", "2"]


@pytest.mark.parametrize(
    "bad",
    [
        {"#parent": "/a"},
        {"#parent": "/a", "comment": "  "},
        {"comment": "x"},
        {"#parent": [], "comment": "x"},
    ],
)
def test_comment_bad_input(tracker, bad):
    tracker.create({"_id": "/a"})
    with pytest.raises(BadRequest):
        tracker.comment(bad)
    assert tracker.search("#parent:/a") == []


def test_version_archives_and_bumps(tracker):
    pub(tracker, "/a", file_size=1)
    head = tracker.version("/a", {"file_size": 2, "comment": "v2"})
    assert head["file_size"] == 2 and head["version"] == 3  # history child + archive + 1
    children = [tracker.read(i) for i in tracker.search("#parent:/a")]
    archived = [c for c in children if c.get("comment") == "first" and "version" not in c]
    assert len(children) == 2 and archived
    again = tracker.version("/a", {"file_size": 3})
    assert again["version"] == 4
    assert tracker.version("/nope", {"x": 1}) is None
