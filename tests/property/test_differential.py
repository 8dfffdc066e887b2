"""Differential test of the three query compilers: one AST, three engines, same ids.

Hypothesis generates queries (every node type, dotted paths, ``#`` keys, regexes from
a safe alphabet, typed values, negation) and element sets (missing keys, ``null``,
mixed int/float/bool/str, arrays of scalars and of objects, nested objects). The
Python predicate is the reference; the MongoDB filter runs on mongomock and the SQL on
SQLite, and each must select the same ids. Sorting across types is compared too.
"""

from __future__ import annotations

import importlib.util
import sqlite3
import uuid

import mongomock
import orjson
import pytest
from damas_core.backends.base import select
from damas_core.backends.mongodb import MongoStorage, _mongomock_deviates
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from damas_core.query.ast import All, And, Cmp, Eq, Exists, In, Node, Not, Or, Regex, walk
from damas_core.query.mongo import to_mongo
from damas_core.query.predicate import to_predicate

HAS_SQL = importlib.util.find_spec("damas_core.query.sql") is not None

KEYS = ["a", "b", "#p"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 12),
    st.sampled_from([0.5, 1.0, 12.0, -1.5]),
    st.text(alphabet="aAb1\n", max_size=3),
    st.sampled_from(["1", "12", "true", "null"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
    ),
    max_leaves=6,
)
elements = st.lists(st.dictionaries(st.sampled_from(KEYS), values, max_size=3), max_size=8)
paths = st.lists(st.sampled_from(KEYS), min_size=1, max_size=2).map(tuple)
query_scalars = scalars.filter(lambda v: not isinstance(v, float) or v == v)
patterns = st.sampled_from(["a", "^a", "b$", "a.b", "[ab]+", "^$", "A", "1", "^a$", "\\d"])

leaves = st.one_of(
    st.just(All()),
    st.builds(Exists, paths),
    st.builds(Eq, paths, query_scalars),
    st.builds(In, paths, st.lists(query_scalars, min_size=1, max_size=3).map(tuple)),
    st.builds(
        Cmp,
        paths,
        st.sampled_from(["<", "<=", ">", ">="]),
        st.one_of(st.integers(-2, 12), st.sampled_from([0.5, 1.0]), st.text("aAb1", max_size=2)),
    ),
    st.builds(Regex, paths, patterns, st.sampled_from(["", "i", "m", "s", "g", "is"])),
)
queries = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.builds(And, st.lists(inner, min_size=1, max_size=3).map(tuple)),
        st.builds(Or, st.lists(inner, min_size=1, max_size=3).map(tuple)),
    ),
    max_leaves=5,
)
sorts = st.lists(
    st.tuples(st.sampled_from(["a", "b", "#p", "a.b"]), st.sampled_from([1, -1])),
    min_size=1,
    max_size=2,
).map(tuple)


def with_ids(docs: list[dict]) -> list[dict]:
    return [{"_id": f"/e{i:02d}", **d} for i, d in enumerate(docs)]


def by_predicate(docs: list[dict], query: Node) -> list[str]:
    match = to_predicate(query)
    return sorted(d["_id"] for d in docs if match(d))


def has_bool(value: object) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, dict):
        return any(map(has_bool, value.values()))
    if isinstance(value, list | tuple):
        return any(map(has_bool, value))
    return False


def mongomock_misreads(query: Node, docs: list[dict] | None = None) -> bool:
    """Whether mongomock may answer ``query`` on ``docs`` unlike a real MongoDB server.

    - mongomock compares with Python's ``==``, so ``{"a": 1}`` matches ``true``: an
      equality on a number or a boolean is only compared when no boolean is involved
      (in the query or in the elements);
    - ``{"a.b": null}`` misses elements where ``a`` is ``null`` or a scalar (a real
      server matches those, ``a.b`` being missing there): never compared;
    - a ``$regex`` runs on Python's ``re`` instead of PCRE; the patterns generated
      here mean the same in both.
    The MongoDB backend answers such queries with the Python predicate on mongomock
    (``_mongomock_deviates``); here they are left out of the MongoDB leg only.
    """
    if not _mongomock_deviates(query):
        return False
    for node in walk(query):
        if isinstance(node, Eq | In):
            vals = (node.value,) if isinstance(node, Eq) else node.values
            if None in vals and len(node.path) > 1:
                return True
    query_values = [
        v
        for n in walk(query)
        if isinstance(n, Eq | In)
        for v in ((n.value,) if isinstance(n, Eq) else n.values)
    ]
    return docs is None or has_bool(docs) or has_bool(query_values)


def by_mongo(docs: list[dict], query: Node) -> list[str]:
    collection = mongomock.MongoClient().db.node
    if docs:
        collection.insert_many([orjson.loads(orjson.dumps(d)) for d in docs])
    return sorted(d["_id"] for d in collection.find(to_mongo(query), {"_id": 1}))


def sql_connection(docs: list[dict]) -> sqlite3.Connection:
    from damas_core.query.sql import register_functions

    conn = sqlite3.connect(":memory:")
    register_functions(conn)
    conn.execute("CREATE TABLE elements (id TEXT PRIMARY KEY, doc TEXT)")
    conn.executemany(
        "INSERT INTO elements VALUES (?, ?)", [(d["_id"], orjson.dumps(d).decode()) for d in docs]
    )
    return conn


