"""The search language: every syntax form, every error with its position, and the
canonical printer."""

from __future__ import annotations

import pytest

from damas_core.errors import BadRequest
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
    parse,
    to_text,
)
from damas_core.query.parser import MAX_DEPTH, MAX_QUERY_LENGTH

# -- damas-core forms ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "node"),
    [
        ("type:shot", Eq(("type",), "shot")),
        ("a.b.c:x", Eq(("a", "b", "c"), "x")),
        ("#parent:/p/x", Eq(("#parent",), "/p/x")),
        ("name:/^sh/i", Regex(("name",), "^sh", "i")),
        ("name:/^sh/gimsuy", Regex(("name",), "^sh", "gimsuy")),
        ("size<5", Cmp(("size",), "<", 5)),
        ("size<=5", Cmp(("size",), "<=", 5)),
        ("size>5", Cmp(("size",), ">", 5)),
        ("size>=5", Cmp(("size",), ">=", 5)),
        ("*", All()),
        ("key:*", Exists(("key",))),
    ],
)
def test_damas_core_forms(text, node):
    assert parse(text) == node


def test_terms_separated_by_whitespace_are_anded():
    assert parse("type:shot\tstatus:wip\n  owner:bob") == And(
        (Eq(("type",), "shot"), Eq(("status",), "wip"), Eq(("owner",), "bob"))
    )


def test_key_ends_at_first_operator_and_value_runs_to_whitespace():
    assert parse("time:12:30") == Eq(("time",), "12:30")
    assert parse("_id:/a:b") == Eq(("_id",), "/a:b")
    assert parse("a:<5") == Eq(("a",), "<5")
    assert parse("a<b:c") == Cmp(("a",), "<", "b:c")
    assert parse("a>=<x") == Cmp(("a",), ">=", "<x")


# -- the regex rule: ids are paths -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "node"),
    [
        ("_id:/project/a.mov", Eq(("_id",), "/project/a.mov")),
        ("#parent:/project/seq01", Eq(("#parent",), "/project/seq01")),
        ("_id:/", Eq(("_id",), "/")),
        ("_id:/project/", Regex(("_id",), "project", "")),
        ('_id:"/project/"', Eq(("_id",), "/project/")),
        ("name:/^sh/i", Regex(("name",), "^sh", "i")),
        ("_id:/a/b/", Regex(("_id",), "a/b", "")),
        ("_id:/a/b/x", Eq(("_id",), "/a/b/x")),
        ("_id:/a/ix", Eq(("_id",), "/a/ix")),
        ("name://", Regex(("name",), "", "")),
    ],
)
def test_regex_only_when_slash_pattern_slash_flags(text, node):
    assert parse(text) == node


def test_regex_keeps_its_groups_and_escapes():
    assert parse("name:/(a|b)c/") == Regex(("name",), "(a|b)c", "")
    assert parse("(name:/(a|b)/ OR x:1)") == Or(
        (Regex(("name",), "(a|b)", ""), In(("x",), (1, "1")))
    )
    assert parse(r"name:/a\)/") == Regex(("name",), r"a\)", "")
    assert parse("name:/[)]/") == Regex(("name",), "[)]", "")
    assert parse("name:/[])]x/") == Regex(("name",), "[])]x", "")
    assert parse('name:/"x"/') == Regex(("name",), '"x"', "")


def test_value_with_balanced_parentheses_stays_whole():
    assert parse("_id:/shots/a(1).mov") == Eq(("_id",), "/shots/a(1).mov")
    assert parse("(a:x)") == Eq(("a",), "x")


def test_regex_compiles_with_re2():
    node = parse("name:/^sh[0-9]+$/i")
    assert node.compiled.search("SH010") is not None


# -- typed and quoted values ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "typed"),
    [
        ("12", 12),
        ("-3.5", -3.5),
        ("1e3", 1000.0),
        ("2E-2", 0.02),
        ("0", 0),
        ("true", True),
        ("false", False),
        ("null", None),
    ],
)
def test_bare_typed_value_matches_typed_and_string(text, typed):
    node = parse(f"k:{text}")
    assert node == In(("k",), (typed, text))
    assert type(node.values[0]) is type(typed)


@pytest.mark.parametrize(
    "text", ["007", "+1", ".5", "5.", "1e", "True", "NULL", "0x10", "1_000", "1e999"]
)
def test_other_bare_words_are_strings(text):
    assert parse(f"k:{text}") == Eq(("k",), text)


