"""Compile a search AST to one SQLite ``SELECT`` over JSON documents (JSON1), with sqlglot.

The SQL runs against a table ``elements(id TEXT, doc TEXT)`` where ``doc`` is the
element's JSON text. Every value of the query, JSON paths and keys included, is a
bound parameter: the SQL text holds only the compiler's own constants, so no key or
value can change what the statement does. The statement is built as sqlglot
expressions, one dispatch table per node type, and gives exactly the semantics of
:mod:`damas_core.query.ast` (the Python predicate implements the same rules):

- **types** come from ``json_type``, never from the SQL value, because
  ``json_extract`` turns ``true`` into ``1``: a boolean only equals a boolean, and
  numbers (``integer`` and ``real``) compare with numbers by value;
- **strings** compare with the ``BINARY`` collation, i.e. by UTF-8 bytes, which is
  code point order;
- **missing** keys: every term evaluates to 0 or 1, never SQL ``NULL``, so ``Not``
  is plain negation and ``Not(Eq)`` matches elements without the key;
- **paths** of one key whose text is plain printable ASCII (no ``"`` nor ``\\``) use
  ``json_extract(doc, ?)`` / ``json_type(doc, ?)`` with a quoted path ``$."#parent"``;
  any other key, and every dotted path, walks the document with a chain of
  ``json_each`` joined on ``key = ?``, descending into every object member of an
  array on the way (MongoDB's rule) to any depth, so no query needs a fallback;
- **arrays at the leaf** match when any member matches (``json_each``);
- **regexes** call ``re2_search(pattern, flags, value)`` and sorting on objects or
  arrays uses the ``damas_json`` collation: both are registered on a connection by
  :func:`register_functions`;
- **sorting** follows :func:`damas_core.ordering.sort_key`: a ``CASE`` on
  ``json_type`` gives the type bracket, then the scalar value, then objects and arrays
  through the collation, and ``id`` breaks ties (``id`` alone without a sort).

``indexed`` names keys that have rows in the side table
``element_index(key, value, id)`` (see :mod:`damas_core.backends.sqlite`): an
equality on such a key becomes ``id IN (SELECT id FROM element_index WHERE …)``
(and the condition itself, checked on those candidates only), so SQLite answers it
from that table's primary key.

Compiling is done once per query *shape* (node types, paths, value types, sort):
the rendered SQL is cached and only the parameters change from one call to the next.

>>> from damas_core.query.ast import Eq
>>> sql, params = to_sql(Eq(("type",), "shot"), limit=10)
>>> print(sql)  # doctest: +NORMALIZE_WHITESPACE
SELECT id FROM elements WHERE COALESCE((JSON_TYPE(doc, ?) = 'text' AND JSON_EXTRACT(doc, ?) IN (?))
OR (JSON_TYPE(doc, ?) = 'array' AND EXISTS(SELECT 1 FROM JSON_EACH(doc, ?) AS e1
WHERE e1.type = 'text' AND e1.value IN (?))), 0) ORDER BY id LIMIT ? OFFSET ?
>>> params
['$."type"', '$."type"', 'shot', '$."type"', '$."type"', 'shot', 10, 0]
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import orjson
from sqlglot import exp

from damas_core.ordering import sort_key
from damas_core.query.ast import (
    All,
    And,
    Cmp,
    Eq,
    Exists,
    In,
    Node,
    Not,
    Or,
    Path,
    Regex,
    Scalar,
    Sort,
    walk,
)

#: Name of the registered regex function and of the collation for objects and arrays.
REGEX_FUNCTION = "re2_search"
JSON_COLLATION = "damas_json"

# How booleans are stored in ``element_index.value``: blobs, so they never equal the
# numbers 0 and 1 (JSON text never produces a blob).
BOOL_BLOBS: dict[bool, bytes] = {True: b"t", False: b"f"}

_NUMBER_TYPES = ("integer", "real")
_SCALAR_TYPES = ("integer", "real", "text", "true", "false")
_CONTAINER_TYPES = ("object", "array")
# SQLite's json_type names -> damas_core.ordering brackets.
_BRACKETS = {"integer": 1, "real": 1, "text": 2, "object": 3, "array": 4, "true": 5, "false": 5}
# A key that a quoted JSON path addresses the same way on every SQLite version.
_PLAIN_KEY = re.compile(r"[ !#-\[\]-~]+")
_INT64 = (-(2**63), 2**63 - 1)


class SQLQuery(NamedTuple):
    """A statement and its positional parameters: ``conn.execute(q.sql, q.params)``."""

    sql: str
    params: list[Any]


def to_sql(
    node: Node,
    sort: Sort | Sequence[tuple[str, int]] = (),
    skip: int = 0,
    limit: int | None = None,
    *,
    indexed: Iterable[str] = (),
    columns: Sequence[str] = ("id",),
) -> SQLQuery:
    """``SELECT id FROM elements WHERE … ORDER BY … LIMIT ? OFFSET ?`` for ``node``.

    ``sort`` is a normalized sort (``(("file_size", -1),)``); ``limit`` ``None`` or 0
    means no limit. ``indexed`` lists the keys kept in ``element_index``; ``columns``
    the columns selected (``("doc",)`` to read the elements in the same statement).

    >>> from damas_core.query.ast import Exists
    >>> to_sql(Exists(("#parent",))).params
    ['$."#parent"']
    """
    values: list[Any] = []
    shape = _describe(node, values)
    paging = bool(limit or skip)
    if paging:
        values += [limit or -1, skip]
    sort = tuple((str(k), int(d)) for k, d in sort)
    template = _template(shape, sort, paging, _relevant(indexed, node), tuple(columns), False)
    return template.fill(values)


def to_where(node: Node, *, indexed: Iterable[str] = ()) -> SQLQuery:
    """Only the condition, for ``SELECT … FROM elements WHERE <sql>`` (e.g. a count)."""
    values: list[Any] = []
    shape = _describe(node, values)
    return _template(shape, (), False, _relevant(indexed, node), (), True).fill(values)


# -- compiled statements are cached by the query's shape -------------------------------
#
# Building and rendering sqlglot trees costs milliseconds, while the SQL text only
# depends on the query's shape: its node types, paths, value types and sort, not on
# the values (which are all parameters). So each shape is compiled once, with unique
# sentinel objects standing for its values, and the template remembers which
# parameter is which value.


class _Template(NamedTuple):
    sql: str
    # For each positional parameter: (True, value slot) or (False, constant).
    slots: tuple[tuple[bool, Any], ...]

    def fill(self, values: list[Any]) -> SQLQuery:
        return SQLQuery(self.sql, [_bindable(values[x]) if s else x for s, x in self.slots])


def _bindable(value: Any) -> Any:
    if type(value) is int and not _INT64[0] <= value <= _INT64[1]:
        return float(value)  # SQLite integers are 64-bit; JSON1 reads bigger ones as reals
    return value


def _kind(value: Scalar, values: list[Any]) -> Any:
    """A value's part of the shape: booleans and null themselves, else its type."""
    if value is None or isinstance(value, bool):
        return value
    values.append(value)
    return "str" if isinstance(value, str) else "num"


