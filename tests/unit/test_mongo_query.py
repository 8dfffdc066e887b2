"""search_mongo query dicts → AST, and sort specifications → Sort."""

from __future__ import annotations

import re

import pytest

from damas_core.errors import BadRequest, NotImplementedByBackend
from damas_core.query import (
    All,
    And,
    Cmp,
    Eq,
    Exists,
    In,
    Not,
    Or,
    Regex,
    from_mongo,
    normalize_sort,
    to_predicate,
)
from damas_core.query.mongo_query import regex_string

# -- equality, keys --------------------------------------------------------------------------


def test_empty_query_is_everything():
    assert from_mongo({}) == All()


def test_implicit_equality_and_dotted_keys():
    assert from_mongo({"type": "shot"}) == Eq(("type",), "shot")
    assert from_mongo({"a.b.c": 1}) == Eq(("a", "b", "c"), 1)
    assert from_mongo({"#parent": "/p"}) == Eq(("#parent",), "/p")
    assert from_mongo({"k": None}) == Eq(("k",), None)
    assert from_mongo({"k": True}) == Eq(("k",), True)
    assert from_mongo({"a": 1, "b": "x"}) == And((Eq(("a",), 1), Eq(("b",), "x")))


# -- damas-core's regex strings -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("REGEX_^/project/", ("^/project/", "")),
        ("REGEX_", ("", "")),
        ("RX_^sh_RXi", ("^sh", "i")),
        ("RX_^sh_RX", ("^sh", "")),
        ("RX_a_RX_b_RXgi", ("a_RX_b", "gi")),
        ("RX_nodelimiter", ("nodelimiter", "")),
        ("RX__RXm", ("", "m")),
        ("plain", None),
        ("regex_lower", None),
        ("xREGEX_", None),
    ],
)
def test_regex_strings(text, parts):
    assert regex_string(text) == parts


def test_regex_strings_anywhere_become_regexes():
    assert from_mongo({"name": "REGEX_^sh"}) == Regex(("name",), "^sh", "")
    assert from_mongo({"name": "RX_^sh_RXi"}) == Regex(("name",), "^sh", "i")
    assert from_mongo({"name": {"$eq": "REGEX_x"}}) == Regex(("name",), "x", "")
    assert from_mongo({"name": {"$ne": "REGEX_x"}}) == Not(Regex(("name",), "x", ""))
    assert from_mongo({"name": {"$not": "RX_x_RXi"}}) == Not(Regex(("name",), "x", "i"))
    assert from_mongo({"$or": [{"a": "REGEX_y"}]}) == Regex(("a",), "y", "")
    assert from_mongo({"name": {"$in": ["a", "REGEX_^b"]}}) == Or(
        (In(("name",), ("a",)), Regex(("name",), "^b", ""))
    )
    assert from_mongo({"name": {"$nin": ["REGEX_^b"]}}) == Not(Regex(("name",), "^b", ""))


def test_python_compiled_patterns_are_regexes():
    assert from_mongo({"n": re.compile("^a", re.I | re.S)}) == Regex(("n",), "^a", "is")
    with pytest.raises(NotImplementedByBackend, match="x"):
        from_mongo({"n": re.compile("a", re.X)})


def test_regex_operator_with_options():
    assert from_mongo({"n": {"$regex": "^a"}}) == Regex(("n",), "^a", "")
    assert from_mongo({"n": {"$regex": "^a", "$options": "im"}}) == Regex(("n",), "^a", "im")
    assert from_mongo({"n": {"$regex": "RX_^a_RXi", "$options": "mi"}}) == Regex(("n",), "^a", "im")
    with pytest.raises(NotImplementedByBackend, match="option x"):
        from_mongo({"n": {"$regex": "a", "$options": "x"}})
    with pytest.raises(BadRequest, match="unknown regex option"):
        from_mongo({"n": {"$regex": "a", "$options": "q"}})
    with pytest.raises(BadRequest, match=r"\$options needs \$regex"):
        from_mongo({"n": {"$options": "i"}})
    with pytest.raises(BadRequest, match=r"\$regex needs a string"):
        from_mongo({"n": {"$regex": 5}})
    with pytest.raises(BadRequest, match="invalid regex"):
        from_mongo({"n": {"$regex": "("}})
    with pytest.raises(BadRequest, match="invalid regex"):
        from_mongo({"n": "REGEX_(?<=a)"})
    with pytest.raises(BadRequest):
        from_mongo({"n": "RX_a_RXz"})