def by_sql(docs: list[dict], query: Node, sort=(), **kwargs) -> list[str]:
    from damas_core.query.sql import to_sql

    q = to_sql(query, sort, **kwargs)
    return [row[0] for row in sql_connection(docs).execute(q.sql, q.params)]


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(elements, queries)
def test_mongo_filter_selects_what_the_predicate_selects(docs, query):
    docs = with_ids(docs)
    note(f"mongo filter: {to_mongo(query)}")
    if mongomock_misreads(query, docs):
        return
    assert by_mongo(docs, query) == by_predicate(docs, query)


@pytest.mark.skipif(not HAS_SQL, reason="damas_core.query.sql (the SQL compiler) is not there yet")
@SETTINGS
@given(elements, queries)
def test_sql_selects_what_the_predicate_selects(docs, query):
    docs = with_ids(docs)
    assert by_sql(docs, query) == by_predicate(docs, query)


@SETTINGS
@given(elements, queries, sorts)
def test_mongodb_backend_sorts_like_the_common_order(docs, query, sort):
    docs = with_ids(docs)
    store = MongoStorage(f"mongomock://diff{uuid.uuid4().hex[:8]}/db")
    try:
        if docs:
            store.insert_many(docs)
        expected = [e["_id"] for e in select(docs, query, sort, 0, None)]
        if any(isinstance(n, Regex) for n in walk(query)) or mongomock_misreads(query):
            query = In(("_id",), tuple(expected)) if expected else Not(All())
        assert store.find(query, sort) == expected
        assert store.find(query, sort, skip=1, limit=2) == expected[1:3]
    finally:
        store.close()


@pytest.mark.skipif(not HAS_SQL, reason="damas_core.query.sql (the SQL compiler) is not there yet")
@SETTINGS
@given(elements, queries, sorts)
def test_sql_sorts_like_the_common_order(docs, query, sort):
    docs = with_ids(docs)
    expected = [e["_id"] for e in select(docs, query, sort, 0, None)]
    assert by_sql(docs, query, sort) == expected


@pytest.mark.parametrize(
    ("docs", "query"),
    [
        # the cases the generators found hardest, kept as regression examples
        ([{"a": True}, {"a": 1}, {"a": "1"}], In(("a",), (1, "1"))),
        ([{"a": [{"b": 1}, {"b": "x"}]}, {"a": {"b": [2]}}], Cmp(("a", "b"), ">", 0)),
        ([{"a": None}, {}, {"a": [None]}, {"a": []}], Not(Eq(("a",), None))),
        ([{"#p": "A\nb"}, {"#p": ["x", "ab"]}], Regex(("#p",), "^b", "im")),
    ],
)
def test_known_cases_agree(docs, query):
    docs = with_ids(docs)
    expected = by_predicate(docs, query)
    if not mongomock_misreads(query, docs):
        assert by_mongo(docs, query) == expected
    if HAS_SQL:
        assert by_sql(docs, query) == expected


# -- PostgreSQL: the jsonpath compiler on a real server ----------------------------------


@pytest.fixture(scope="module")
def pg_store():
    from tests import postgres_server

    url = postgres_server.store_url()
    if url is None:
        pytest.skip(f"no PostgreSQL here: {postgres_server.why_not()}")
    from damas_core.registry import open_storage

    # "a" and "b" declared: their comparisons go through the expression indexes,
    # "#p"'s through the path test.
    store = open_storage(url, indexes=["a", "b"])
    yield store
    store.close()


def by_postgresql(store, docs: list[dict], query: Node, sort=(), **kwargs) -> list[str]:
    """``store.find`` over exactly ``docs``. Without a regex the answer is SQL alone
    (:attr:`Where.recheck` is false and no row is lossy), so this holds the compiled
    condition itself to the predicate."""
    store._connection().execute("DELETE FROM elements")
    if docs:
        store.insert_many(docs)
    return store.find(query, sort, **kwargs)


@SETTINGS
@given(elements, queries)
def test_postgresql_selects_what_the_predicate_selects(pg_store, docs, query):
    from damas_core.query.postgres import to_where

    docs = with_ids(docs)
    note(f"postgresql: {to_where(query, ('a', 'b'))}")
    assert by_postgresql(pg_store, docs, query) == by_predicate(docs, query)


@SETTINGS
@given(elements, queries, sorts)
def test_postgresql_sorts_like_the_common_order(pg_store, docs, query, sort):
    docs = with_ids(docs)
    expected = [e["_id"] for e in select(docs, query, sort, 0, None)]
    assert by_postgresql(pg_store, docs, query, sort) == expected
    assert pg_store.find(query, sort, skip=1, limit=2) == expected[1:3]


@pytest.mark.parametrize(
    ("docs", "query"),
    [
        ([{"a": [[1]]}, {"a": [["x"]]}], In(("a",), (1, "x"))),  # lax unwraps twice
        ([{"a": [[{"b": 1}]]}, {"a": [{"b": 1}]}], Exists(("a", "b"))),
        ([{"a": [3]}, {"a": [{"c": 1}]}], Eq(("a", "b"), None)),
        ([{"a": "\u00e9"}, {"a": "z"}, {"a": "Z"}], Cmp(("a",), ">", "a")),
        ([{"a": "x\x00"}, {"a": "x\ufffd"}], Eq(("a",), "x\ufffd")),
    ],
)
def test_postgresql_known_cases_agree(pg_store, docs, query):
    docs = with_ids(docs)
    assert by_postgresql(pg_store, docs, query) == by_predicate(docs, query)
