"""What a non-admin sees never depends on what reads hide.

Hypothesis draws element sets, queries and sorts (the strategies of the compiler
differential test), then builds two stores holding the same public elements but
different private values: other ``password`` hashes and ``rsync_env`` values (present
on some elements in one store, absent or different in the other), another password
for the user, and a different (or no) settings element ``~damas``. A ``user`` runs the
same search, search_elements, search_one and search_mongo (sort, skip and limit
included) on both: the ids, their order, the counts, the elements and the errors must
be the same. It runs on one backend of each query engine: the Python predicate
(memory), SQL (SQLite) and MongoDB (mongomock).
"""

from __future__ import annotations

import tempfile
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import damas_core
from damas_core.elements import SETTINGS_ID
from damas_core.errors import DamasError
from damas_core.query.ast import And, Cmp, Eq, Exists, Node, Not, Or, Regex
from damas_core.query.mongo import to_mongo
from tests.property.test_differential import (
    KEYS,
    elements,
    patterns,
    queries,
    query_scalars,
    sorts,
    values,
)

#: One backend per query engine.
ENGINES = ["memory", "sqlite", "mongomock", "postgresql"]

secrets = st.fixed_dictionaries(
    {},
    optional={
        "password": st.text(alphabet="$argon2id1ab", max_size=12),
        "rsync_env": st.one_of(values, st.dictionaries(st.sampled_from(KEYS), values, max_size=2)),
    },
)
hidden = st.one_of(st.none(), st.dictionaries(st.sampled_from(KEYS), values, min_size=1))

PRIVATE = ["password", "rsync_env", "#password"]
private_paths = st.tuples(st.sampled_from(PRIVATE)) | st.tuples(
    st.sampled_from(PRIVATE), st.just("a")
)
private_leaves = st.one_of(
    st.builds(Exists, private_paths),
    st.builds(Eq, private_paths, query_scalars),
    st.builds(Cmp, private_paths, st.sampled_from(["<", ">="]), st.text("$a2", max_size=2)),
    st.builds(Regex, private_paths, patterns),
)
#: Queries on public keys, some with a term on a private key.
any_queries = st.one_of(
    queries,
    st.builds(lambda a, b: And((a, b)), queries, private_leaves),
    st.builds(lambda a, b: Or((a, Not(b))), queries, private_leaves),
)
#: Sorts on public keys, some on a private one.
any_sorts = st.one_of(
    sorts,
    st.lists(
        st.tuples(st.sampled_from(["a", *PRIVATE, "rsync_env.a"]), st.sampled_from([1, -1])),
        min_size=1,
        max_size=2,
        unique_by=lambda pair: pair[0],
    ).map(tuple),
)


@st.composite
def twin_stores(draw: Any) -> tuple[list[dict], list[dict]]:
    """Two element lists with the same public keys and different private values."""
    docs = [{"_id": f"/e{i:02d}", **d} for i, d in enumerate(draw(elements))]
    one, two = [], []
    for doc in docs:
        one.append({**doc, **draw(secrets)})
        two.append({**doc, **draw(secrets)})
    for side, password in ((one, "pw-one"), (two, "pw-two")):
        side.append(_user(password))
        settings_element = draw(hidden)
        if settings_element is not None:
            side.append({**settings_element, "_id": SETTINGS_ID})
    return one, two


def outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except DamasError as e:
        return type(e).__name__, str(e)


def seen(session: damas_core.Session, query: Node, sort: Any, skip: int, limit: int | None):
    """Everything the searches of ``session`` answer for this query, as data."""
    sort_list = [list(pair) for pair in sort] if sort else None
    try:
        mongo_query: Any = to_mongo(query)
    except DamasError:
        mongo_query = None  # a key MongoDB cannot name: left out of that leg
    return {
        "search": outcome(lambda: session.search(query, sort_list, skip, limit)),
        "elements": outcome(lambda: session.search_elements(query, sort_list, skip, limit)),
        "one": outcome(lambda: session.search_one(query)),
        "mongo": None
        if mongo_query is None
        else outcome(lambda: session.search_mongo(mongo_query, sort_list, limit or 0, skip)),
    }


def open_store(engine: str, directory: str, docs: list[dict]) -> damas_core.Tracker:
    """A fresh store on ``engine`` holding exactly ``docs``."""
    unique = uuid.uuid4().hex[:12]
    if engine == "postgresql":
        from tests.conftest import backend_url

        tracker = damas_core.open(backend_url("postgresql", directory))
        tracker.storage.insert_many(docs)
        return tracker
    url = {
        "memory": "memory://",
        "sqlite": f"sqlite://{directory}/{unique}.db",
        "mongomock": f"mongomock:///p{unique}?collection=node",
    }[engine]
    tracker = damas_core.open(url)
    tracker.storage.insert_many(docs)
    return tracker


def _user(password: str) -> dict:
    return {"_id": "@u", "class": "user", "password": f"$argon2id$v=19${password}"}


#: The settings element sorting first on a page of one: dropping it must not shorten
#: the page (nor change search_mongo's count).
SETTINGS_ON_THE_PAGE = (
    [{"_id": "/e00", "a": 2}, {"_id": "/e01", "a": 3}, _user("x"), {"_id": SETTINGS_ID, "a": 1}],
    [{"_id": "/e00", "a": 2}, {"_id": "/e01", "a": 3}, _user("y")],
)


@pytest.mark.parametrize("engine", ENGINES)
@example(stores=SETTINGS_ON_THE_PAGE, query=Exists(("a",)), sort=(("a", 1),), skip=0, limit=1)
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    stores=twin_stores(),
    query=any_queries,
    sort=st.one_of(st.none(), any_sorts),
    skip=st.integers(0, 2),
    limit=st.one_of(st.none(), st.integers(1, 2)),
)
def test_a_user_sees_nothing_of_private_values(engine, stores, query, sort, skip, limit):
    with tempfile.TemporaryDirectory() as directory:
        answers = []
        for docs in stores:
            tracker = open_store(engine, directory, docs)
            try:
                answers.append(seen(tracker.as_user("u"), query, sort, skip, limit))
            finally:
                tracker.close()
    assert answers[0] == answers[1]