# -- operators ----------------------------------------------------------------------------------


def test_comparison_operators():
    assert from_mongo({"n": {"$gt": 1}}) == Cmp(("n",), ">", 1)
    assert from_mongo({"n": {"$gte": 1.5}}) == Cmp(("n",), ">=", 1.5)
    assert from_mongo({"n": {"$lt": "m"}}) == Cmp(("n",), "<", "m")
    assert from_mongo({"n": {"$lte": -2}}) == Cmp(("n",), "<=", -2)
    assert from_mongo({"n": {"$gt": 1, "$lt": 5}}) == And(
        (Cmp(("n",), ">", 1), Cmp(("n",), "<", 5))
    )


def test_comparisons_with_booleans_and_null_stay_in_their_type():
    assert from_mongo({"b": {"$gt": False}}) == Eq(("b",), True)
    assert from_mongo({"b": {"$gte": False}}) == In(("b",), (False, True))
    assert from_mongo({"b": {"$lt": False}}) == In(("b",), ())
    assert from_mongo({"b": {"$lte": False}}) == Eq(("b",), False)
    assert from_mongo({"b": {"$gte": None}}) == Eq(("b",), None)
    assert from_mongo({"b": {"$gt": None}}) == In(("b",), ())


def test_eq_ne_in_nin_exists():
    assert from_mongo({"k": {"$eq": 3}}) == Eq(("k",), 3)
    assert from_mongo({"k": {"$ne": 3}}) == Not(Eq(("k",), 3))
    assert from_mongo({"k": {"$in": [1, "a", None]}}) == In(("k",), (1, "a", None))
    assert from_mongo({"k": {"$in": []}}) == In(("k",), ())
    assert from_mongo({"k": {"$nin": [1]}}) == Not(In(("k",), (1,)))
    assert from_mongo({"k": {"$exists": True}}) == Exists(("k",))
    assert from_mongo({"k": {"$exists": False}}) == Not(Exists(("k",)))
    assert from_mongo({"k": {"$exists": 0}}) == Not(Exists(("k",)))


def test_not_on_a_key():
    assert from_mongo({"n": {"$not": {"$gt": 5}}}) == Not(Cmp(("n",), ">", 5))
    assert from_mongo({"n": {"$not": {"$regex": "^a", "$options": "i"}}}) == Not(
        Regex(("n",), "^a", "i")
    )


def test_logical_operators():
    a, b = Eq(("a",), 1), Eq(("b",), 2)
    assert from_mongo({"$and": [{"a": 1}, {"b": 2}]}) == And((a, b))
    assert from_mongo({"$or": [{"a": 1}, {"b": 2}]}) == Or((a, b))
    assert from_mongo({"$nor": [{"a": 1}, {"b": 2}]}) == Not(Or((a, b)))
    assert from_mongo({"$or": [{"a": 1}]}) == a
    assert from_mongo({"$and": [{"a": 1, "b": 2}, {"c": 3}]}) == And((a, b, Eq(("c",), 3)))
    assert from_mongo({"$and": [{}]}) == All()
    assert from_mongo({"x": "y", "$or": [{"a": 1}, {"b": 2}]}) == And((Eq(("x",), "y"), Or((a, b))))


# -- 501: valid MongoDB this library does not run -----------------------------------------------------


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"$where": "this.a == 1"}, "$where"),
        ({"$text": {"$search": "x"}}, "$text"),
        ({"$expr": {"$eq": ["$a", 1]}}, "$expr"),
        ({"$comment": "x"}, "$comment"),
        ({"a": {"$elemMatch": {"b": 1}}}, "$elemMatch"),
        ({"a": {"$size": 2}}, "$size"),
        ({"a": {"$type": "string"}}, "$type"),
        ({"a": {"$all": [1]}}, "$all"),
        ({"a": {"$mod": [2, 0]}}, "$mod"),
        ({"a": {"$gt": 1, "$size": 2}}, "$size"),
        ({"$or": [{"a": {"$size": 2}}]}, "$size"),
        ({"a": {"b": 1}}, "object"),
        ({"a": {}}, "object"),
        ({"a": [1, 2]}, "array"),
        ({"a": {"$eq": [1]}}, "array"),
        ({"a": {"$ne": {"b": 1}}}, "object"),
        ({"a": {"$in": [[1]]}}, "$in"),
        ({"a": {"$nin": [{"b": 1}]}}, "$nin"),
    ],
)
def test_unsupported_is_501_naming_it(query, named):
    with pytest.raises(NotImplementedByBackend) as info:
        from_mongo(query)
    assert named in info.value.message
    assert info.value.status == 501


