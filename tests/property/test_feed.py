"""The change feed against a reference model, on every backend.

Random inserts, patches (some guarded), deletes and transaction blocks (some failing,
so rolled back) run on a store and on the model: a dict of elements plus each id's
latest ``(seq, deleted)``, one seq per write that changes an element, in call order.
Then ``changes(since=k)`` read in pages of random sizes must be the model's latest
change per id after ``k``, seq for seq. A backend without server transactions
(mongomock) undoes a failed block with more writes that others may see, and reserves
seqs it may leave unused: there the feed must agree with the elements (an id is a
tombstone exactly when it is gone) and read the same in pages as in one call.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from damas_core.backends.base import Patch, now_ms
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from damas_core.ordering import MISSING
from damas_core.registry import open_storage
from tests.conftest import BACKENDS, backend_url

IDS = st.sampled_from(["/a", "/b", "/c", "/d", "~s"])
GUARDS = st.one_of(st.none(), st.just(MISSING), st.integers(0, 2))
writes = st.one_of(
    st.tuples(st.just("insert"), st.lists(IDS, max_size=4)),
    st.tuples(st.just("patch"), st.lists(st.tuples(IDS, st.integers(0, 2), GUARDS), max_size=4)),
    st.tuples(st.just("delete"), st.lists(IDS, max_size=4)),
)


class Undo(Exception):
    """Fails a transaction block on purpose."""


class Model:
    def __init__(self) -> None:
        self.elements: dict[str, dict] = {}
        self.entries: dict[str, tuple[int, bool]] = {}
        self.seq = 0
        self.horizon = 0

    def copy(self) -> Model:
        other = Model()
        other.elements = {k: dict(v) for k, v in self.elements.items()}
        other.entries, other.seq, other.horizon = dict(self.entries), self.seq, self.horizon
        return other

    def record(self, id_: str, deleted: bool) -> None:
        self.seq += 1
        self.entries[id_] = (self.seq, deleted)

    def apply(self, kind: str, args: list) -> list[bool]:
        out = []
        if kind == "insert":
            for id_ in args:
                fresh = id_ not in self.elements
                if fresh:
                    self.elements[id_] = {}
                    self.record(id_, False)
                out.append(fresh)
        elif kind == "patch":
            for id_, n, guard in args:
                e = self.elements.get(id_)
                ok = e is not None and (guard is None or e.get("n", MISSING) == guard)
                if ok:
                    e["n"] = n
                    self.record(id_, False)
                out.append(ok)
        else:
            for id_ in args:
                gone = self.elements.pop(id_, None) is not None
                if gone:
                    self.record(id_, True)
                out.append(gone)
        return out

    def changes(self, since: int) -> list[tuple[int, str, bool]]:
        return sorted((s, i, d) for i, (s, d) in self.entries.items() if s > since)


def run(store, kind: str, args: list) -> list[bool]:
    if kind == "insert":
        return store.insert_many([{"_id": i} for i in args])
    if kind == "patch":
        return store.patch_many(
            [Patch(i, set={"n": n}, expect=None if g is None else {"n": g}) for i, n, g in args]
        )
    return store.delete_many(args)


class FeedModel(RuleBasedStateMachine):
    backend = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="damas-feed-"))
        self.store = open_storage(backend_url(self.backend, self.tmp))
        self.exact = self.store.atomic
        self.model = Model()

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(write=writes)
    def write(self, write):
        kind, args = write
        assert run(self.store, kind, args) == self.model.apply(kind, args)

    @rule(block=st.lists(writes, min_size=1, max_size=4), fail=st.booleans())
    def transaction(self, block, fail):
        after = self.model.copy()
        try:
            with self.store.transaction():
                for kind, args in block:
                    assert run(self.store, kind, args) == after.apply(kind, args)
                if fail:
                    raise Undo
        except Undo:
            return  # the elements are as before (without transactions, undone by writes)
        self.model = after

    @rule()
    def drop_tombstones(self):
        dropped = self.store.drop_tombstones(now_ms() + 1000)
        dead = [(s, i) for i, (s, d) in self.model.entries.items() if d]
        if self.exact:
            assert dropped == len(dead)
        for s, i in dead:
            del self.model.entries[i]
            self.model.horizon = max(self.model.horizon, s)

    @rule(data=st.data())
    def read_in_pages(self, data):
        last_seq = self.store.last_seq()
        since = data.draw(st.integers(0, last_seq + 2), label="since")
        got, position = [], since
        while True:
            limit = data.draw(st.integers(1, 6), label="limit")
            last, page = self.store.changes(position, limit)
            assert len(page) <= limit
            if not page:
                assert last == last_seq
                break
            got += page
            position = last
        assert got == self.store.changes(since, 10_000)[1]
        seqs = [s for s, _, _ in got]
        assert seqs == sorted(set(seqs)) and all(s > since for s in seqs)
        if self.exact:
            assert got == self.model.changes(since)
            assert last_seq == self.model.seq
            assert self.store.horizon() == self.model.horizon

    @invariant()
    def feed_agrees_with_the_elements(self):
        stored = {e["_id"] for e in self.store.scan()}
        if self.exact:
            assert stored == set(self.model.elements)
        live = {i for _, i, d in self.store.changes(0, 10_000)[1] if not d}
        assert live == stored


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_feed_matches_the_model(backend):
    machine = type(f"FeedModel_{backend}", (FeedModel,), {"backend": backend})
    machine.TestCase.settings = settings(
        max_examples=30,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    machine.TestCase().runTest()