def _describe(node: Node, values: list[Any]) -> tuple:
    """The shape of ``node`` (hashable, value-free); its values go to ``values``."""
    t = type(node)
    if t is Eq:
        return ("Eq", node.path, _kind(node.value, values))
    if t is In:
        return ("In", node.path, tuple(_kind(v, values) for v in node.values))
    if t is Cmp:
        return ("Cmp", node.path, node.op, _kind(node.value, values))
    if t is Regex:
        values.append(node.pattern)
        return ("Regex", node.path, node.flags)
    if t is Exists:
        return ("Exists", node.path)
    if t is All:
        return ("All",)
    if t is Not:
        return ("Not", _describe(node.node, values))
    if t is And or t is Or:
        return (t.__name__, tuple(_describe(n, values) for n in node.nodes))
    raise TypeError(f"not a query node: {node!r}")


def _relevant(indexed: Iterable[str], node: Node) -> frozenset[str]:
    """The indexed keys the query could use (keeps the cache key small)."""
    keys = {n.path[0] for n in walk(node) if isinstance(n, Eq | In) and len(n.path) == 1}
    return frozenset(k for k in indexed if k in keys)


def _build(shape: tuple, sentinels: list[Any]) -> Node:
    """A node of ``shape`` whose values are fresh sentinel objects."""

    def value(kind: Any) -> Any:
        if kind is None or isinstance(kind, bool):
            return kind
        i = len(sentinels)
        # Built at run time, so each is a distinct object, recognised by identity.
        v = f"\x00slot{i}\x00" if kind == "str" else 10**12 + i
        sentinels.append(v)
        return v

    name = shape[0]
    if name == "Eq":
        return Eq(shape[1], value(shape[2]))
    if name == "In":
        return In(shape[1], tuple(value(k) for k in shape[2]))
    if name == "Cmp":
        return Cmp(shape[1], shape[2], value(shape[3]))
    if name == "Regex":
        return Regex(shape[1], value("str"), shape[2])
    if name == "Exists":
        return Exists(shape[1])
    if name == "All":
        return All()
    if name == "Not":
        return Not(_build(shape[1], sentinels))
    nodes = tuple(_build(s, sentinels) for s in shape[1])
    return And(nodes) if name == "And" else Or(nodes)


