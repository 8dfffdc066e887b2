"""The Python predicate: every matching rule of the AST's semantics."""

from __future__ import annotations

import pytest

from damas_core.errors import BadRequest
from damas_core.ordering import MISSING
from damas_core.query import (
    All,
    And,
    Cmp,
    Eq,
    Exists,
    In,
    Node,
    Not,
    Or,
    Regex,
    parse,
    to_predicate,
)
from damas_core.query.predicate import leaf_values


def matching(query: Node | str, docs: list[dict]) -> list[str]:
    node = parse(query) if isinstance(query, str) else query
    match = to_predicate(node)
    return [d["_id"] for d in docs if match(d)]


def ids(*docs: dict) -> list[dict]:
    return [{"_id": str(i), **d} for i, d in enumerate(docs)]


# -- equality and types ----------------------------------------------------------------------


def test_string_equality_is_exact_and_case_sensitive():
    docs = ids({"t": "shot"}, {"t": "Shot"}, {"t": "shots"}, {})
    assert matching('t:"shot"', docs) == ["0"]


def test_numbers_equal_by_value_across_int_and_float():
    docs = ids({"n": 1}, {"n": 1.0}, {"n": "1"}, {"n": True}, {"n": 2})
    assert matching(Eq(("n",), 1), docs) == ["0", "1"]
    assert matching(Eq(("n",), 1.0), docs) == ["0", "1"]


def test_bool_is_not_a_number():
    docs = ids({"b": True}, {"b": 1}, {"b": 1.0}, {"b": False}, {"b": 0}, {"b": "true"})
    assert matching(Eq(("b",), True), docs) == ["0"]
    assert matching(Eq(("b",), False), docs) == ["3"]
    assert matching(Eq(("b",), 0), docs) == ["4"]
    assert matching(In(("b",), (1,)), docs) == ["1", "2"]
    assert matching(In(("b",), (True,)), docs) == ["0"]


def test_string_twelve_is_not_number_twelve():
    docs = ids({"n": 12}, {"n": "12"}, {"n": 12.0})
    assert matching('n:"12"', docs) == ["1"]
    assert matching("n:=12", docs) == ["0", "2"]
    assert matching("n:12", docs) == ["0", "1", "2"]  # a bare number: both


def test_bare_true_and_null_match_typed_and_string():
    docs = ids({"f": True}, {"f": "true"}, {"f": 1}, {"f": None}, {"f": "null"}, {})
    assert matching("f:true", docs) == ["0", "1"]
    assert matching("f:null", docs) == ["3", "4", "5"]


# -- missing keys and null ---------------------------------------------------------------------


def test_eq_null_matches_null_or_missing():
    docs = ids({"k": None}, {}, {"k": 0}, {"k": ""}, {"k": [None, 1]}, {"k": []}, {"k": False})
    assert matching(Eq(("k",), None), docs) == ["0", "1", "4"]
    assert matching(In(("k",), ("x", None)), docs) == ["0", "1", "4"]


def test_not_eq_matches_a_missing_key():
    docs = ids({"status": "done"}, {"status": "wip"}, {})
    assert matching("-status:done", docs) == ["1", "2"]


def test_exists_means_present_even_null_or_empty():
    docs = ids({"k": None}, {"k": []}, {"k": 0}, {}, {"other": 1})
    assert matching("k:*", docs) == ["0", "1", "2"]
    assert matching("-k:*", docs) == ["3", "4"]


def test_missing_key_never_compares_or_matches_a_regex():
    docs = ids({}, {"k": None})
    assert matching("k<5", docs) == []
    assert matching("k>=a", docs) == []
    assert matching("k:/.*/", docs) == []
    assert matching('k:""', docs) == []


# -- arrays and dotted paths --------------------------------------------------------------------


def test_array_matches_when_any_member_matches():
    docs = ids({"tags": ["a", "b"]}, {"tags": ["c"]}, {"tags": []}, {"tags": "a"})
    assert matching("tags:a", docs) == ["0", "3"]
    assert matching("-tags:a", docs) == ["1", "2"]
    assert matching("tags:/^[bc]$/", docs) == ["0", "1"]
    assert matching(In(("tags",), ("c", "z")), docs) == ["1"]


