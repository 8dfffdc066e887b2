"""Properties of the search language and the predicate, over generated input.

- ``parse`` never raises anything but ``BadRequest``, for any string;
- text ↔ AST: ``parse(to_text(n)) == n`` for every AST the parser can build, and the
  printed text of any other AST matches the same documents;
- the predicate agrees with a small, independent reference evaluator and obeys the
  laws of logic (``Not`` inverts, ``And``/``Or`` are all/any, ``In`` is an ``Or`` of
  ``Eq``), over documents with missing keys, mixed types, arrays and nested objects.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    to_text,
)
from damas_core.query.parser import NUMBER_RE, is_typed, typed_value

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Generating documents and trees costs more than checking them: fewer examples.
WORLD = settings(SETTINGS, max_examples=100)

# -- strategies ---------------------------------------------------------------------------------

TEXT = st.characters(blacklist_categories=("Cs",))  # every character but lone surrogates

QUERY_PIECES = st.sampled_from(
    [
        "a", "b.c", "#parent", "_id", ":", "<", "<=", ">", ">=", "=", "(", ")", '"', "\\",
        "-", "NOT", "OR", "*", "/", "i", " ", "  ", "\t", "12", "-3.5", "1e3", "true",
        "null", "[", "]", "^", "|", "+", "?", ".", "x", "é", "\n",
    ]
)  # fmt: skip
QUERY_LIKE = st.lists(QUERY_PIECES, max_size=25).map("".join)
# Whole terms and operators: most of these strings are valid queries.
QUERY_TERMS = st.lists(
    st.sampled_from(
        [
            "a:1",
            "b.c:x",
            "-",
            "NOT",
            "OR",
            "(",
            ")",
            "*",
            "k:*",
            'n:"a b"',
            "n:/^x/i",
            "_id:/p/a.mov",
            "_id:/p/",
            "x<=2",
            "y>abc",
            "k:=null",
            "t:true",
            "#parent:/p",
            'k:"12"',
            "n>=-1.5e3",
            "OR:x",
            "name:/(a|b)/",
            "-k:x",
        ]
    ),
    min_size=1,
    max_size=12,
).map(" ".join)
ANY_TEXT = st.text(TEXT, max_size=60)

KEY_PART = st.one_of(
    st.sampled_from(["a", "b", "_id", "#parent", "type", "OR", "NOT", "*", "x-y", "a=b"]),
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="."),
        min_size=1,
        max_size=6,
    ),
)
PATH = st.lists(KEY_PART, min_size=1, max_size=3).map(tuple)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
NUMBER = st.one_of(st.integers(min_value=-(10**30), max_value=10**30), FINITE)
STRING = st.one_of(
    st.sampled_from(
        ["", "x", "12", "true", "null", "*", "/a/", "/p/x.mov", "=1", "a b", '"q"', "\\", "(", ")"]
    ),
    st.text(TEXT, max_size=8),
)
TYPED_TEXT = st.one_of(
    st.sampled_from(["true", "false", "null", "0", "-0", "12", "-3.5", "1e3", "2E-2", "1.0"]),
    st.from_regex(NUMBER_RE, fullmatch=True),
    NUMBER.map(repr),
).filter(is_typed)


def _compiles(pattern: str) -> bool:
    try:
        Regex(("k",), pattern)
    except BadRequest:
        return False
    return True


# Regex patterns RE2 accepts, written without whitespace (so the text language can
# carry them), built from a small grammar.
RX_ATOM = st.sampled_from(
    [
        "a",
        "b",
        "x",
        "0",
        "/",
        ".",
        '"',
        ":",
        "-",
        r"\d",
        r"\.",
        r"\)",
        r"\(",
        r"\/",
        "[a-z]",
        "[)]",
        "[^/]",
        "[]x]",
        "^",
        "$",
    ]
)
RX = st.recursive(
    RX_ATOM,
    lambda inner: st.one_of(
        st.tuples(inner, inner).map("".join),
        st.tuples(inner, st.sampled_from(["*", "+", "?", "{1,2}"])).map(
            lambda p: f"(?:{p[0]}){p[1]}"
        ),
        inner.map(lambda r: f"({r})"),
        inner.map(lambda r: f"(?:{r})"),
        st.tuples(inner, inner).map(lambda p: f"{p[0]}|{p[1]}"),
    ),
    max_leaves=6,
).filter(lambda pattern: _compiles(pattern))
FLAGS = st.text(alphabet="gimsuy", max_size=3)


def _typed_in(path, text):
    return In(path, (typed_value(text), text))


PARSER_LEAF = st.one_of(
    st.just(All()),
    st.builds(Exists, PATH),
    st.builds(Eq, PATH, STRING),
    st.builds(Eq, PATH, st.one_of(NUMBER, st.booleans(), st.none())),  # key:=literal
    st.builds(_typed_in, PATH, TYPED_TEXT),
    st.builds(Cmp, PATH, st.sampled_from(["<", "<=", ">", ">="]), st.one_of(NUMBER, STRING)),
    st.builds(Regex, PATH, RX, FLAGS),
)


def _and_of(nodes):
    return And(tuple(nodes))


def _or_of(nodes):
    return Or(tuple(nodes))


def _parser_trees(inner):
    return st.one_of(
        inner.map(Not),
        st.lists(inner.filter(lambda n: not isinstance(n, And)), min_size=2, max_size=4).map(
            _and_of
        ),
        st.lists(inner.filter(lambda n: not isinstance(n, Or)), min_size=2, max_size=4).map(_or_of),
    )


PARSER_AST = st.recursive(PARSER_LEAF, _parser_trees, max_leaves=10)

# -- documents and queries over a small world, so that terms often hit --------------------------

DOC_KEYS = ["a", "b", "c"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, 2, 12, -1, 1.0, 1.5, 12.0]),
    st.sampled_from(["", "x", "y", "12", "1", "true", "null", "a\nb", "X"]),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(DOC_KEYS), inner, max_size=3),
    ),
    max_leaves=8,
)
DOC = st.dictionaries(st.sampled_from(DOC_KEYS), JSON, max_size=3)
DOCS = st.lists(DOC, min_size=1, max_size=6)

WORLD_PATH = st.sampled_from([("a",), ("b",), ("c",), ("a", "b"), ("b", "c"), ("a", "b", "c")])
WORLD_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, 1.0, 2, 12, -1, 1.5]),
    st.sampled_from(["", "x", "12", "1", "true", "X"]),
)
WORLD_LEAF = st.one_of(
    st.just(All()),
    st.builds(Exists, WORLD_PATH),
    st.builds(Eq, WORLD_PATH, WORLD_SCALAR),
    st.builds(In, WORLD_PATH, st.lists(WORLD_SCALAR, max_size=3).map(tuple)),
    st.builds(
        Cmp,
        WORLD_PATH,
        st.sampled_from(["<", "<=", ">", ">="]),
        st.one_of(st.sampled_from([0, 1, 1.5, 2, 12]), st.sampled_from(["", "x", "12", "X"])),
    ),
    st.builds(
        Regex,
        WORLD_PATH,
        st.sampled_from(["x", "^1", "2$", "a.b", "^$", "X", "a b"]),
        st.sampled_from(["", "i", "s", "m"]),
    ),
)
WORLD_AST = st.recursive(
    WORLD_LEAF,
    lambda inner: st.one_of(
        inner.map(Not),
        st.lists(inner, min_size=1, max_size=3).map(_and_of),
        st.lists(inner, min_size=1, max_size=3).map(_or_of),
    ),
    max_leaves=8,
)

# -- a reference evaluator: the AST's semantics written plainly, slowly ------------------------------


def _leaves(value: Any, path: tuple[str, ...]) -> list[Any]:
    if not path:
        return [value]
    if isinstance(value, dict):
        return _leaves(value[path[0]], path[1:]) if path[0] in value else [MISSING]
    if isinstance(value, list):
        return [v for m in value if isinstance(m, dict) for v in _leaves(m, path)]
    return []


def _candidates(doc: dict, path: tuple[str, ...]) -> list[Any]:
    out: list[Any] = []
    for v in _leaves(doc, path):
        out.extend(v if isinstance(v, list) else [v])
    return out


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    return type(v).__name__


def _same(a: Any, b: Any) -> bool:
    return _kind(a) == _kind(b) and a == b


def reference(node: Node, doc: dict) -> bool:
    if isinstance(node, All):
        return True
    if isinstance(node, Exists):
        return any(v is not MISSING for v in _leaves(doc, node.path))
    if isinstance(node, Eq | In):
        values = (node.value,) if isinstance(node, Eq) else node.values
        if None in values and MISSING in _leaves(doc, node.path):
            return True
        return any(_same(c, v) for c in _candidates(doc, node.path) for v in values)
    if isinstance(node, Cmp):
        ops = {
            "<": lambda x, y: x < y,
            "<=": lambda x, y: x <= y,
            ">": lambda x, y: x > y,
            ">=": lambda x, y: x >= y,
        }
        return any(
            _kind(c) == _kind(node.value) and ops[node.op](c, node.value)
            for c in _candidates(doc, node.path)
        )
    if isinstance(node, Regex):
        return any(
            isinstance(c, str) and node.compiled.search(c) is not None
            for c in _candidates(doc, node.path)
        )
    if isinstance(node, Not):
        return not reference(node.node, doc)
    if isinstance(node, And):
        return all(reference(n, doc) for n in node.nodes)
    if isinstance(node, Or):
        return any(reference(n, doc) for n in node.nodes)
    raise AssertionError(node)


# -- parse never raises anything but BadRequest -----------------------------------------------------


@SETTINGS
@given(st.one_of(ANY_TEXT, QUERY_LIKE))
def test_parse_raises_only_bad_request(text):
    try:
        node = parse(text)
    except BadRequest as e:
        assert e.position is not None and 0 <= e.position <= len(text)
        assert e.message.endswith(f"at position {e.position}")
    else:
        assert isinstance(node, Node)
        # Whatever parses prints, reads back identically, and compiles.
        assert parse(to_text(node)) == node
        to_predicate(node)


@SETTINGS
@given(QUERY_TERMS)
def test_printed_text_is_a_fixed_point(text):
    try:
        node = parse(text)
    except BadRequest:
        return
    printed = to_text(node)
    assert parse(printed) == node
    assert to_text(parse(printed)) == printed


# -- text ↔ AST -----------------------------------------------------------------------------------


@WORLD
@given(PARSER_AST)
def test_parser_asts_round_trip_through_text(node):
    text = to_text(node)
    assert parse(text) == node, text


@WORLD
@given(WORLD_AST, DOCS)
def test_any_ast_prints_as_an_equivalent_query(node, docs):
    text = to_text(node)
    again = to_predicate(parse(text))
    match = to_predicate(node)
    for doc in docs:
        assert match(doc) == again(doc), (text, doc)


# -- the predicate -----------------------------------------------------------------------------------


@WORLD
@given(WORLD_AST, DOCS)
def test_predicate_agrees_with_the_reference(node, docs):
    match = to_predicate(node)
    for doc in docs:
        assert match(doc) == reference(node, doc), doc


@WORLD
@given(WORLD_AST, DOCS)
def test_not_inverts(node, docs):
    match, negated = to_predicate(node), to_predicate(Not(node))
    for doc in docs:
        assert negated(doc) is (not match(doc))


@WORLD
@given(st.lists(WORLD_AST, min_size=1, max_size=4), DOCS)
def test_and_or_are_all_and_any(nodes, docs):
    parts = [to_predicate(n) for n in nodes]
    both, either = to_predicate(And(tuple(nodes))), to_predicate(Or(tuple(nodes)))
    for doc in docs:
        assert both(doc) == all(p(doc) for p in parts)
        assert either(doc) == any(p(doc) for p in parts)


@WORLD
@given(WORLD_PATH, st.lists(WORLD_SCALAR, min_size=1, max_size=4), DOCS)
def test_in_is_an_or_of_equalities(path, values, docs):
    member = to_predicate(In(path, tuple(values)))
    alternatives = to_predicate(Or(tuple(Eq(path, v) for v in values)))
    for doc in docs:
        assert member(doc) == alternatives(doc)


@WORLD
@given(WORLD_PATH, TYPED_TEXT, DOCS)
def test_bare_value_is_typed_or_string(path, text, docs):
    key = ".".join(path)
    bare = to_predicate(parse(f"{key}:{text}"))
    either = to_predicate(Or((Eq(path, typed_value(text)), Eq(path, text))))
    for doc in docs:
        assert bare(doc) == either(doc)


@WORLD
@given(WORLD_PATH, DOCS)
def test_eq_null_matches_where_the_first_key_is_missing(path, docs):
    null = to_predicate(Eq(path, None))
    present = to_predicate(Exists(path))
    for doc in docs:
        if path[0] not in doc:
            assert null(doc) and not present(doc)
        if present(doc) and not null(doc):
            assert to_predicate(Not(Eq(path, None)))(doc)


def test_catastrophic_backtracking_pattern_runs_in_linear_time():
    """``(a+)+$`` against 100k characters: a backtracking engine would never finish."""
    subject = "a" * 100_000 + "!"
    match = to_predicate(parse("name:/(a+)+$/"))
    assert match({"name": subject}) is False
    assert match({"name": [subject, "aaa"]}) is True
    nested = to_predicate(parse("x.name:/^(a|aa)+$/"))
    assert nested({"x": [{"name": subject}]}) is False


def test_floats_print_back_exactly():
    for value in (0.1, 1e16, 5e-324, -0.0, 1.7976931348623157e308, 123456789.123456789):
        assert math.isfinite(value)
        node = Cmp(("n",), "<", value)
        assert parse(to_text(node)) == node
