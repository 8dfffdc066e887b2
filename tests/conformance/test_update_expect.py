"""``update(..., expect=...)``: a compare-and-set on one element, on every backend, and
over HTTP (409 when the element does not hold what was expected)."""

from __future__ import annotations

import pytest

import damas_core
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
    ],
)
def test_a_wrong_expectation_is_refused_and_changes_nothing(tracker, elements, expect):
    tracker.create({"_id": "v", "holder": "a"})
    with pytest.raises(BadRequest):
        tracker.update(elements, expect=expect)
    assert tracker.read("v") == {**tracker.read("v"), "holder": "a"} and "x" not in tracker.read(
        "v"
    )


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
