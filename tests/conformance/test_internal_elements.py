"""Internal elements (settings, token revocations, sign-in limits) never show in a
search, however many there are and wherever a sort puts them, on every backend."""

from __future__ import annotations

import pytest

from damas_core.errors import Unauthorized
from damas_core.signin import SignIn


@pytest.fixture
def crowded(tracker):
    """Five files, and many more internal elements than a search page holds."""
    tracker.storage.insert_many([{"_id": "@a", "class": "user", "password": "pw"}])
    tracker.create([{"_id": f"/f{i}", "n": i} for i in range(5)])
    signin = SignIn(tracker)
    tokens = signin.tokens
    for _ in range(12):
        tokens.revoke(tokens.issue("a")[0])
    for i in range(6):
        with pytest.raises(Unauthorized):
            signin.sign_in(f"nobody{i}", "wrong", address=f"10.0.0.{i}")
    return tracker


def test_searches_leave_internal_elements_out(crowded):
    for sort in (None, "exp", "-exp", "attempts", "-n", "n"):
        check(crowded, sort)


def check(crowded, sort):
    files = [f"/f{i}" for i in range(5)]
    expected = sorted(files) if sort in (None, "exp", "-exp", "attempts") else None
    found = crowded.search("*", sort=sort, limit=3)
    assert len(found) == 3 and set(found) <= {*files, "@a"}
    if expected is not None:
        assert crowded.search("_id:/^\\//", sort=sort, limit=3) == expected[:3]
    elements = crowded.search_elements("*", sort=sort, skip=1, limit=4)
    assert len(elements) == 4 and all(not e["_id"].startswith("~") for e in elements)
    answer = crowded.search_mongo({}, sort=sort, limit=2)
    assert answer["count"] == 6 and len(answer["ids"]) == 2
    assert crowded.search_one("exp:*") is None and crowded.search_one("attempts:*") is None
