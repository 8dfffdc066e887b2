"""``update(..., expect=...)``: a compare-and-set on one element, on every backend, and
over HTTP (409 when the element does not hold what was expected)."""

from __future__ import annotations

import pytest

import damas_core
from damas_core.client import EXPECT_URL_MAX, _expect_path
from damas_core.errors import BadRequest
from tests.http.conftest import add_users, clients_of, serving


def test_an_update_is_written_only_when_the_element_holds_what_was_expected(tracker):
    tracker.create({"_id": "v", "holder": "a", "n": 1})
    assert (
        tracker.update({"_id": "v", "holder": "b"}, expect={"holder": "a", "n": 1})["holder"] == "b"
    )
    assert tracker.update({"_id": "v", "holder": "c"}, expect={"holder": "a"}) is None
    assert tracker.update({"_id": "v", "holder": "c"}, expect={"n": 2}) is None
    assert tracker.read("v")["holder"] == "b"
    # null: the key must be absent
    assert tracker.update({"_id": "v", "x": 1}, expect={"gone": None})["x"] == 1
    assert tracker.update({"_id": "v", "x": 2}, expect={"x": None}) is None
    assert tracker.update({"_id": "missing", "x": 1}, expect={"x": None}) is None
    assert tracker.read("v")["x"] == 1


@pytest.mark.parametrize(
    "elements, expect",
    [
        ([{"_id": "v", "x": 1}], {"holder": "a"}),  # a list
        ({"_id": ["v", "w"], "x": 1}, {"holder": "a"}),  # an _id list
        ({"_id": "v", "x": 1}, {}),
        ({"_id": "v", "x": 1}, ["holder"]),
        ({"_id": "v", "x": 1}, {"password": None}),  # reads never return it
        ({"_id": "v", "x": 1}, {"#password": None}),
        ({"_id": "v", "x": 1}, {"_id": "v"}),
        ({"_id": "v", "x": 1}, [{"holder": "a"}]),  # a list for one element
        ([{"_id": "v", "x": 1}], [{"holder": "a"}, None]),  # a list longer than the elements
        ({"_id": ["v", "w"], "x": 1}, [None, None]),  # an _id list
        ([{"_id": "v", "x": 1}], [["holder"]]),
    ],
)
def test_a_wrong_expectation_is_refused_and_changes_nothing(tracker, elements, expect):
    tracker.create({"_id": "v", "holder": "a"})
    with pytest.raises(BadRequest):
        tracker.update(elements, expect=expect)
    assert tracker.read("v") == {**tracker.read("v"), "holder": "a"} and "x" not in tracker.read(
        "v"
    )


def test_a_list_update_expects_each_element_its_own(tracker):
    tracker.create([{"_id": i, "n": 1} for i in "abc"])
    out = tracker.update([{"_id": i, "n": 2} for i in "abc"], expect=[{"n": 1}, {"n": 5}, None])
    assert [e and e["n"] for e in out] == [2, None, 2]
    assert [e["n"] for e in tracker.read(["a", "b", "c"])] == [2, 1, 2]


def test_non_admins_cannot_expect_what_they_cannot_read(tracker):
    tracker.create([{"_id": "@eddie", "class": "editor"}, {"_id": "x", "k": 1}])
    with pytest.raises(BadRequest, match="rsync_env"):
        tracker.as_user("eddie").update({"_id": "x", "k": 2}, expect={"rsync_env": None})
    assert tracker.read("x")["k"] == 1


def test_over_http_a_lost_expectation_is_a_conflict():
    tracker = damas_core.open("memory://")
    add_users(tracker)
    tracker.create({"_id": "v", "holder": "a"})
    with serving(damas_core.http.make_app(tracker, auth="jwt")) as url, clients_of(url) as make:
        eddie = make("eddie")
        assert eddie.update({"_id": "v", "holder": "b"}, expect={"holder": "a"})["holder"] == "b"
        assert eddie.update({"_id": "v", "holder": "c"}, expect={"holder": "a"}) is None
        status, body = eddie.request(
            "PUT", "/api/update/?expect=%7B%22holder%22%3A%22a%22%7D", "update",
            {"_id": "v", "holder": "c"}, allow=(409,),
        )  # fmt: skip
        assert status == 409 and body["status"] == 409
        status, body = eddie.request(
            "PUT", "/api/update/?expect=nope", "update", {"_id": "v", "holder": "c"}, allow=(400,)
        )
        assert status == 400 and "expect" in body["error"]
        assert tracker.read("v")["holder"] == "b"
    tracker.close()


def test_over_http_a_list_of_expectations_is_a_multi_status():
    """207 with null for the elements not written, 409 when none was; the client sends
    a long list in requests whose URL stays short, the answers in order."""
    tracker = damas_core.open("memory://")
    add_users(tracker)
    ids = [f"/shots/s{i:04d}/frame with a long name.exr" for i in range(600)]
    tracker.create([{"_id": i, "time": 7} for i in ids])
    with serving(damas_core.http.make_app(tracker, auth="jwt")) as url, clients_of(url) as make:
        eddie = make("eddie")
        expect = [{"time": 7} if n % 3 else {"time": 8} for n in range(len(ids))]
        assert len(_expect_path(expect)) > 2 * EXPECT_URL_MAX  # three requests at least
        out = eddie.update([{"_id": i, "k": 1} for i in ids], expect=expect)
        assert [e is not None for e in out] == [bool(n % 3) for n in range(len(ids))]
        assert [e and e["_id"] for e in out if e] == [i for n, i in enumerate(ids) if n % 3]
        status, body = eddie.request(
            "PUT", _expect_path([{"time": 7}, {"time": 9}]), "update",
            [{"_id": ids[1], "k": 2}, {"_id": ids[2], "k": 2}], allow=(207,),
        )  # fmt: skip
        assert status == 207 and body[0]["k"] == 2 and body[1] is None
        status, body = eddie.request(
            "PUT", _expect_path([{"time": 9}]), "update", [{"_id": ids[1], "k": 3}], allow=(409,)
        )
        assert status == 409 and "does not hold what was expected" in body["error"]
    assert tracker.read(ids[0]).get("k") is None and tracker.read(ids[1])["k"] == 2
    tracker.close()