def test_array_members_compare_one_by_one():
    docs = ids({"n": [1, 20]}, {"n": [5, 6]}, {"n": ["30"]})
    assert matching("n>10", docs) == ["0"]
    assert matching("n<2", docs) == ["0"]


def test_nested_array_at_the_leaf_is_not_expanded():
    docs = ids({"k": [["a"]]}, {"k": ["a"]})
    assert matching("k:a", docs) == ["1"]


def test_dotted_path_into_objects():
    docs = ids({"a": {"b": {"c": 1}}}, {"a": {"b": {"c": 2}}}, {"a": {"b": 1}}, {"a": 1}, {})
    assert matching("a.b.c:=1", docs) == ["0"]
    assert matching("a.b:*", docs) == ["0", "1", "2"]
    assert matching("a.b.c:*", docs) == ["0", "1"]


def test_dotted_path_descends_through_arrays_of_objects():
    docs = ids(
        {"files": [{"site": "paris"}, {"site": "tokyo"}]},
        {"files": [{"site": "lyon"}]},
        {"files": [{"site": ["nyc", "la"]}]},
        {"files": ["paris"]},
    )
    assert matching("files.site:tokyo", docs) == ["0"]
    assert matching("files.site:la", docs) == ["2"]
    assert matching("files.site:*", docs) == ["0", "1", "2"]
    assert matching("-files.site:paris", docs) == ["1", "2", "3"]


def test_dotted_path_null_and_missing_follow_mongodb():
    docs = ids(
        {"a": [{"b": 1}, {}]},  # one member lacks b: missing
        {"a": {"b": None}},
        {},  # a is missing
        {"a": [{"b": [None]}]},
        {"a": [{"c": 1}]},
        {"a": []},  # no member to look into
        {"a": [1, 2]},  # members are not objects
        {"a": 5},  # not an object
        {"a": [{"b": []}]},
    )
    assert matching(Eq(("a", "b"), None), docs) == ["0", "1", "2", "3", "4"]
    assert matching(Exists(("a", "b")), docs) == ["0", "1", "3", "8"]
    assert matching(Not(Eq(("a", "b"), None)), docs) == ["5", "6", "7", "8"]


def test_leaf_values():
    doc = {"a": [{"b": 1}, {"c": 2}, 3, {"b": [4, 5]}]}
    assert leaf_values(doc, ("a", "b")) == [1, MISSING, [4, 5]]


def test_keys_starting_with_hash():
    docs = ids({"#parent": "/p"}, {"#parent": "/q"}, {})
    assert matching("#parent:/p", docs) == ["0"]


# -- comparisons within a type bracket -----------------------------------------------------------


def test_numbers_compare_with_numbers_only():
    docs = ids(
        {"n": 5}, {"n": 5.5}, {"n": "6"}, {"n": True}, {"n": None}, {"n": [7]}, {"n": {"x": 9}}
    )
    assert matching("n>5", docs) == ["1", "5"]
    assert matching("n>=5", docs) == ["0", "1", "5"]
    assert matching("n<6", docs) == ["0", "1"]
    assert matching("n<=5", docs) == ["0"]


def test_strings_compare_with_strings_by_code_point():
    docs = ids({"s": "b"}, {"s": "B"}, {"s": "é"}, {"s": 5}, {"s": "a"}, {"s": ""})
    assert matching('s>"a"', docs) == ["0", "2"]
    assert matching('s<"b"', docs) == ["1", "4", "5"]
    assert matching('s<"5"', docs) == ["5"]
    assert matching("s>=b", docs) == ["0", "2"]


def test_numeric_looking_string_bound_compares_strings():
    docs = ids({"v": "10"}, {"v": "9"}, {"v": 9})
    assert matching('v<"2"', docs) == ["0"]
    assert matching("v<2", docs) == []
    assert matching("v<10", docs) == ["2"]


# -- regex --------------------------------------------------------------------------------------


