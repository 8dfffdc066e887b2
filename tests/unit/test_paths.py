"""File paths are canonical (damas_core.paths): hostile paths in every key that names a
file, through every write operation, as a user and as an admin (and as the embedded
tracker itself), are refused with a 400 naming the path, and nothing is written.
Elements stored under such paths before the rule can be read, searched and deleted,
nothing else. The same table runs over HTTP in tests/http/test_paths_http.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import damas_core
from damas_core.errors import BadRequest
from damas_core.paths import is_canonical_path, path_fault

#: Paths no file may have, each with why.
HOSTILE = [
    "/../x",
    "/a/../b",
    "/a/./b",
    "/a/..",
    "/a/.",
    "/..",
    "/.",
    "/a//b",
    "//",
    "/",
    "/a/b//",
    "/a\x00b",
    "/a\nb",
    "/a\rb",
    "/a\tb",
    "/a\x1bb",
    "/a\x7fb",
    "/\x85x",
    "/a\u2028b",
    "/a\u2029b",
]
#: Paths that look odd and are fine: files may have such names.
LEGAL = [
    "/-rf",
    "/a/--delete",
    "/#notes.txt",
    "/;x",
    "/a..b",
    "/..a/.b",
    "/.hidden",
    "/seq/",
    "/a\\b",
    "/a b/c",
    "/\u3000x",
    "/\u202ename",
    "/" + "p" * 4000,
]
#: An element stored under each non-canonical path before the rule (written to the
#: storage itself), as damas-core's databases may hold.
LEGACY = "/old//a.txt"


def test_the_predicate():
    assert [p for p in HOSTILE if is_canonical_path(p)] == []
    assert [p for p in LEGAL if not is_canonical_path(p)] == []
    assert not is_canonical_path("a/b") and not is_canonical_path(None)
    assert path_fault("/a/../b") == "it has a '..' segment"


# Each attack: (name, the path it should name, call(api, bad)) where api is a Session,
# the Tracker or an HTTP Client, and bad a hostile path.
ATTACKS: list[tuple[str, Callable[[Any, str], Any]]] = [
    ("create _id", lambda api, bad: api.create({"_id": bad})),
    ("create bulk, one bad", lambda api, bad: api.create([{"_id": "/fine"}, {"_id": bad}])),
    ("create unfolded list", lambda api, bad: api.create({"_id": ["/fine", bad], "k": 1})),
    ("upsert _id", lambda api, bad: api.upsert({"_id": bad, "k": 1})),
    ("upsert unfolded list", lambda api, bad: api.upsert({"_id": ["/fine", bad], "k": 1})),
    (
        "publish",
        lambda api, bad: api.publish({"_id": bad, "comment": "c", "origin": "paris"}),
    ),
    (
        "publish bulk, one bad",
        lambda api, bad: api.publish(
            [
                {"_id": "/fine", "comment": "c", "origin": "paris"},
                {"_id": bad, "comment": "c", "origin": "paris"},
            ]
        ),
    ),
    ("update renamed_to", lambda api, bad: api.update({"_id": "/mine", "renamed_to": bad})),
    (
        "update renamed_to, unfolded",
        lambda api, bad: api.update({"_id": ["/mine", "/other"], "renamed_to": bad}),
    ),
    ("create renamed_to", lambda api, bad: api.create({"_id": "/new", "renamed_to": bad})),
    ("upsert renamed_to", lambda api, bad: api.upsert({"_id": "/mine", "renamed_to": bad})),
    ("version renamed_to", lambda api, bad: api.version("/mine", {"renamed_to": bad})),
    (
        "update conflict incoming",
        lambda api, bad: api.update(
            {"_id": "/mine", "conflict_tokyo": {"time": 1, "from": "paris", "incoming": bad}}
        ),
    ),
    ("create #parent", lambda api, bad: api.create({"_id": "/kid", "#parent": bad})),
    ("create link", lambda api, bad: api.create({"src_id": bad, "tgt_id": "/mine"})),
]
#: A hostile path, for each write that may carry any path.
PATHS = ["/../x", "/a/./b", "/a//b", "//", "/a\nb", "/a\rb", "/a\x7fb", "/\x85x", "/a\u2028b"]
#: Writes to an element stored under a non-canonical path before the rule.
LEGACY_WRITES: list[tuple[str, Callable[[Any], Any]]] = [
    ("update", lambda api: api.update({"_id": LEGACY, "k": 2})),
    (
        "update in a bulk",
        lambda api: api.update([{"_id": "/mine", "k": 2}, {"_id": LEGACY, "k": 2}]),
    ),
    ("upsert", lambda api: api.upsert({"_id": LEGACY, "k": 2})),
    ("version", lambda api: api.version(LEGACY, {"k": 2})),
    ("lock", lambda api: api.lock(LEGACY)),
    ("lock with another", lambda api: api.lock(["/mine", LEGACY])),
    # (a comment on a path that holds no element is None, as for any missing parent)
    ("comment", lambda api: api.comment({"#parent": LEGACY, "comment": "x"})),
    ("comment on a list", lambda api: api.comment({"#parent": ["/mine", LEGACY], "comment": "x"})),
    ("create a link to it", lambda api: api.create({"src_id": "/mine", "tgt_id": LEGACY})),
]


def seed(tracker: damas_core.Tracker) -> None:
    """``/mine`` and ``/other`` (ula's), and the legacy element (straight to storage)."""
    tracker.storage.delete_many([i for i in ("/mine", "/other", LEGACY) if tracker.storage.get(i)])
    tracker.storage.insert_many(
        [
            {"_id": "/mine", "author": "ula", "time": 1, "origin": "paris"},
            {"_id": "/other", "author": "ula", "time": 1, "origin": "paris"},
            {"_id": LEGACY, "author": "ula", "time": 1, "k": 1},
        ]
    )


def refused(tracker: damas_core.Tracker, call: Callable[[], Any], bad: str) -> str:
    """``call()`` raises BadRequest naming ``bad`` (as Python writes it: control
    characters escaped), and the store is as it was; returns the message."""
    before = tracker.storage.last_seq()
    with pytest.raises(BadRequest) as caught:
        call()
    message = str(caught.value)
    assert repr(bad)[1:-1] in message and "is not a canonical file path" in message
    assert tracker.storage.last_seq() == before, "something was written"
    return message


@pytest.fixture(scope="module")
def tracker() -> Iterator[damas_core.Tracker]:
    t = damas_core.open("memory://")
    t.storage.insert_many([{"_id": "@ula", "class": "user"}, {"_id": "@eddie", "class": "editor"}])
    seed(t)
    yield t
    t.close()


@pytest.fixture(params=["eddie", "tracker"])
def api(request, tracker) -> Any:
    return tracker if request.param == "tracker" else tracker.as_user(request.param)


@pytest.mark.parametrize("bad", PATHS, ids=repr)
@pytest.mark.parametrize("attack", [a[1] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_hostile_paths_are_refused_and_nothing_is_written(tracker, api, attack, bad):
    refused(tracker, lambda: attack(api, bad), bad)


@pytest.mark.parametrize("bad", HOSTILE, ids=repr)
def test_every_hostile_path_is_refused_as_an_id(tracker, bad):
    if "\x00" in bad:  # refused before the rule, as every id with a NUL
        with pytest.raises(BadRequest, match="NUL"):
            tracker.create({"_id": bad})
        return
    refused(tracker, lambda: tracker.create({"_id": bad}), bad)
    refused(tracker, lambda: tracker.update({"_id": "/mine", "renamed_to": bad}), bad)


def test_relative_and_odd_values_of_file_keys(tracker):
    refused(tracker, lambda: tracker.update({"_id": "/mine", "renamed_to": "a/b"}), "a/b")
    with pytest.raises(BadRequest, match="renamed_to 5"):
        tracker.update({"_id": "/mine", "renamed_to": 5})
    # removing the key, or a reference that is not a file path, is fine
    assert tracker.update({"_id": "/mine", "renamed_to": None})["_id"] == "/mine"
    assert tracker.create({"_id": "note", "#parent": "01ABC"})["#parent"] == "01ABC"
    assert tracker.create({"_id": "top", "#parent": "/"})["#parent"] == "/"
    tracker.delete(["note", "top"])


def test_ulid_placeholders_are_filled_then_checked(tracker):
    refused(tracker, lambda: tracker.create({"_id": "/a/{#}/../b"}), "/../b")
    made = tracker.create({"_id": "/shots/{#}.exr"})
    assert is_canonical_path(made["_id"])
    tracker.delete(made["_id"])


@pytest.mark.parametrize("path", LEGAL, ids=lambda p: repr(p[:12]))
def test_odd_but_legal_names_are_written(tracker, path):
    made = tracker.as_user("eddie").publish({"_id": path, "comment": "c", "origin": "paris"})
    assert made["_id"] == path
    eddie = tracker.as_user("eddie")
    assert eddie.update({"_id": "/mine", "renamed_to": path})["renamed_to"] == path
    tracker.delete([path])
    tracker.update({"_id": "/mine", "renamed_to": None})


def test_a_long_path_is_refused_past_the_id_limit(tracker):
    with pytest.raises(BadRequest, match="longer than 4096"):
        tracker.create({"_id": "/" + "p" * 4096})


@pytest.mark.parametrize("write", [w[1] for w in LEGACY_WRITES], ids=[w[0] for w in LEGACY_WRITES])
def test_a_stored_non_canonical_element_is_only_read_and_deleted(tracker, api, write):
    refused(tracker, lambda: write(api), LEGACY)


def test_a_write_to_a_stored_element_says_what_to_do(tracker):
    message = refused(tracker, lambda: tracker.update({"_id": LEGACY, "k": 2}), LEGACY)
    assert message.startswith("update error: '/old//a.txt' is not a canonical file path")
    assert "delete it, and publish the file under a canonical path" in message


def test_a_stored_non_canonical_element_can_be_read_searched_deleted(tracker):
    reader = tracker.as_user("ula")
    assert reader.read(LEGACY)["k"] == 1
    assert LEGACY in reader.search("k:1")
    assert LEGACY in [c["_id"] for c in reader.changes(elements=True)["changes"]]
    assert tracker.as_user("eddie").delete(LEGACY) == LEGACY
    assert tracker.read(LEGACY) is None
    seed(tracker)
