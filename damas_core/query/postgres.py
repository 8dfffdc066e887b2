"""Compile a search AST to a PostgreSQL condition over ``elements(id, doc jsonb)``.

The condition is SQL text made only of the compiler's own constants; every value of
the query is a bound parameter (``%s``, psycopg's placeholder). A path and its test
become one SQL/JSON path, bound as a ``jsonpath`` parameter and applied with
``doc @? %s``, which the GIN ``jsonb_path_ops`` index on ``doc`` answers for
equalities. Keys and strings inside that path are written as JSON strings
(:func:`json_string`), so no key or value can change what the path does.

Semantics are those of :mod:`damas_core.query.ast` (the Python predicate is the
reference, and a Hypothesis test holds this compiler to it):

- **paths** are ``lax``: a member accessor applied to an array looks into each of its
  members that is an object, one level deep (MongoDB's rule), and a missing key or a
  non-object gives nothing;
- **equality on one key** is a containment, ``doc @> {"k": v} OR doc @> {"k": [v]}``,
  which the GIN index answers without rechecking a path on each candidate;
- **arrays at the leaf**: the filter ``? (…)`` runs on each member of an array found
  at the end of the path. ``lax`` also unwraps arrays inside a comparison, so every
  test starts with ``@.type() == "…"``: an array nested in an array never matches;
- **types**: a test names the JSON type it accepts, so ``true`` never equals ``1`` nor
  ``"1"`` equals ``1``; numbers compare by value (``numeric``: exact), strings by code
  point (PostgreSQL's jsonpath compares strings by code point in a UTF-8 database);
- **missing**: ``Eq(path, None)`` also matches when an object on the way lacks the
  next key: ``$."a" ? (@.type() == "object" && !exists(@."b"))``;
- **declared keys** (``indexes``): a comparison on one of them with a number or a
  string compiles to the value the key's expression indexes hold
  (:func:`index_statements`: the number, or the string ``COLLATE "C"``, ``NULL`` for
  any other type), or an object or an array at the key and the path test, which a
  partial index finds; so a range on a declared key is a range of a B-tree. Under a ``NOT`` the path
  test stays (``NULL`` would not negate to true);
- ``_id`` is the ``id`` column (text ``COLLATE "C"``, the primary key): equalities,
  comparisons and, from :func:`~damas_core.backends.base.id_prefix`, a prefix are key
  ranges;
- **regexes** are not PostgreSQL's (``~`` is not RE2): a regex term compiles to
  "maybe" (``TRUE`` where a match could follow from it, ``FALSE`` under a ``NOT``), so
  the condition selects a superset and :attr:`Where.recheck` tells the backend to keep
  only what the Python predicate accepts. A key or a string holding ``\\u0000``, which
  a jsonpath cannot hold, is handled the same way.

>>> w = to_where(parse_query("a.type:shot"))
>>> w.sql, w.params
('doc @? %s::jsonpath', ['lax $."a"."type" ? ((@.type() == "string" && @ == "shot"))'])
>>> to_where(parse_query("type:shot")).params
['{"type":"shot"}', '{"type":["shot"]}']
>>> to_where(parse_query("_id:/^\\\\/a/ n>1")).sql  # a literal prefix is a range
'((id >= %s AND id < %s) AND doc @? %s::jsonpath)'
>>> to_where(parse_query("name:/^a/")).recheck
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from damas_core.backends.base import prefix_range
from damas_core.query.ast import All, And, Cmp, Eq, Exists, In, Node, Not, Or, Path, Regex, Scalar

# SQL/JSON type names for the types a test accepts.
_TYPE_OF: dict[type, str] = {str: "string", int: "number", float: "number", bool: "boolean"}
# Sort brackets of damas_core.ordering, by jsonb_typeof.
_BRACKETS = (("number", 1), ("string", 2), ("object", 3), ("array", 4), ("boolean", 5))


class Where(NamedTuple):
    """A condition, its parameters, and whether its rows must be checked in Python."""

    sql: str
    params: list[Any]
    recheck: bool


def parse_query(text: str) -> Node:
    """The AST of a query string (for the examples)."""
    from damas_core.query.parser import parse

    return parse(text)


def json_string(text: str) -> str:
    """``text`` as a jsonpath string literal (JSON's escapes, which jsonpath reads).

    >>> json_string('say "hi"')
    '"say \\\\"hi\\\\""'
    """
    return orjson.dumps(text).decode()


def json_path(path: Path, mode: str = "lax") -> str:
    """The jsonpath of ``path``: ``lax $."a"."b"``.

    >>> json_path(("a", "#b"))
    'lax $."a"."#b"'
    """
    return f"{mode} $" + "".join("." + json_string(k) for k in path)


def _literal(value: Scalar) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return json_string(value)
    return orjson.dumps(value).decode()


def _test(value: Scalar, op: str = "==") -> str:
    """One member test: the JSON type, then the comparison."""
    kind = "null" if value is None else _TYPE_OF[type(value)]
    return f'(@.type() == "{kind}" && @ {op} {_literal(value)})'


def _unsafe(path: Path, values: tuple[Any, ...] = ()) -> bool:
    """True when a key or string value holds NUL, which jsonpath cannot carry."""
    return any("\x00" in k for k in path) or any(isinstance(v, str) and "\x00" in v for v in values)


def _key_literal(key: str) -> str:
    """``key`` as an SQL string literal (a constant, so an index expression can match)."""
    return "'" + key.replace("'", "''") + "'"


def key_value(key: str, kind: str) -> str:
    """The expression an index on the top-level ``key`` holds for ``kind`` (``number``
    or ``string``): its value when it has that JSON type, else ``NULL``.

    >>> key_value("n", "number")
    "(CASE WHEN jsonb_typeof(doc->'n') = 'number' THEN (doc->'n')::numeric END)"
    """
    k = _key_literal(key)
    if kind == "number":
        return f"(CASE WHEN jsonb_typeof(doc->{k}) = 'number' THEN (doc->{k})::numeric END)"
    return f"(CASE WHEN jsonb_typeof(doc->{k}) = 'string' THEN doc->>{k} END) COLLATE \"C\""


def index_statements(key: str) -> list[str]:
    """``CREATE INDEX`` statements for the declared top-level ``key``: its numbers, its
    strings (by code point), as a partial index the rows holding an object or an array
    there, and the ascending common order (:func:`sort_terms`, then ``id``).

    >>> len(index_statements("shot"))
    4
    """
    name = "elements_k" + hashlib.sha1(key.encode()).hexdigest()[:16]
    order = ", ".join(f"({e}) ASC NULLS FIRST" for e in _sort_exprs(key_column(key)))
    return [
        f"CREATE INDEX IF NOT EXISTS {name}n ON elements ({key_value(key, 'number')})",
        f"CREATE INDEX IF NOT EXISTS {name}s ON elements (({key_value(key, 'string')}))",
        f"CREATE INDEX IF NOT EXISTS {name}c ON elements (id) WHERE {composite(key)}",
        f"CREATE INDEX IF NOT EXISTS {name}o ON elements ({order}, id)",
    ]


class _Compiler:
    def __init__(self, indexed: tuple[str, ...] = ()) -> None:
        self.indexed = indexed
        self.params: list[Any] = []
        self.recheck = False
        self.visit: dict[type, Callable[[Any, bool], str]] = {
            All: lambda n, pos: "TRUE",
            Exists: self._exists,
            Eq: lambda n, pos: self._in(In(n.path, (n.value,)), pos),
            In: self._in,
            Cmp: self._cmp,
            Regex: self._regex,
            Not: lambda n, pos: f"NOT ({self.compile(n.node, not pos)})",
            And: lambda n, pos: "(" + " AND ".join(self.compile(x, pos) for x in n.nodes) + ")",
            Or: lambda n, pos: "(" + " OR ".join(self.compile(x, pos) for x in n.nodes) + ")",
        }

    def compile(self, node: Node, positive: bool = True) -> str:
        """``positive``: the node is under an even number of ``Not``s."""
        try:
            visit = self.visit[type(node)]
        except KeyError:
            raise TypeError(f"not a query node: {node!r}") from None
        return visit(node, positive)

    def param(self, value: Any) -> str:
        self.params.append(value)
        return "%s"

    def has_path(self, jsonpath: str) -> str:
        return f"doc @? {self.param(jsonpath)}::jsonpath"

    def _maybe(self, node: Node, positive: bool) -> str:
        self.recheck = True
        return "TRUE" if positive else "FALSE"

    def _regex(self, node: Regex, positive: bool) -> str:
        spanned = prefix_range(node)
        if spanned is not node:  # ^ and a literal on _id: that range of the primary key
            return self.compile(spanned, positive)
        return self._maybe(node, positive)

    def _exists(self, node: Exists, positive: bool) -> str:
        if node.path == ("_id",):
            return "TRUE"
        if _unsafe(node.path):
            return self._maybe(node, positive)
        return self.has_path(json_path(node.path))

    def _in(self, node: In, positive: bool) -> str:
        if _unsafe(node.path, node.values):
            return self._maybe(node, positive)
        if node.path == ("_id",):
            ids = [v for v in node.values if isinstance(v, str)]
            return f"id = ANY({self.param(ids)})" if ids else "FALSE"
        if not node.values:
            return "FALSE"
        if len(node.path) == 1 and None not in node.values:
            # Containment, which the GIN index answers directly: {"k": v} holds when k
            # is v, {"k": [v]} when v is a member of an array at k (never 1 for true,
            # nor a member of an array nested in it).
            key = node.path[0]
            shapes = [{key: v} for v in node.values] + [{key: [v]} for v in node.values]
            return (
                "("
                + " OR ".join(
                    f"doc @> {self.param(orjson.dumps(x).decode())}::jsonb" for x in shapes
                )
                + ")"
            )
        tests = [_test(v) for v in dict.fromkeys(node.values, None)]
        found = self.has_path(f"{json_path(node.path)} ? ({' || '.join(tests)})")
        if None not in node.values:
            return found
        return f"({found} OR {self._missing(node.path)})"

    def _missing(self, path: Path) -> str:
        """Some object on the way to the end of ``path`` lacks the next key."""
        terms = [
            self.has_path(
                f"{json_path(path[:i])} ? "
                f'(@.type() == "object" && !exists(@.{json_string(path[i])}))'
            )
            for i in range(len(path))
        ]
        return "(" + " OR ".join(terms) + ")"

    def _cmp(self, node: Cmp, positive: bool) -> str:
        if _unsafe(node.path, (node.value,)):
            return self._maybe(node, positive)
        if node.path == ("_id",):
            if not isinstance(node.value, str):
                return "FALSE"
            return f"id {node.op} {self.param(node.value)}"
        test = f"{json_path(node.path)} ? {_test(node.value, node.op)}"
        kind = _TYPE_OF.get(type(node.value))
        key = node.path[0]
        if not positive or node.path != (key,) or key not in self.indexed or kind == "boolean":
            return self.has_path(test)
        value = self.param(orjson.dumps(node.value).decode() if kind == "number" else node.value)
        cast = "::numeric" if kind == "number" else ""
        found = self.has_path(test)
        # An object at the key never passes the test: written so, the clause is the
        # partial index's condition.
        return f"({key_value(key, kind)} {node.op} {value}{cast} OR ({composite(key)} AND {found}))"


def to_where(node: Node, indexed: tuple[str, ...] = ()) -> Where:
    """The condition selecting what ``node`` matches (a superset when ``recheck``);
    ``indexed``: the declared keys, which have the indexes of :func:`index_statements`.

    >>> print(to_where(parse_query("n>2"), indexed=("n",)).sql)  # doctest: +ELLIPSIS
    ((CASE WHEN jsonb_typeof(doc->'n') = 'number' ...) > %s::numeric OR (... IN ('object', 'array') AND doc @? %s::jsonpath))
    """
    c = _Compiler(indexed)
    sql = c.compile(node)
    return Where(sql, c.params, c.recheck)


def sort_value(path: Path) -> tuple[str, list[Any]]:
    """The value to sort by at ``path``, descending through objects only, as
    :func:`~damas_core.backends.base.resolve_first` does (SQL ``NULL`` when missing).

    >>> sort_value(("a", "b"))
    ("jsonb_path_query_first(doc, %s::jsonpath, '{}', true)", ['strict $."a"."b"'])
    """
    if path == ("_id",):
        return "to_jsonb(id)", []
    return "jsonb_path_query_first(doc, %s::jsonpath, '{}', true)", [json_path(path, "strict")]


def _sort_exprs(column: str) -> list[str]:
    kind = f"jsonb_typeof({column})"
    bracket = (
        f"CASE {kind} " + " ".join(f"WHEN '{n}' THEN {b}" for n, b in _BRACKETS) + " ELSE 0 END"
    )
    return [
        bracket,
        f"CASE WHEN {kind} = 'number' THEN ({column})::numeric END",
        f"CASE WHEN {kind} = 'string' THEN {column} #>> '{{}}' END COLLATE \"C\"",
        f"CASE WHEN {kind} = 'boolean' THEN ({column})::boolean END",
    ]


def sort_terms(column: str, direction: int) -> list[str]:
    """``ORDER BY`` terms giving :func:`damas_core.ordering.sort_key`'s order for the
    scalars in the jsonb ``column``: the type bracket, then the number, the string
    (``COLLATE "C"``: code points) and the boolean. Objects and arrays only get their
    bracket: the backend sorts those in Python.

    >>> print(sort_terms("s0", 1)[2])
    CASE WHEN jsonb_typeof(s0) = 'string' THEN s0 #>> '{}' END COLLATE "C" ASC NULLS FIRST
    """
    order = "DESC NULLS LAST" if direction < 0 else "ASC NULLS FIRST"
    return [f"{t} {order}" for t in _sort_exprs(column)]


def key_column(key: str) -> str:
    """The value of the top-level ``key`` as ``sort_value`` gives it, written with the
    key as a constant, as the indexes of :func:`index_statements` hold it.

    >>> key_column("n")
    "(doc->'n')"
    """
    return f"(doc->{_key_literal(key)})"


def composite(key: str) -> str:
    """True for a row holding an object or an array at the top-level ``key`` (a
    partial index of :func:`index_statements` finds them)."""
    return f"jsonb_typeof(doc->{_key_literal(key)}) IN ('object', 'array')"


__all__ = [
    "Where",
    "composite",
    "index_statements",
    "json_path",
    "json_string",
    "key_column",
    "key_value",
    "sort_terms",
    "sort_value",
    "to_where",
]