@lru_cache(maxsize=1024)
def _template(
    shape: tuple,
    sort: tuple[tuple[str, int], ...],
    paging: bool,
    indexed: frozenset[str],
    columns: tuple[str, ...],
    where_only: bool,
) -> _Template:
    sentinels: list[Any] = []
    node = _build(shape, sentinels)
    c = _Compiler(indexed)
    if where_only:
        sql, params = c.render(c.compile(node))
    else:
        query = exp.select(*(exp.column(n) for n in columns)).from_("elements")
        query = query.where(c.compile(node))
        order = [o for key, d in sort for o in c.order_terms(tuple(key.split(".")), d)]
        query = query.order_by(*order, exp.Ordered(this=exp.column("id"), nulls_first=True))
        if paging:
            limit, skip = 10**12 + len(sentinels), 10**12 + len(sentinels) + 1
            sentinels += [limit, skip]
            query = query.limit(c.param(limit)).offset(c.param(skip))
        sql, params = c.render(query)
    slot_of = {id(v): i for i, v in enumerate(sentinels)}
    slots = tuple((True, slot_of[id(p)]) if id(p) in slot_of else (False, p) for p in params)
    return _Template(sql, slots)


def register_functions(conn: sqlite3.Connection) -> None:
    """Register ``re2_search`` and the ``damas_json`` collation the compiled SQL uses."""
    conn.create_function(REGEX_FUNCTION, 3, _re2_search, deterministic=True)
    conn.create_collation(JSON_COLLATION, _json_collation)


def json_path(path: Path) -> str | None:
    """The quoted JSON path for ``path`` (``$."a"."b"``), or ``None`` when a key is not
    plain printable ASCII without ``"`` or ``\\`` (those are matched with ``json_each``).

    >>> json_path(("#parent",))
    '$."#parent"'
    >>> json_path(('say "hi"',)) is None
    True
    """
    if all(_PLAIN_KEY.fullmatch(k) for k in path):
        return "$" + "".join(f'."{k}"' for k in path)
    return None


# -- registered functions -----------------------------------------------------------


@lru_cache(maxsize=256)
def _regex(pattern: str, flags: str) -> Any:
    return Regex(("_",), pattern, flags).compiled


def _re2_search(pattern: str, flags: str, value: Any) -> int:
    if not isinstance(value, str):
        return 0
    return 1 if _regex(pattern, flags).search(value) else 0


def _json_collation(a: str, b: str) -> int:
    ka, kb = sort_key(orjson.loads(a)), sort_key(orjson.loads(b))
    return (ka > kb) - (ka < kb)


# -- the compiler -------------------------------------------------------------------


def _lit(s: str) -> exp.Literal:
    return exp.Literal.string(s)


def _fn(name: str, *args: exp.Expression) -> exp.Anonymous:
    return exp.Anonymous(this=name, expressions=list(args))


def _col(table: str, name: str) -> exp.Column:
    return exp.column(name, table=table)


def _is_in(e: exp.Expression, items: Sequence[exp.Expression]) -> exp.Expression:
    return exp.In(this=e, expressions=list(items))


def _table(source: exp.Expression, alias: str) -> exp.Table:
    return exp.Table(this=source, alias=exp.TableAlias(this=exp.to_identifier(alias)))


def _exists(select: exp.Select) -> exp.Exists:
    return exp.Exists(this=select)


def _paren(e: exp.Expression) -> exp.Expression:
    return (
        e
        if isinstance(e, exp.Paren | exp.Exists | exp.Coalesce | exp.Boolean)
        else exp.Paren(this=e)
    )


# A test of one candidate value: (json type expression, SQL value expression) -> condition.
Cond = Callable[[exp.Expression, exp.Expression], exp.Expression]


