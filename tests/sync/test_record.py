"""What outcomes record, without rsync: :func:`damas_core.sync.record.record` and the
per-site vocabulary of :mod:`damas_core.sync.state`."""

from __future__ import annotations

import pytest
from damas_core.sync import state
from damas_core.sync.record import (
    CONFLICT,
    COPIED,
    FAILED,
    LEFT,
    STALE,
    Outcome,
    left_reason,
    record,
)

FILES = {
    "/a": {
        "_id": "/a",
        "origin": "paris",
        "time": 50,
        "syncError_tokyo": 23,
        "syncFailures_tokyo": 2,
        "syncWait_tokyo": "locked by ann",
    },
    "/b": {"_id": "/b", "origin": "paris", "time": 60},
}


def test_a_copy_records_the_version_and_clears_what_was_pending():
    [patch] = record([Outcome("/a", "paris", "tokyo", COPIED, at=99)], FILES)
    assert patch == {
        "_id": "/a",
        "synced_tokyo": 50,
        "syncLastAttempt_tokyo": 99,
        "syncError_tokyo": None,
        "syncFailures_tokyo": None,
        "syncWait_tokyo": None,
    }


def test_a_copy_of_a_file_published_by_hand_records_what_it_taught():
    learned = {"file_size": 3, "file_mtime": 1500}
    [patch] = record([Outcome("/b", "paris", "lyon", COPIED, at=99, learned=learned)], FILES)
    assert patch == {"_id": "/b", **learned, "synced_lyon": 60, "syncLastAttempt_lyon": 99}


def test_failures_count_in_a_row():
    first, again = record(
        [
            Outcome("/b", "paris", "lyon", FAILED, at=7, code=23),
            Outcome("/a", "paris", "tokyo", FAILED, at=8, code=12),
        ],
        FILES,
    )
    assert first == {
        "_id": "/b",
        "syncError_lyon": 23,
        "syncFailures_lyon": 1,
        "syncLastAttempt_lyon": 7,
    }
    assert again["syncFailures_tokyo"] == 3 and again["syncError_tokyo"] == 12


def test_left_stale_and_conflict():
    left, stale, conflict = record(
        [
            Outcome("/b", "paris", "lyon", LEFT, at=7),
            Outcome("/b", "paris", "tokyo", STALE, at=8),
            Outcome("/a", "paris", "tokyo", CONFLICT, at=9, incoming="/a.c", local=(4, 2_000_000)),
        ],
        FILES,
    )
    assert left == {"_id": "/b", "syncWait_lyon": left_reason("lyon"), "syncLastAttempt_lyon": 7}
    assert stale == {"_id": "/b", "syncLastAttempt_tokyo": 8}
    assert conflict["conflict_tokyo"] == state.conflict_record(9, "paris", "/a.c", 4, 2)


def test_record_reads_nothing_but_its_arguments():
    outcomes = [Outcome("/a", "paris", "tokyo", COPIED, at=1)]
    before = {k: dict(v) for k, v in FILES.items()}
    assert record(outcomes, FILES) == record(outcomes, FILES)
    assert before == FILES  # the elements are not changed in place
    with pytest.raises(ValueError, match="unknown outcome"):
        record([Outcome("/a", "paris", "tokyo", "lost")], FILES)


def test_site_keys_name_every_per_site_key_once():
    keys = state.SiteKeys("tokyo")
    names = [keys.synced, keys.error, keys.failures, keys.attempt, keys.wait]
    names += [keys.modified, keys.conflict, keys.wanted, keys.trashed]
    assert names == [p + "tokyo" for p in state.PREFIXES]
    assert all(state.site_of_key(n) == "tokyo" for n in names)
    assert state.site_keys("tokyo") is state.site_keys("tokyo")


@pytest.mark.parametrize(
    ("element", "site", "expected"),
    [
        ({"origin": "paris", "time": 5}, "paris", True),
        ({"origin": "paris", "time": 5, "deleted": True}, "paris", False),
        ({"origin": "paris", "time": 5, "synced_tokyo": 5}, "tokyo", True),
        ({"origin": "paris", "time": 9, "synced_tokyo": 5}, "tokyo", False),
        ({"origin": "paris", "time": 9, "modified_tokyo": 9}, "tokyo", True),
        ({"origin": "paris", "time": 9, "modified_tokyo": 9}, "paris", False),
    ],
)
def test_holds_current(element, site, expected):
    assert state.holds_current(element, site) is expected


def test_a_copy_changed_here_is_a_conflict_unless_it_is_the_origins_first():
    ms = 1_000_000  # ns per ms
    el = {"origin": "paris", "time": 5}
    assert state.changed_here(2000 * ms, el, "tokyo")  # never synced there: any copy
    assert not state.changed_here(2000 * ms, el, "paris")  # the origin's own first copy
    el = {"origin": "paris", "time": 5, "synced_paris": 1000}
    assert state.changed_here(2000 * ms, el, "paris") and not state.changed_here(
        900 * ms, el, "paris"
    )