def test_quoted_value_is_only_the_string():
    assert parse('k:"12"') == Eq(("k",), "12")
    assert parse('k:"true"') == Eq(("k",), "true")
    assert parse('k:"*"') == Eq(("k",), "*")
    assert parse('k:"/^x/"') == Eq(("k",), "/^x/")
    assert parse('k:""') == Eq(("k",), "")


def test_quoted_escapes_and_spaces():
    assert parse(r'name:"say \"hi\" \\ bye"') == Eq(("name",), 'say "hi" \\ bye')
    assert parse('name:"a (b) OR c"') == Eq(("name",), "a (b) OR c")


def test_quoted_key():
    assert parse('"my key":x') == Eq(("my key",), "x")
    assert parse('"a b.c":x') == Eq(("a b", "c"), "x")
    assert parse('"-odd"<3') == Cmp(("-odd",), "<", 3)


def test_exact_typed_equality_extension():
    assert parse("k:=12") == Eq(("k",), 12)
    assert parse("k:=null") == Eq(("k",), None)
    assert parse("k:=false") == Eq(("k",), False)
    # Not a typed literal: damas-core's meaning, a string starting with '='.
    assert parse("k:=abc") == Eq(("k",), "=abc")


def test_comparison_values():
    assert parse("n<12") == Cmp(("n",), "<", 12)
    assert parse("n<-1.5e2") == Cmp(("n",), "<", -150.0)
    assert parse('n<"12"') == Cmp(("n",), "<", "12")
    assert parse("name>=m") == Cmp(("name",), ">=", "m")
    assert parse("flag<true") == Cmp(("flag",), "<", "true")
    assert parse("x<null") == Cmp(("x",), "<", "null")


# -- operators and grouping -------------------------------------------------------------


def test_negation_forms():
    a = Eq(("a",), "x")
    assert parse("-a:x") == Not(a)
    assert parse("NOT a:x") == Not(a)
    assert parse("NOT NOT a:x") == Not(Not(a))
    assert parse("--a:x") == Not(Not(a))
    assert parse("-*") == Not(All())
    assert parse("-(a:x b:y)") == Not(And((a, Eq(("b",), "y"))))
    assert parse("NOT(a:x)") == Not(a)


def test_precedence_not_then_and_then_or():
    a, b, c, d = (Eq((k,), "x") for k in "abcd")
    assert parse("a:x b:x OR c:x") == Or((And((a, b)), c))
    assert parse("a:x OR b:x c:x") == Or((a, And((b, c))))
    assert parse("-a:x b:x") == And((Not(a), b))
    assert parse("NOT a:x OR b:x") == Or((Not(a), b))
    assert parse("(a:x OR b:x) (c:x OR d:x)") == And((Or((a, b)), Or((c, d))))


def test_nested_and_or_are_flattened_and_single_terms_unwrapped():
    a, b, c = (Eq((k,), "x") for k in "abc")
    assert parse("a:x (b:x c:x)") == And((a, b, c))
    assert parse("(a:x OR b:x) OR c:x") == Or((a, b, c))
    assert parse("((a:x))") == a
    assert parse("(a:x OR (b:x OR c:x))") == Or((a, b, c))


def test_keywords_are_keys_when_followed_by_an_operator():
    assert parse("OR:x NOT:y") == And((Eq(("OR",), "x"), Eq(("NOT",), "y")))
    assert parse("or:x") == Eq(("or",), "x")


