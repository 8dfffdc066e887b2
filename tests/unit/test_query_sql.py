"""The AST → SQL compiler, run on a real SQLite database and checked against the
Python predicate (the reference semantics of ``damas_core.query.ast``)."""

from __future__ import annotations

import sqlite3

import orjson
import pytest
from damas_core.backends.base import resolve_first
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from damas_core.ordering import sort_key
from damas_core.query.ast import All, And, Cmp, Eq, Exists, In, Node, Not, Or, Regex
from damas_core.query.predicate import to_predicate
from damas_core.query.sql import BOOL_BLOBS, json_path, register_functions, to_sql, to_where

HOSTILE = "'); DROP TABLE elements; --"

DOCS = [
    {"_id": "/01", "type": "shot", "n": 12, "tags": ["a", "b"]},
    {"_id": "/02", "type": "asset", "n": 12.0, "tags": []},
    {"_id": "/03", "type": ["shot", "asset"], "n": "12", "flag": True},
    {"_id": "/04", "n": True, "flag": 1, "deep": {"x": {"y": 3}}},
    {"_id": "/05", "n": None, "flag": False, "deep": [{"x": 1}, {"z": 2}, 7, [{"x": 9}]]},
    {"_id": "/06", "n": [1, None, "x"], "deep": {"x": [4, 5]}, "#parent": "/01"},
    {"_id": "/07", "n": {"k": 1}, "deep": [{"x": {"y": [3, 30]}}], "é": "ü", 'q"k': "v"},
    {"_id": "/08", "n": -3.5, "type": "Shot", "#parent": ["/01", "/02"], HOSTILE: HOSTILE},
    {"_id": "/09", "n": 2**62, "type": "", "a\\b": 1, "x.y": "dot"},
    {"_id": "/10"},
]


def database(docs: list[dict] = DOCS, indexed: tuple[str, ...] = ()) -> sqlite3.Connection:
    """A real SQLite database in the backend's shape holding ``docs``."""
    conn = sqlite3.connect(":memory:")
    register_functions(conn)
    conn.execute("CREATE TABLE elements (id TEXT PRIMARY KEY, doc TEXT NOT NULL)")
    conn.execute("CREATE TABLE element_index (key, value, id)")
    for d in docs:
        conn.execute("INSERT INTO elements VALUES (?, ?)", (d["_id"], orjson.dumps(d).decode()))
        for key in indexed:
            v = d.get(key)
            for m in v if isinstance(v, list) else [v]:
                if m is not None and not isinstance(m, dict | list):
                    value = BOOL_BLOBS[m] if isinstance(m, bool) else m
                    conn.execute(
                        "INSERT INTO element_index VALUES (?, ?, ?)", (key, value, d["_id"])
                    )
    return conn


def expected(docs: list[dict], node: Node, sort=(), skip=0, limit=None) -> list[str]:
    match = to_predicate(node)
    hits = sorted((d for d in docs if match(d)), key=lambda d: d["_id"])
    for key, direction in reversed(sort):
        path = tuple(key.split("."))
        hits.sort(key=lambda d, p=path: sort_key(resolve_first(d, p)), reverse=direction < 0)
    ids = [d["_id"] for d in hits]
    return ids[skip : None if limit is None else skip + limit]


def run(conn: sqlite3.Connection, node: Node, sort=(), skip=0, limit=None, indexed=()) -> list[str]:
    sql, params = to_sql(node, sort, skip, limit, indexed=indexed)
    return [row[0] for row in conn.execute(sql, params)]


