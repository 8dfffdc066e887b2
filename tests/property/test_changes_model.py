"""Random operation sequences through the ``Tracker`` on every backend: after any of
them, ``changes(since=k)`` from any position ``k`` the store went through equals the
model's latest change per visible id after ``k``.

The model does not know the seq numbers (they are the store's); it knows which step
wrote which ids, so it checks the ids, their ``deleted`` flags, that the answer's order
follows the steps, that paging gives the same answer, and that internal writes (the
settings element) move ``last_seq`` without showing.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import damas_core
from damas_core.errors import NotImplementedByBackend
from tests.conftest import BACKENDS, backend_url

IDS = ["/a", "/b", "/c", "/d/e.exr"]
ids = st.sampled_from(IDS)


class FeedModel(RuleBasedStateMachine):
    backend = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="damas-feed-"))
        try:
            self.t = damas_core.open(backend_url(self.backend, self.dir))
        except NotImplementedByBackend as e:
            pytest.skip(str(e))
        self.latest: dict[str, tuple[int, bool]] = {}  # id -> (step, deleted)
        self.links: dict[str, tuple[str, str]] = {}  # live link id -> (src, tgt)
        self.step = 0
        self.marks: list[tuple[int, int]] = [(0, 0)]  # (store position, after step)
        self.links_made = 0
        self.locked: set[str] = set()  # ids the tracker holds a lock on

    def teardown(self) -> None:
        self.t.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def wrote(self, written=(), deleted=()) -> None:
        self.step += 1
        for i in written:
            self.latest[i] = (self.step, False)
        for i in deleted:
            self.latest[i] = (self.step, True)
            self.links.pop(i, None)
            self.locked.discard(i)
        self.marks.append((self.t.storage.last_seq(), self.step))

    # -- operations ---------------------------------------------------------------------

    @rule(chosen=st.lists(ids, min_size=1, max_size=3, unique=True), n=st.integers(0, 3))
    def create(self, chosen, n):
        made = self.t.create([{"_id": i, "n": n} for i in chosen])
        self.wrote([e["_id"] for e in made if e is not None])

    @rule(i=ids, n=st.integers(0, 3))
    def update(self, i, n):
        done = self.t.update({"_id": i, "n": n})
        self.wrote([i] if done is not None else [])

    @rule(i=ids, n=st.integers(0, 3))
    def upsert(self, i, n):
        self.t.upsert({"_id": i, "n": n})
        self.wrote([i])

    @rule(i=ids)
    def delete(self, i):
        gone = self.t.delete(i)
        linked = [k for k, (s, g) in self.links.items() if i in (s, g)]
        self.wrote(deleted=[i, *linked] if gone is not None else [])

    @rule(src=ids, tgt=ids)
    def link(self, src, tgt):
        self.links_made += 1
        link_id = f"/links/{self.links_made}"
        self.t.create({"_id": link_id, "src_id": src, "tgt_id": tgt})
        self.links[link_id] = (src, tgt)
        self.wrote([link_id])

    @rule(i=ids)
    def publish(self, i):
        made = self.t.publish({"_id": i, "comment": "c", "origin": "o"}, with_history=True)
        self.wrote([e["_id"] for e in made] if made is not None else [])

    @rule(i=ids)
    def comment(self, i):
        made = self.t.comment({"#parent": i, "comment": "note"})
        self.wrote([made["_id"]] if made is not None else [])

    @rule(i=ids)
    def lock(self, i):
        done = self.t.lock(i)
        # Locking what one already holds is true and writes nothing.
        self.wrote([i] if done and i not in self.locked else [])
        if done:
            self.locked.add(i)

    @rule(i=ids)
    def unlock(self, i):
        done = self.t.unlock(i)
        self.wrote([i] if done else [])
        self.locked.discard(i)

    @rule(n=st.integers(0, 3))
    def hidden_write(self, n):
        self.t.set_setting("counter", n)  # the settings element: never in the feed
        self.wrote()

    # -- the check ----------------------------------------------------------------------

    @rule(data=st.data())
    def changes_from_any_position(self, data):
        position, after = data.draw(st.sampled_from(self.marks))
        expected = {i: d for i, (s, d) in self.latest.items() if s > after}
        answer = self.t.changes(since=position, limit=10_000)
        assert "reset" not in answer
        got = answer["changes"]
        assert {c["_id"]: c["deleted"] for c in got} == expected
        assert len(got) == len(expected)  # each id once
        steps = [self.latest[c["_id"]][0] for c in got]
        assert steps == sorted(steps)  # the store's order is the order of the writes
        seqs = [c["seq"] for c in got]
        assert seqs == sorted(seqs) and all(position < s <= answer["last_seq"] for s in seqs)
        assert answer["last_seq"] == self.marks[-1][0]
        limit = data.draw(st.integers(1, 4))
        since, paged = position, []
        while True:
            page = self.t.changes(since=since, limit=limit)
            if page["last_seq"] == since:
                break
            paged.extend(page["changes"])
            since = page["last_seq"]
        assert paged == got

    @invariant()
    def elements_are_current(self):
        answer = self.t.changes(limit=10_000, elements=True)
        for c in answer["changes"]:
            if not c["deleted"]:
                assert c["element"] == self.t.read(c["_id"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_changes_follow_the_model(backend):
    machine = type(f"FeedModel_{backend}", (FeedModel,), {"backend": backend})
    machine.TestCase.settings = settings(
        max_examples=20 if backend == "memory" else 8,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    machine.TestCase().runTest()