class _Nodes:
    """The values found at a path: either one value addressed by a JSON path
    (``path`` is set) or the rows of the last alias of a ``json_each`` chain.

    ``objects[i]`` is, for the chain, the alias of the objects looked into for key
    ``i`` (``None`` for the document itself) and ``keys[i]`` that key's parameter,
    so that a key missing from an object on the way can be found.
    """

    def __init__(
        self,
        *,
        path: exp.Expression | None = None,
        tables: list[exp.Expression] | None = None,
        conds: list[exp.Expression] | None = None,
        alias: str = "",
    ) -> None:
        self.path = path
        self.tables = tables or []
        self.conds = conds or []
        self.alias = alias
        # (number of tables and conds before level i, alias of the object, key param)
        self.levels: list[tuple[int, int, str | None, exp.Expression]] = []

    def select(self, *extra: exp.Expression, upto: tuple[int, int] | None = None) -> exp.Select:
        tables, conds = self.tables, self.conds
        if upto is not None:
            tables, conds = tables[: upto[0]], conds[: upto[1]]
        q = exp.select(exp.Literal.number(1)).from_(tables[0])
        for t in tables[1:]:
            q = q.join(t, join_type="CROSS")
        return q.where(exp.and_(*conds, *extra)) if (conds or extra) else q