CASES = [
    All(),
    Exists(("flag",)),
    Exists(("deep", "x")),
    Exists(("deep", "x", "y")),
    Eq(("type",), "shot"),
    Eq(("n",), 12),
    Eq(("n",), 12.0),
    Eq(("n",), True),
    Eq(("flag",), 1),
    Eq(("flag",), False),
    Eq(("n",), None),
    Eq(("n",), "x"),
    Eq(("deep", "x"), 1),
    Eq(("deep", "x"), 4),
    Eq(("deep", "x"), None),
    Eq(("deep", "x", "y"), 30),
    Eq(("deep", "x"), 9),
    Eq(("#parent",), "/01"),
    Eq(("é",), "ü"),
    Eq(('q"k',), "v"),
    Eq(("a\\b",), 1),
    Eq(("x.y",), "dot"),
    Eq((HOSTILE,), HOSTILE),
    In(("n",), (12, "12")),
    In(("n",), (None, True)),
    In(("type",), ()),
    Cmp(("n",), ">", 0),
    Cmp(("n",), "<=", 12),
    Cmp(("n",), ">=", "1"),
    Cmp(("type",), "<", "a"),
    Cmp(("deep", "x", "y"), ">", 10),
    Regex(("type",), "^s"),
    Regex(("type",), "^s", "i"),
    Regex(("n",), "1"),
    Not(Eq(("type",), "shot")),
    Not(Cmp(("n",), ">", 0)),
    Not(Exists(("deep", "x"))),
    And((Eq(("type",), "shot"), Exists(("tags",)))),
    Or((Eq(("n",), True), Eq(("type",), "asset"))),
    Not(Or((Regex(("type",), "s"), Eq(("n",), None)))),
]


@pytest.mark.parametrize("node", CASES, ids=repr)
def test_each_node_matches_the_predicate(node: Node) -> None:
    conn = database()
    assert run(conn, node) == expected(DOCS, node)


@pytest.mark.parametrize("node", [c for c in CASES if isinstance(c, Eq | In)], ids=repr)
def test_indexed_equality_matches_the_predicate(node: Node) -> None:
    keys = ("type", "n", "flag", "#parent", HOSTILE)
    conn = database(indexed=keys)
    assert run(conn, node, indexed=keys) == expected(DOCS, node)


def test_a_bare_number_matches_the_number_and_the_string() -> None:
    conn = database()
    assert run(conn, In(("n",), (12, "12"))) == ["/01", "/02", "/03"]


def test_true_is_not_one() -> None:
    conn = database()
    assert run(conn, Eq(("flag",), True)) == ["/03"]
    assert run(conn, Eq(("flag",), 1)) == ["/04"]


def test_queries_of_one_shape_share_the_sql_but_not_the_values() -> None:
    conn = database()
    shot, asset = to_sql(Eq(("type",), "shot")), to_sql(Eq(("type",), "asset"))
    assert shot.sql == asset.sql and shot.params != asset.params
    assert run(conn, Eq(("type",), "shot")) == ["/01", "/03"]
    assert run(conn, Eq(("type",), "asset")) == ["/02", "/03"]
    assert run(conn, All(), skip=1, limit=2) == ["/02", "/03"]
    assert run(conn, All(), skip=2, limit=1) == ["/03"]


def test_to_where_counts() -> None:
    conn = database()
    where, params = to_where(Eq(("type",), "shot"))
    assert conn.execute(f"SELECT count(*) FROM elements WHERE {where}", params).fetchone() == (2,)


SORTS = [
    (("n", 1),),
    (("n", -1),),
    (("type", 1), ("n", -1)),
    (("deep.x", 1),),
    (("é", -1),),
    ((HOSTILE, 1),),
]


@pytest.mark.parametrize("sort", SORTS, ids=repr)
def test_sort_across_types_then_id(sort) -> None:
    conn = database()
    assert run(conn, All(), sort) == expected(DOCS, All(), sort)


def test_sort_order_of_the_brackets() -> None:
    values = [True, "b", 2, None, [1], {"a": 1}, 1.5, False, "B", [0, 5], {"a": 0}]
    docs = [{"_id": f"/{i:02}", "v": v} for i, v in enumerate(values)] + [{"_id": "/zz"}]
    conn = database(docs)
    # null and missing, numbers, strings by code point, objects, arrays, booleans.
    order = ["/03", "/zz", "/06", "/02", "/08", "/01", "/10", "/05", "/09", "/04", "/07", "/00"]
    assert run(conn, All(), (("v", 1),)) == order
    assert run(conn, All(), (("v", -1),)) == expected(docs, All(), (("v", -1),))