def test_regex_searches_strings_only_unanchored():
    docs = ids({"n": "shot010"}, {"n": "SHOT"}, {"n": 10}, {"n": ["a", "xshot"]}, {"n": None})
    assert matching("n:/shot/", docs) == ["0", "3"]
    assert matching("n:/^shot/i", docs) == ["0", "1"]
    assert matching("n:/10/", docs) == ["0"]


def test_regex_flags_m_and_s():
    docs = ids({"t": "a\nb"})
    assert matching("t:/^b/", docs) == []
    assert matching("t:/^b/m", docs) == ["0"]
    assert matching("t:/a.b/", docs) == []
    assert matching("t:/a.b/s", docs) == ["0"]


def test_regex_on_dotted_path():
    docs = ids({"a": [{"b": "xy"}, {"b": 1}]}, {"a": {"b": "z"}})
    assert matching("a.b:/^x/", docs) == ["0"]


# -- logic -------------------------------------------------------------------------------------


def test_all_and_or_not():
    docs = ids({"a": "1", "b": "1"}, {"a": "1"}, {"b": "1"}, {})
    assert matching(All(), docs) == ["0", "1", "2", "3"]
    assert matching('a:"1" b:"1"', docs) == ["0"]
    assert matching('a:"1" OR b:"1"', docs) == ["0", "1", "2"]
    assert matching('-(a:"1" OR b:"1")', docs) == ["3"]
    assert matching(Not(All()), docs) == []
    three = And((Eq(("a",), "1"), Eq(("b",), "1"), All()))
    assert matching(three, docs) == ["0"]
    assert matching(Or((Eq(("a",), "1"), Eq(("b",), "1"), Eq(("c",), "1"))), docs) == [
        "0",
        "1",
        "2",
    ]
    assert matching(And((Eq(("a",), "1"),)), docs) == ["0", "1"]


def test_empty_in_matches_nothing():
    assert matching(In(("k",), ()), ids({"k": "x"}, {})) == []


@pytest.mark.parametrize(
    "node",
    [
        Eq(("k",), "x"),
        Eq(("k",), 1),
        Eq(("k",), True),
        Eq(("k",), None),
        In(("k",), (1, "x", None, False)),
        Cmp(("k",), ">", 0),
        Cmp(("k",), "<=", "m"),
        Regex(("k",), "^x", ""),
        Exists(("k",)),
    ],
)
def test_single_key_fast_path_agrees_with_nested_path(node):
    """The specialised single-key closures and the general path walker agree."""
    docs = [
        {"k": v}
        for v in (
            "x",
            "y",
            1,
            1.0,
            0,
            -1,
            True,
            False,
            None,
            [],
            ["x", 1],
            [None],
            [True],
            {"a": 1},
            [[1]],
            "m",
            "",
        )
    ] + [{}]
    nested = type(node)(
        ("w", "k"), *[getattr(node, f) for f in node.__dataclass_fields__ if f != "path"]
    )
    flat = to_predicate(node)
    deep = to_predicate(nested)
    for doc in docs:
        assert flat(doc) == deep({"w": doc}), doc
        assert flat(doc) == deep({"w": [doc]}), doc


def test_unknown_node_is_a_bad_request():
    class Strange(Node):
        pass

    with pytest.raises(BadRequest):
        to_predicate(Strange())


@pytest.mark.parametrize(
    ("pattern", "flags", "text"),
    [
        ("é$", "", "café"),
        ("^É", "i", "école"),
        ("", "", ""),
        ("^$", "", ""),
        (r"\bshot\b", "", "a shot here"),
        ("a.c", "s", "a\nc"),
        ("^b", "m", "a\nb"),
        ("日本", "", "にっぽん日本"),
        ("x", "", "y" * 1000),
    ],
)
def test_regex_fast_path_agrees_with_re2_search(pattern, flags, text):
    node = Regex(("k",), pattern, flags)
    expected = node.compiled.search(text) is not None
    assert to_predicate(node)({"k": text}) is expected
    assert to_predicate(Regex(("w", "k"), pattern, flags))({"w": {"k": text}}) is expected
