"""The authentication cache stays current through the change feed, also when the feed
dropped tombstones past the cache's position (it loads everything again)."""

from __future__ import annotations

import time

import damas_core
from damas_core.authcache import AuthCache


def test_the_cache_reloads_when_the_feed_dropped_what_it_had_not_read():
    tracker = damas_core.open("memory://", tombstone_retention=0)
    tracker.create([{"_id": "@ann", "class": "admin"}, {"_id": "/x"}])
    cache = AuthCache(tracker.storage)
    assert cache.account("@ann")["class"] == "admin"
    assert not cache.is_revoked("j1")
    # another process (here: the store itself) revokes and demotes, then a
    # compaction drops the tombstones past the cache's position
    other = AuthCache(tracker.storage)
    other.revoke("j1", None)
    tracker.update({"_id": "@ann", "class": "guest"})
    tracker.delete("/x")
    time.sleep(0.01)
    assert tracker.feed.compact() >= 1
    assert tracker.storage.horizon() > 0
    assert cache.account("@ann")["class"] == "guest"
    assert cache.is_revoked("j1")


def test_expired_revocations_are_removed_at_the_next_sign_out():
    tracker = damas_core.open("memory://")
    cache = AuthCache(tracker.storage)
    cache.revoke("old", int(time.time()) - 10)
    cache.revoke("new", None)
    assert tracker.storage.get("~revoked:old") is None
    assert not cache.is_revoked("old") and cache.is_revoked("new")
