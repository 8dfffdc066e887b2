"""Random operation sequences on every backend, compared with a plain-dict model.

The model is the specification of elements and operations (docs/guide.md) in a few lines: a dict of elements.
Each rule runs one operation on the tracker and on the model and compares the results
(``time`` is only checked for presence: the clock is not the model's).
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
from damas_core.query.parser import parse
from damas_core.query.predicate import to_predicate
from tests.conftest import BACKENDS, backend_url

IDS = ["/a", "/b", "/c", "/d/e.exr"]
LINKS = ["l1", "l2", "l3"]
USERS = ["alice", "bob"]
keys = st.sampled_from(["k", "n", "tags", "meta"])
scalars = st.one_of(st.integers(-5, 5), st.sampled_from(["x", "y", "12"]), st.booleans(), st.none())
values = st.one_of(
    scalars,
    st.lists(st.sampled_from(["x", "y", 1]), max_size=3),
    st.fixed_dictionaries({"v": st.integers(0, 3)}),
)
bodies = st.dictionaries(keys, values, max_size=3)
queries = st.one_of(
    st.just("*"),
    st.builds(
        lambda k, v: f"{k}:{v}", keys, st.sampled_from(["x", "y", "12", "1", "true", "null", "*"])
    ),
    st.builds(
        lambda k, o, v: f"{k}{o}{v}",
        st.sampled_from(["k", "n"]),
        st.sampled_from(["<", "<=", ">", ">="]),
        st.integers(-3, 3),
    ),
    st.builds(lambda k: f"-{k}:x", keys),
    st.builds(lambda a, b: f"k:{a} OR n:{b}", st.integers(-2, 2), st.integers(-2, 2)),
    st.just("src_id:*"),
    st.just("meta.v:2"),
)


def strip_time(e):
    if e is None:
        return None
    assert isinstance(e.get("time"), int)
    return {k: v for k, v in e.items() if k != "time"}


class TrackerModel(RuleBasedStateMachine):
    backend = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="damas-stateful-"))
        try:
            self.tracker = damas_core.open(backend_url(self.backend, self.tmp))
        except NotImplementedByBackend as e:
            shutil.rmtree(self.tmp, ignore_errors=True)
            pytest.skip(f"{self.backend} unavailable: {e}")
        # Users are created through the storage so no password hashing slows the run.
        self.tracker.storage.insert_many([{"_id": f"@{u}", "class": "user"} for u in USERS])
        self.model: dict[str, dict] = {f"@{u}": {"_id": f"@{u}", "class": "user"} for u in USERS}

    def teardown(self) -> None:
        self.tracker.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- rules ------------------------------------------------------------------------

    @rule(items=st.lists(st.tuples(st.sampled_from(IDS), bodies), min_size=1, max_size=4))
    def create(self, items):
        elements = [{"_id": i, **b} for i, b in items]
        got = self.tracker.create(elements)
        expected = []
        for e in elements:
            if e["_id"] in self.model:
                expected.append(None)
            else:
                stored = {**e, "author": "damas"}
                self.model[e["_id"]] = stored
                expected.append(stored)
        assert [strip_time(g) for g in got] == expected
        for g in got:
            if g is not None:
                self.model[g["_id"]]["time"] = g["time"]

    @rule(link=st.sampled_from(LINKS), src=st.sampled_from(IDS), tgt=st.sampled_from(IDS))
    def link(self, link, src, tgt):
        got = self.tracker.create({"_id": link, "src_id": src, "tgt_id": tgt})
        if link in self.model:
            assert got is None
        else:
            self.model[link] = got
            assert strip_time(got) == {"_id": link, "src_id": src, "tgt_id": tgt, "author": "damas"}

    @rule(i=st.sampled_from(IDS), body=bodies.filter(bool))
    def update(self, i, body):
        got = self.tracker.update({"_id": i, **body})
        if i not in self.model:
            assert got is None
            return
        e = self.model[i]
        for k, v in body.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        assert got == e

    @rule(i=st.sampled_from(IDS), body=bodies.filter(bool))
    def upsert(self, i, body):
        got = self.tracker.upsert({"_id": i, **body})
        if i in self.model:
            e = self.model[i]
            for k, v in body.items():
                if v is None:
                    e.pop(k, None)
                else:
                    e[k] = v
            assert got == e
        else:
            e = {"_id": i, **{k: v for k, v in body.items() if v is not None}, "author": "damas"}
            assert strip_time(got) == e
            self.model[i] = got

    @rule(ids=st.lists(st.sampled_from(IDS + LINKS), min_size=1, max_size=3))
    def delete(self, ids):
        got = self.tracker.delete(ids)
        expected = []
        for i in ids:
            if i in self.model:
                del self.model[i]
                expected.append(i)
            else:
                expected.append(None)
        gone = [i for i in expected if i is not None]
        for lid in [
            k for k, e in self.model.items() if e.get("src_id") in gone or e.get("tgt_id") in gone
        ]:
            del self.model[lid]
        assert got == expected

    @rule(user=st.sampled_from(USERS), ids=st.lists(st.sampled_from(IDS), min_size=1, max_size=3))
    def lock(self, user, ids):
        got = self.tracker.as_user(user).lock(ids)
        ok = all(i in self.model and self.model[i].get("lock") in (None, user) for i in ids)
        assert got is ok
        if ok:
            for i in ids:
                self.model[i]["lock"] = user

    @rule(user=st.sampled_from(USERS), ids=st.lists(st.sampled_from(IDS), min_size=1, max_size=3))
    def unlock(self, user, ids):
        got = self.tracker.as_user(user).unlock(ids)
        ok = all(i in self.model and self.model[i].get("lock") == user for i in ids)
        assert got is ok
        if ok:
            for i in ids:
                self.model[i].pop("lock", None)

    @rule(i=st.sampled_from(IDS))
    def publish(self, i):
        got = self.tracker.publish({"_id": i, "comment": "c", "origin": "o"})
        if i in self.model:
            assert got is None
            return
        self.model[i] = got
        # History children outlive a deleted file: only the new one is unknown to the model.
        child_ids = [c for c in self.tracker.search(f'#parent:"{i}"') if c not in self.model]
        assert len(child_ids) == 1
        self.model[child_ids[0]] = self.tracker.read(child_ids[0])
        assert self.model[child_ids[0]]["comment"] == "c"

    @rule(ids=st.lists(st.sampled_from(IDS + LINKS + ["/nope"]), max_size=4))
    def read(self, ids):
        assert self.tracker.read(ids) == [self.model.get(i) for i in ids]

    @rule(query=queries)
    def search(self, query):
        match = to_predicate(parse(query))
        expected = sorted(i for i, e in self.model.items() if match(e))
        assert self.tracker.search(query) == expected
        assert self.tracker.search_mongo({})["count"] == len(self.model)

    @rule(i=st.sampled_from(IDS), depth=st.integers(0, 3))
    def graph(self, i, depth):
        got = self.tracker.graph(i, depth=depth)
        if i not in self.model:
            assert got == []
            return
        nodes, links, frontier, level = {i}, {}, {i}, 0
        while frontier and (depth == 0 or level < depth):
            level += 1
            new = set()
            for lid, e in self.model.items():
                if e.get("tgt_id") in frontier and lid not in links:
                    links[lid] = e
                    src = e.get("src_id")
                    if src not in nodes:
                        nodes.add(src)
                        new.add(src)
            frontier = new
        got_nodes = {e["_id"] for e in got if "tgt_id" not in e or e["_id"] in nodes}
        assert got_nodes >= {n for n in nodes if n in self.model}
        assert {e["_id"] for e in got} == {n for n in nodes if n in self.model} | set(links)

    @invariant()
    def same_everything(self):
        assert self.tracker.search("*") == sorted(self.model)


@pytest.mark.parametrize("backend", BACKENDS)
def test_operation_sequences_match_the_model(backend):
    machine = type(f"TrackerModel_{backend}", (TrackerModel,), {"backend": backend})
    machine.TestCase.settings = settings(
        max_examples=25,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    machine.TestCase().runTest()