class _Compiler:
    def __init__(self, indexed: frozenset[str]) -> None:
        self.indexed = indexed
        self.params: list[Any] = []
        self.aliases = 0
        self.visit: dict[type[Node], Callable[[Any], exp.Expression]] = {
            All: self._all,
            Exists: self._exists,
            Eq: self._eq,
            In: self._in,
            Cmp: self._cmp,
            Regex: self._regex,
            Not: self._not,
            And: self._and,
            Or: self._or,
        }

    # -- plumbing -------------------------------------------------------------------

    def compile(self, node: Node) -> exp.Expression:
        try:
            visit = self.visit[type(node)]
        except KeyError:
            raise TypeError(f"not a query node: {node!r}") from None
        return visit(node)

    def param(self, value: Any) -> exp.Placeholder:
        self.params.append(value)
        return exp.Placeholder(this=f"p{len(self.params) - 1}")

    def alias(self, prefix: str) -> str:
        self.aliases += 1
        return f"{prefix}{self.aliases}"

    def render(self, tree: exp.Expression) -> SQLQuery:
        sql = tree.sql(dialect="sqlite")
        params: list[Any] = []

        # Named placeholders become positional ones in the order they appear in the text.
        def positional(m: re.Match[str]) -> str:
            params.append(self.params[int(m.group(1))])
            return "?"

        return SQLQuery(re.sub(r":p(\d+)\b", positional, sql), params)

    # -- where the values at a path come from -----------------------------------------

    def nodes(self, path: Path) -> _Nodes:
        """The values at ``path``, through arrays of objects on the way."""
        if len(path) == 1 and (p := json_path(path)) is not None:
            return _Nodes(path=self.param(p))
        n = _Nodes()
        doc = exp.column("doc")
        j = self.alias("j")
        key = self.param(path[0])
        n.levels.append((0, 0, None, key))
        n.tables.append(_table(_fn("json_each", doc), j))
        n.conds.append(exp.EQ(this=_col(j, "key"), expression=key))
        for name in path[1:]:
            # The objects to look into: the previous value itself, or the members of an array.
            t, v = _col(j, "type"), _col(j, "value")
            objects = exp.Case(
                ifs=[
                    exp.If(this=exp.EQ(this=t, expression=_lit("array")), true=v),
                    exp.If(
                        this=exp.EQ(this=t, expression=_lit("object")),
                        true=_fn("json_array", _fn("json", v)),
                    ),
                ],
                default=_lit("[]"),
            )
            m = self.alias("m")
            n.tables.append(_table(_fn("json_each", objects), m))
            n.conds.append(exp.EQ(this=_col(m, "type"), expression=_lit("object")))
            key = self.param(name)
            n.levels.append((len(n.tables), len(n.conds), m, key))
            # CASE keeps json_each away from a non-object even if SQLite evaluated it early.
            member = exp.Case(
                ifs=[
                    exp.If(
                        this=exp.EQ(this=_col(m, "type"), expression=_lit("object")),
                        true=_col(m, "value"),
                    )
                ],
                default=_lit("{}"),
            )
            j = self.alias("j")
            n.tables.append(_table(_fn("json_each", member), j))
            n.conds.append(exp.EQ(this=_col(j, "key"), expression=key))
        n.alias = j
        return n

    def missing(self, n: _Nodes) -> exp.Expression:
        """Some object reached on the way to the end of the chain lacks the next key."""
        terms: list[exp.Expression] = []
        for tables, conds, obj, key in n.levels:
            x = self.alias("x")
            source = exp.column("doc") if obj is None else _col(obj, "value")
            has_key = _exists(
                exp.select(exp.Literal.number(1))
                .from_(_table(_fn("json_each", source), x))
                .where(exp.EQ(this=_col(x, "key"), expression=key))
            )
            if obj is None:
                terms.append(exp.Not(this=has_key))
            else:
                terms.append(_exists(n.select(exp.Not(this=has_key), upto=(tables, conds))))
        return exp.or_(*terms)

    def leaf(self, path: Path, cond: Cond, *, missing: bool = False) -> exp.Expression:
        """True when a value at ``path``, or a member of an array there, passes ``cond``;
        with ``missing``, also when an object on the way lacks the next key."""
        n = self.nodes(path)
        e = self.alias("e")
        if n.path is not None:
            doc = exp.column("doc")
            t, v = _fn("json_type", doc, n.path), _fn("json_extract", doc, n.path)
            members = _table(_fn("json_each", doc, n.path), e)
        else:
            t, v = _col(n.alias, "type"), _col(n.alias, "value")
            members = _table(_fn("json_each", _col(n.alias, "value")), e)
        in_array = exp.and_(
            exp.EQ(this=t, expression=_lit("array")),
            _exists(
                exp.select(exp.Literal.number(1))
                .from_(members)
                .where(cond(_col(e, "type"), _col(e, "value")))
            ),
        )
        one = exp.or_(cond(t, v), in_array)
        if n.path is not None:
            if missing:
                one = exp.or_(exp.Is(this=t, expression=exp.null()), one)
            # json_type is NULL for a missing key: make the term 0, never NULL.
            return exp.Coalesce(this=one, expressions=[exp.Literal.number(0)])
        found = _exists(n.select(_paren(one)))
        if missing:
            return exp.or_(self.missing(n), found)
        return found

    # -- conditions on one candidate value -------------------------------------------

    def value_cond(self, values: Sequence[Scalar]) -> Cond:
        """Equality with any of ``values``, typed as the AST says."""
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        strings = [v for v in values if isinstance(v, str)]
        types = [
            name
            for flag, name in ((True, "true"), (False, "false"))
            if any(v is flag for v in values)
        ]
        if None in values:
            types.append("null")

        def cond(t: exp.Expression, v: exp.Expression) -> exp.Expression:
            terms: list[exp.Expression] = []
            if numbers:
                terms.append(
                    exp.and_(
                        _is_in(t, [_lit(n) for n in _NUMBER_TYPES]),
                        _is_in(v, [self.param(n) for n in numbers]),
                    )
                )
            if strings:
                terms.append(
                    exp.and_(
                        exp.EQ(this=t, expression=_lit("text")),
                        _is_in(v, [self.param(s) for s in strings]),
                    )
                )
            if types:
                terms.append(_is_in(t, [_lit(n) for n in types]))
            return exp.or_(*terms) if terms else exp.false()

        return cond

    # -- one method per node type -----------------------------------------------------

    def _all(self, node: All) -> exp.Expression:
        return exp.true()

    def _exists(self, node: Exists) -> exp.Expression:
        n = self.nodes(node.path)
        if n.path is not None:
            return exp.Not(
                this=exp.Is(this=_fn("json_type", exp.column("doc"), n.path), expression=exp.null())
            )
        return _exists(n.select())

    def _eq(self, node: Eq) -> exp.Expression:
        return self._in(In(node.path, (node.value,)))

    def _in(self, node: In) -> exp.Expression:
        if not node.values:
            return exp.false()
        match = self.leaf(node.path, self.value_cond(node.values), missing=None in node.values)
        if len(node.path) == 1 and node.path[0] in self.indexed and None not in node.values:
            # The index finds the candidates; the condition, checked on those few
            # documents only, keeps the answer exact whatever the index holds.
            return exp.and_(self._indexed(node.path[0], node.values), _paren(match))
        return match

    def _indexed(self, key: str, values: Sequence[Scalar]) -> exp.Expression:
        encoded = [BOOL_BLOBS[v] if isinstance(v, bool) else v for v in values]
        sub = (
            exp.select(exp.column("id"))
            .from_("element_index")
            .where(
                exp.and_(
                    exp.EQ(this=exp.column("key"), expression=self.param(key)),
                    _is_in(exp.column("value"), [self.param(v) for v in encoded]),
                )
            )
        )
        return exp.column("id").isin(query=sub)

    def _cmp(self, node: Cmp) -> exp.Expression:
        ops = {"<": exp.LT, "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE}
        op = ops[node.op]
        if node.path == ("_id",) and isinstance(node.value, str):
            # Every element has a string _id, the id column: a range of the primary key.
            return op(this=exp.column("id"), expression=self.param(node.value))
        types = _NUMBER_TYPES if not isinstance(node.value, str) else ("text",)

        def cond(t: exp.Expression, v: exp.Expression) -> exp.Expression:
            return exp.and_(
                _is_in(t, [_lit(n) for n in types]), op(this=v, expression=self.param(node.value))
            )

        return self.leaf(node.path, cond)

    def _regex(self, node: Regex) -> exp.Expression:
        def cond(t: exp.Expression, v: exp.Expression) -> exp.Expression:
            return exp.and_(
                exp.EQ(this=t, expression=_lit("text")),
                _fn(REGEX_FUNCTION, self.param(node.pattern), self.param(node.flags), v),
            )

        return self.leaf(node.path, cond)

    def _not(self, node: Not) -> exp.Expression:
        return exp.Not(this=_paren(self.compile(node.node)))

    def _and(self, node: And) -> exp.Expression:
        return exp.and_(*(_paren(self.compile(n)) for n in node.nodes))

    def _or(self, node: Or) -> exp.Expression:
        return _paren(exp.or_(*(_paren(self.compile(n)) for n in node.nodes)))

    # -- sorting -----------------------------------------------------------------------

    def sort_value(self, path: Path) -> tuple[exp.Expression, exp.Expression]:
        """(json type, value) at ``path`` descending through objects only, as
        :func:`damas_core.backends.base.resolve_first` does; both NULL when missing."""
        p = json_path(path)
        doc = exp.column("doc")
        if p is not None:
            return _fn("json_type", doc, self.param(p)), _fn("json_extract", doc, self.param(p))
        # A chain of json_each, one per key, each looking into the previous object.
        source: exp.Expression = doc
        tables: list[exp.Expression] = []
        conds: list[exp.Expression] = []
        j = ""
        for key in path:
            j = self.alias("s")
            tables.append(_table(_fn("json_each", source), j))
            conds.append(exp.EQ(this=_col(j, "key"), expression=self.param(key)))
            source = exp.Case(
                ifs=[
                    exp.If(
                        this=exp.EQ(this=_col(j, "type"), expression=_lit("object")),
                        true=_col(j, "value"),
                    )
                ],
                default=_lit("{}"),
            )
        chain = _Nodes(tables=tables, conds=conds, alias=j)

        def pick(column: str) -> exp.Expression:
            q = chain.select()
            q.set("expressions", [_col(j, column)])
            return exp.Subquery(this=q)

        return pick("type"), pick("value")

    def order_terms(self, path: Path, direction: int) -> list[exp.Ordered]:
        t, v = self.sort_value(path)
        desc = direction < 0
        bracket = exp.Case(
            this=t,
            ifs=[
                exp.If(this=_lit(name), true=exp.Literal.number(b)) for name, b in _BRACKETS.items()
            ],
            default=exp.Literal.number(0),
        )
        scalar = exp.Case(ifs=[exp.If(this=_is_in(t, [_lit(n) for n in _SCALAR_TYPES]), true=v)])
        container = exp.Collate(
            this=exp.Case(
                ifs=[exp.If(this=_is_in(t, [_lit(n) for n in _CONTAINER_TYPES]), true=v)]
            ),
            expression=exp.Var(this=JSON_COLLATION),
        )
        return [
            exp.Ordered(this=e, desc=desc, nulls_first=not desc)
            for e in (bracket, scalar, container)
        ]


__all__ = [
    "BOOL_BLOBS",
    "JSON_COLLATION",
    "REGEX_FUNCTION",
    "SQLQuery",
    "json_path",
    "register_functions",
    "to_sql",
    "to_where",
]