@pytest.mark.parametrize(("skip", "limit"), [(0, 3), (2, None), (4, 2), (20, 5)])
def test_skip_and_limit(skip: int, limit: int | None) -> None:
    conn = database()
    assert run(conn, All(), (("n", 1),), skip, limit) == expected(
        DOCS, All(), (("n", 1),), skip, limit
    )


def test_every_value_and_key_is_a_bound_parameter() -> None:
    node = And(
        (
            Eq(("KEYONE",), "VALUEONE"),
            In(("KEY.TWO",), (987654, "VALUETWO", True)),
            Cmp(("KEY THREE",), ">", "VALUETHREE"),
            Regex(('KEY"FOUR',), "PATTERNFOUR", "i"),
            Exists(("KEYFIVE",)),
        )
    )
    sql, params = to_sql(node, (("SORTKEY", -1),), skip=13, limit=17, indexed=["KEYONE"])
    for text in ("KEY", "VALUE", "PATTERN", "987654", "SORTKEY", "13", "17"):
        assert text not in sql
    assert "VALUEONE" in params and 987654 in params and "PATTERNFOUR" in params
    assert '$."KEY THREE"' in params and 'KEY"FOUR' in params
    assert sql.count("?") == len(params)


def test_hostile_keys_and_values_are_harmless() -> None:
    conn = database()
    for node in (
        Eq((HOSTILE,), HOSTILE),
        Regex((HOSTILE,), "DROP"),
        Cmp((HOSTILE, HOSTILE), ">", HOSTILE),
        Not(Exists((HOSTILE,))),
    ):
        assert run(conn, node, ((HOSTILE, 1),)) == expected(DOCS, node, ((HOSTILE, 1),))
    assert conn.execute("SELECT count(*) FROM elements").fetchone() == (len(DOCS),)


def test_json_paths_quote_keys() -> None:
    assert json_path(("#parent",)) == '$."#parent"'
    assert json_path(("a.b", "c d")) == '$."a.b"."c d"'
    assert json_path(('a"b',)) is None
    assert json_path(("a\\b",)) is None
    assert json_path(("é",)) is None


def test_integers_beyond_64_bits_in_a_query_are_bound_as_reals() -> None:
    conn = database()
    node = Cmp(("n",), "<", 2**70)
    assert float(2**70) in to_sql(node).params
    assert run(conn, node) == expected(DOCS, node)


# -- differential: the compiled SQL and the predicate agree on generated data --------

keys = st.sampled_from(["a", "b", "#p", 'q"', "x.y", "é"])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, 1.0, 2.5, -1.5]),
    st.sampled_from(["", "a", "b", "1", "2", "ab", "Ab", "é"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=6,
)
paths = st.lists(keys, min_size=1, max_size=3).map(tuple)
leaves = st.one_of(
    st.builds(Eq, paths, scalars),
    st.builds(In, paths, st.lists(scalars, max_size=3).map(tuple)),
    st.builds(
        Cmp,
        paths,
        st.sampled_from(["<", "<=", ">", ">="]),
        st.one_of(st.integers(-3, 3), st.sampled_from([1.5, "a", "b", ""])),
    ),
    st.builds(Regex, paths, st.sampled_from(["a", "^b", "é$", "A"]), st.sampled_from(["", "i"])),
    st.builds(Exists, paths),
    st.just(All()),
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
    st.tuples(st.sampled_from(["a", "b", "a.b", 'q"', "#p.a"]), st.sampled_from([1, -1])),
    max_size=2,
).map(tuple)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.dictionaries(keys, values, max_size=4), max_size=6),
    queries,
    sorts,
    st.booleans(),
)
def test_sql_agrees_with_the_predicate(docs, node, sort, use_index) -> None:
    docs = [dict(d, _id=f"/{i}") for i, d in enumerate(docs)]
    indexed = ("a", 'q"') if use_index else ()
    conn = database(docs, indexed)
    assert run(conn, node, sort, indexed=indexed) == expected(docs, node, sort)