# -- errors and their positions --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position", "what"),
    [
        ("", 0, "empty query"),
        ("   ", 0, "empty query"),
        ("foo", 0, "is not a term"),
        ("a:1 foo", 4, "is not a term"),
        ("(a:1", 0, "unclosed '('"),
        ("a:1 (b:1 (c:1)", 4, "unclosed '('"),
        ("a:1)", 3, "unmatched ')'"),
        (") a:1", 0, "unmatched ')'"),
        ("()", 0, "empty parentheses"),
        ("a:1 OR", 4, "OR needs a term after it"),
        ("a:1 OR )", 4, "OR needs a term after it"),
        ("OR a:1", 0, "OR needs a term before it"),
        ("(OR a:1)", 1, "OR needs a term before it"),
        ("NOT", 0, "NOT needs a term after it"),
        ("a:1 NOT", 4, "NOT needs a term after it"),
        ("NOT OR a:1", 0, "NOT needs a term after it"),
        ("a:1 -", 4, "'-' needs a term"),
        ("- a:1", 0, "'-' needs a term"),
        ("(-)", 1, "'-' needs a term"),
        (":x", 0, "empty key"),
        ('"":x', 0, "empty key"),
        ("a..b:1", 2, "empty key part"),
        (".a:1", 0, "empty key part"),
        ("b:1 a.:1", 6, "empty key part"),
        ("a:", 2, "missing value after ':'"),
        ("a<= b:1", 3, "missing value after '<='"),
        ("(a:)", 3, "missing value"),
        ("x:/(/", 2, "invalid regex"),
        ("n:/a/ x:/(?<=a)b/", 8, "invalid regex"),
        ('a:"abc', 2, "unterminated quoted string"),
        ('a:"abc\\', 2, "unterminated quoted string"),
        ('a:"x"y', 5, "after a quoted value"),
        ('"k" a:1', 3, "quoted key needs an operator"),
        ('a:"\\n"', 3, "unknown escape"),
        ('ab"c":1', 2, "unexpected '\"'"),
        ("a:1 OR OR b:1", 4, "OR needs a term after it"),
    ],
)
def test_errors_name_what_and_where(text, position, what):
    with pytest.raises(BadRequest) as info:
        parse(text)
    err = info.value
    assert err.position == position
    assert what in err.message
    assert err.message.startswith("search error: ")
    assert err.message.endswith(f" at position {position}")
    assert err.status == 400


def test_deep_nesting_is_a_bad_request_not_a_recursion_error():
    for text in ("(" * 1000 + "a:1" + ")" * 1000, "-" * 1000 + "a:1", "NOT " * 1000 + "a:1"):
        with pytest.raises(BadRequest, match="too deeply nested"):
            parse(text)
    ok = "(" * (MAX_DEPTH - 1) + "a:1" + ")" * (MAX_DEPTH - 1)
    assert parse(ok) == In(("a",), (1, "1"))


def test_very_long_input_is_refused_with_position():
    with pytest.raises(BadRequest) as info:
        parse("a:" + "x" * MAX_QUERY_LENGTH)
    assert info.value.position == MAX_QUERY_LENGTH
    # Long but acceptable: many terms parse fine.
    text = " OR ".join(f"_id:/p/{i}" for i in range(5000))
    assert len(parse(text).nodes) == 5000


def test_non_string_and_lone_surrogate_are_bad_requests():
    with pytest.raises(BadRequest, match="must be a string"):
        parse(b"a:1")  # type: ignore[arg-type]
    with pytest.raises(BadRequest) as info:
        parse("a:x\ud800")
    assert info.value.position == 3


# -- the printer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "type:shot",
        "a.b.c:x",
        "#parent:/p/x",
        "name:/^sh/i",
        "_id:/project/",
        "n<5",
        "n<=-3.5",
        "name>=m",
        'n<"12"',
        "*",
        "k:*",
        "k:12",
        "k:true",
        "k:null",
        "k:=12",
        "k:=null",
        'k:"12"',
        'k:"a b"',
        'k:"*"',
        'k:"/^x/"',
        'k:"=12"',
        'k:""',
        '"my key":1',
        "-a:1",
        "--a:1",
        "-(a:1 b:2)",
        "-(a:1 OR b:2)",
        "a:1 b:2 OR c:3",
        "(a:1 OR b:2) c:3",
        "name:/(a|b)/ x:1",
        "-*",
        "OR:1",
    ],
)
def test_canonical_text_reads_back_identically(text):
    assert to_text(parse(text)) == text
    assert parse(to_text(parse(text))) == parse(text)


def test_printer_normalises_spelling():
    assert to_text(parse("NOT  a:x   OR (b:y)")) == "-a:x OR b:y"
    assert to_text(parse('a:"x"')) == "a:x"
    assert to_text(parse("n>1e3")) == "n>1000.0"


def test_printer_for_asts_the_parser_does_not_build():
    assert to_text(In(("k",), ("a", "b c"))) == 'k:a OR k:"b c"'
    assert to_text(In(("k",), ())) == "-*"
    assert to_text(In(("k",), (7,))) == "k:=7"
    assert to_text(And((Eq(("a",), "1"), In(("k",), (1, 2))))) == 'a:"1" (k:=1 OR k:=2)'
    assert to_text(Regex(("k",), "a b", "")) == "k:/a\\x{20}b/"
    assert to_text(Eq(("a b", "c"), True)) == '"a b.c":=true'
    assert to_text(And((Eq(("a",), "x"),))) == "a:x"
