"""The AST → MongoDB filter compiler: one filter per node type, exactly as documented."""

from __future__ import annotations

import pytest

from damas_core.errors import NotImplementedByBackend
from damas_core.query.ast import All, And, Cmp, Eq, Exists, In, Not, Or, Regex
from damas_core.query.mongo import to_mongo, to_mongo_sort


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (All(), {}),
        (Exists(("#parent",)), {"#parent": {"$exists": True}}),
        (Eq(("a", "b"), "x"), {"a.b": "x"}),
        (Eq(("a",), None), {"a": None}),
        (Eq(("a",), True), {"a": True}),
        (In(("n",), (12, "12")), {"n": {"$in": [12, "12"]}}),
        (Cmp(("n",), "<", 1.5), {"n": {"$lt": 1.5}}),
        (Cmp(("n",), "<=", "b"), {"n": {"$lte": "b"}}),
        (Cmp(("n",), ">", 0), {"n": {"$gt": 0}}),
        (Cmp(("n",), ">=", 0), {"n": {"$gte": 0}}),
        (Regex(("f",), "^a"), {"f": {"$regex": "^a"}}),
        (Regex(("f",), "^a", "gyusmi"), {"f": {"$regex": "^a", "$options": "ims"}}),
        (Not(Exists(("a",))), {"$nor": [{"a": {"$exists": True}}]}),
        (
            And((Eq(("a",), 1), Or((Eq(("b",), 2), Not(All()))))),
            {"$and": [{"a": 1}, {"$or": [{"b": 2}, {"$nor": [{}]}]}]},
        ),
    ],
)
def test_each_node_type(node, expected):
    assert to_mongo(node) == expected


@pytest.mark.parametrize("key", ["a.b", "$where", "x\x00"])
def test_keys_mongodb_cannot_name_are_501(key):
    with pytest.raises(NotImplementedByBackend, match="cannot be searched on MongoDB"):
        to_mongo(Eq((key,), 1))


def test_not_a_node():
    with pytest.raises(TypeError):
        to_mongo({"a": 1})  # type: ignore[arg-type]


def test_sort_adds_id_as_tie_breaker_once():
    assert to_mongo_sort((("time", -1), ("a.b", 1))) == [("time", -1), ("a.b", 1), ("_id", 1)]
    assert to_mongo_sort((("_id", -1),)) == [("_id", -1)]
    assert to_mongo_sort(()) == [("_id", 1)]


@pytest.mark.parametrize(
    ("pattern", "flags", "text", "matches"),
    [
        ("^$", "", "\n", False),  # RE2's $ is the end of the text; PCRE's also before a final \n
        ("a$", "", "a\n", False),
        ("a$", "", "a", True),
        ("a$", "m", "a\nb", True),  # multi-line: the end of any line, in every engine
        ("[$]", "", "$", True),  # a $ in a class or escaped is a character, not an anchor
        ("\\$x", "", "$x", True),
    ],
)
def test_regex_anchors_mean_what_re2_means(pattern, flags, text, matches):
    import mongomock

    from damas_core.query.predicate import to_predicate

    node = Regex(("f",), pattern, flags)
    assert to_predicate(node)({"_id": "x", "f": text}) is matches
    collection = mongomock.MongoClient().db.node
    collection.insert_one({"_id": "x", "f": text})
    assert (collection.count_documents(to_mongo(node)) == 1) is matches