# -- 400: malformed ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        [],
        "a:1",
        None,
        {"a": {"$in": 1}},
        {"a": {"$in": "abc"}},
        {"a": {"$nin": {"x": 1}}},
        {"$and": []},
        {"$and": {"a": 1}},
        {"$or": "x"},
        {"$nor": []},
        {"$and": [1]},
        {"$or": [[]]},
        {"a": {"$gt": {"b": 1}}},
        {"a": {"$gt": [1]}},
        {"a": {"$lt": "REGEX_x"}},
        {"a": {"$gt": float("nan")}},
        {"a": float("inf")},
        {"a": {"$exists": "yes"}},
        {"a": {"$gt": 1, "b": 2}},
        {"a": {"$not": 5}},
        {"a": {"$not": {}}},
        {"a": {"$not": {"b": 1}}},
        {"a": {"$and": [{"b": 1}]}},
        {"$not": {"a": 1}},
        {"": 1},
        {"a..b": 1},
        {"a.": 1},
        {1: "x"},
        {"a": b"bytes"},
        {"a": {"$in": [b"x"]}},
        {"a": {"$options": "i", "$regex": 1}},
    ],
)
def test_malformed_is_400(query):
    with pytest.raises(BadRequest):
        from_mongo(query)


def test_deep_nesting_is_a_bad_request():
    q: dict = {"a": 1}
    for _ in range(500):
        q = {"$and": [q]}
    with pytest.raises(BadRequest, match="nested too deeply"):
        from_mongo(q)
    n: dict = {"$gt": 1}
    for _ in range(500):
        n = {"$not": n}
    with pytest.raises(BadRequest, match="nested too deeply"):
        from_mongo({"a": n})


def test_semantics_match_mongodb_for_ne_nin_exists():
    docs = [{"_id": "1", "k": 1}, {"_id": "2", "k": 2}, {"_id": "3"}, {"_id": "4", "k": None}]

    def run(q):
        match = to_predicate(from_mongo(q))
        return [d["_id"] for d in docs if match(d)]

    assert run({"k": {"$ne": 1}}) == ["2", "3", "4"]
    assert run({"k": {"$nin": [1, 2]}}) == ["3", "4"]
    assert run({"k": {"$exists": False}}) == ["3"]
    assert run({"k": None}) == ["3", "4"]
    assert run({"k": {"$ne": None}}) == ["1", "2"]
    assert run({"k": {"$gte": 2}}) == ["2"]


# -- sort ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sort", "normal"),
    [
        (None, ()),
        ({}, ()),
        ([], ()),
        ("time", (("time", 1),)),
        ("-time", (("time", -1),)),
        ("a.b", (("a.b", 1),)),
        ({"time": -1, "_id": 1}, (("time", -1), ("_id", 1))),
        (
            {"a": "desc", "b": "ASC", "c": "descending", "d": "ascending"},
            (("a", -1), ("b", 1), ("c", -1), ("d", 1)),
        ),
        ([["time", -1], ["_id", 1]], (("time", -1), ("_id", 1))),
        ([("time", "desc")], (("time", -1),)),
        (["time", "-size"], (("time", 1), ("size", -1))),
        (["time", ["size", -1]], (("time", 1), ("size", -1))),
        (["time", -1], (("time", -1),)),
        (("time", 1), (("time", 1),)),
    ],
)
def test_sort_shapes(sort, normal):
    assert normalize_sort(sort) == normal


@pytest.mark.parametrize(
    "sort",
    [
        "",
        "-",
        "a..b",
        5,
        True,
        {"a": 2},
        {"a": 0},
        {"a": True},
        {"a": "up"},
        {"a": 1.0},
        {"": 1},
        {1: 1},
        [["a", 2]],
        [["a"]],
        [["a", 1, 2]],
        [5],
        [None],
        ["a", "a"],
        [["a", 1], "-a"],
        ["a", True],
    ],
)
def test_bad_sort_is_400(sort):
    with pytest.raises(BadRequest) as info:
        normalize_sort(sort)
    assert info.value.message.startswith("sort error: ")
