"""damas-core ``search_mongo`` query dicts → the search AST.

``search_mongo`` takes a MongoDB filter. :func:`from_mongo` turns it into the same AST
the text language gives, so every backend runs it, not only MongoDB.

Supported: implicit equality (``{"type": "shot"}``), dotted keys, ``$eq $ne $gt
$gte $lt $lte $in $nin $exists $regex`` (with ``$options``) ``$not`` on a key, and
``$and $or $nor`` at any query level. As damas-core does, every string value
``"REGEX_<pattern>"`` or ``"RX_<pattern>_RX<flags>"`` is a regex; a compiled Python
``re.Pattern`` is one too.

What the caller can rely on:

- ``{}`` is :class:`~damas_core.query.ast.All`; several keys are ANDed in order.
- ``$ne: v`` is ``Not(Eq)``, ``$nin`` is ``Not(In)``, ``$exists: false`` is
  ``Not(Exists)``, so they match elements without the key, as in MongoDB.
- Valid MongoDB that this library does not run (``$where``, ``$elemMatch``,
  ``$size``, ``$type``, ``$expr``, ``$text``, any other operator, equality with an
  object or an array, the ``x`` regex option) raises
  :class:`~damas_core.errors.NotImplementedByBackend` (501) naming it.
- Malformed input (a query that is not an object, ``$in`` without a list, ``$and``
  without a non-empty list, ``$gt`` with an object, operators mixed with keys, …)
  raises :class:`~damas_core.errors.BadRequest` (400).

>>> from_mongo({"type": "shot", "file_size": {"$gt": 100}})
And(nodes=(Eq(path=('type',), value='shot'), Cmp(path=('file_size',), op='>', value=100)))
>>> from_mongo({"_id": "RX_^/project/_RXi"})
Regex(path=('_id',), pattern='^/project/', flags='i')
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final, NoReturn

from damas_core.errors import BadRequest, NotImplementedByBackend
from damas_core.query.ast import (
    REGEX_FLAGS,
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
)

#: Deepest nesting of ``$and``/``$or``/``$nor``/``$not`` accepted.
MAX_DEPTH: Final = 100

_SCALARS: Final = (str, int, float, bool, type(None))


def _bad(what: str) -> NoReturn:
    raise BadRequest(f"search_mongo error: {what}")


def _unsupported(what: str) -> NoReturn:
    raise NotImplementedByBackend(f"search_mongo error: {what} is not supported")


def regex_string(value: str) -> tuple[str, str] | None:
    """``(pattern, flags)`` for damas-core's regex strings, else ``None``.

    ``"REGEX_<pattern>"`` has no flags; ``"RX_<pattern>_RX<flags>"`` splits at the
    last ``_RX`` (without one, everything after ``RX_`` is the pattern).

    >>> regex_string("RX_a_RX_b_RXgi"), regex_string("REGEX_^x"), regex_string("x")
    (('a_RX_b', 'gi'), ('^x', ''), None)
    """
    if value.startswith("REGEX_"):
        return value[6:], ""
    if value.startswith("RX_"):
        end = value.rfind("_RX", 3)
        if end < 0:
            return value[3:], ""
        return value[3:end], value[end + 3 :]
    return None


def _as_regex(value: Any) -> tuple[str, str] | None:
    """``(pattern, flags)`` when ``value`` stands for a regex."""
    if isinstance(value, str):
        return regex_string(value)
    if isinstance(value, re.Pattern):
        if not isinstance(value.pattern, str):
            _bad("a regex pattern must be text, not bytes")
        if value.flags & re.VERBOSE:
            _unsupported("the regex option x (verbose)")
        flags = "".join(
            f
            for f, bit in (("i", re.IGNORECASE), ("m", re.MULTILINE), ("s", re.DOTALL))
            if value.flags & bit
        )
        return value.pattern, flags
    return None


def _regex_node(path: Path, pattern: str, flags: str) -> Regex:
    if "x" in flags:
        _unsupported("the regex option x (extended)")
    flags = "".join(dict.fromkeys(flags))
    bad = sorted(set(flags) - set(REGEX_FLAGS))
    if bad:
        _bad(f"unknown regex option {''.join(bad)!r} (known: {REGEX_FLAGS})")
    try:
        return Regex(path, pattern, flags)
    except UnicodeEncodeError:
        _bad("a regex pattern cannot hold a lone surrogate")


def _path(key: Any) -> Path:
    if not isinstance(key, str):
        _bad(f"a key must be a string, not {type(key).__name__}")
    if key == "" or "" in key.split("."):
        _bad(f"empty key part in {key!r}")
    return tuple(key.split("."))


def _and(nodes: list[Node]) -> Node:
    flat: list[Node] = []
    for n in nodes:
        flat.extend(n.nodes if isinstance(n, And) else (n,))
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def _or(nodes: list[Node]) -> Node:
    flat: list[Node] = []
    for n in nodes:
        flat.extend(n.nodes if isinstance(n, Or) else (n,))
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


def _nothing(path: Path) -> Node:
    """Matches no element (an equality with no value)."""
    return In(path, ())


# -- a query (top level, or one member of $and/$or/$nor) ------------------------------------


def _query(query: Any, depth: int) -> Node:
    if not isinstance(query, Mapping):
        _bad(f"a query must be an object, not {type(query).__name__}")
    if depth > MAX_DEPTH:
        _bad(f"query nested too deeply (at most {MAX_DEPTH} levels)")
    terms: list[Node] = []
    for key, value in query.items():
        if isinstance(key, str) and key.startswith("$"):
            terms.append(_logical(key, value, depth))
        else:
            terms.append(_field(_path(key), key, value, depth))
    return _and(terms) if terms else All()


def _logical(op: str, value: Any, depth: int) -> Node:
    if op not in ("$and", "$or", "$nor"):
        if op == "$not":
            _bad("$not applies to a key: {key: {$not: {...}}}")
        _unsupported(f"the operator {op}")
    if not isinstance(value, list | tuple) or not value:
        _bad(f"{op} needs a non-empty list of queries")
    nodes = [_query(q, depth + 1) for q in value]
    if op == "$and":
        return _and(nodes)
    if op == "$or":
        return _or(nodes)
    return Not(_or(nodes))


# -- the condition on one key -------------------------------------------------------------


def _field(path: Path, key: str, value: Any, depth: int) -> Node:
    if isinstance(value, Mapping):
        ops = [k for k in value if isinstance(k, str) and k.startswith("$")]
        if not value or not ops:
            _unsupported(f"equality with an object (key {key!r})")
        if len(ops) != len(value):
            _bad(f"{key!r} mixes operators and keys")
        return _operators(path, key, value, depth)
    return _equal(path, key, value, "equality")


def _equal(path: Path, key: str, value: Any, what: str) -> Node:
    regex = _as_regex(value)
    if regex is not None:
        return _regex_node(path, *regex)
    if isinstance(value, Mapping | list | tuple):
        _unsupported(
            f"{what} with an {'object' if isinstance(value, Mapping) else 'array'} (key {key!r})"
        )
    if not isinstance(value, _SCALARS):
        _bad(f"{what} needs a string, number, boolean or null (key {key!r})")
    return Eq(path, value)


def _operators(path: Path, key: str, ops: Mapping[str, Any], depth: int) -> Node:
    if depth > MAX_DEPTH:
        _bad(f"query nested too deeply (at most {MAX_DEPTH} levels)")
    if "$options" in ops and "$regex" not in ops:
        _bad(f"$options needs $regex (key {key!r})")
    nodes: list[Node] = []
    for op, arg in ops.items():
        if op == "$options":
            continue
        handler = _FIELD_OPERATORS.get(op)
        if handler is None:
            if op in ("$and", "$or", "$nor"):
                _bad(f"{op} is a query operator, not a key operator (key {key!r})")
            _unsupported(f"the operator {op}")
        nodes.append(handler(path, key, arg, ops, depth))
    return _and(nodes)


def _op_eq(path: Path, key: str, arg: Any, ops: Mapping[str, Any], depth: int) -> Node:
    return _equal(path, key, arg, "$eq")


def _op_ne(path: Path, key: str, arg: Any, ops: Mapping[str, Any], depth: int) -> Node:
    return Not(_equal(path, key, arg, "$ne"))


def _members(path: Path, key: str, arg: Any, op: str) -> Node:
    if not isinstance(arg, list | tuple):
        _bad(f"{op} needs a list (key {key!r})")
    scalars: list[Any] = []
    regexes: list[Node] = []
    for v in arg:
        regex = _as_regex(v)
        if regex is not None:
            regexes.append(_regex_node(path, *regex))
        elif isinstance(v, Mapping | list | tuple):
            _unsupported(f"{op} with an object or array member (key {key!r})")
        elif not isinstance(v, _SCALARS):
            _bad(f"{op} members must be strings, numbers, booleans or null (key {key!r})")
        else:
            scalars.append(v)
    if not regexes:
        return In(path, tuple(scalars))
    return _or(([In(path, tuple(scalars))] if scalars else []) + regexes)


def _op_in(path: Path, key: str, arg: Any, ops: Mapping[str, Any], depth: int) -> Node:
    return _members(path, key, arg, "$in")


def _op_nin(path: Path, key: str, arg: Any, ops: Mapping[str, Any], depth: int) -> Node:
    return Not(_members(path, key, arg, "$nin"))


def _op_exists(path: Path, key: str, arg: Any, ops: Mapping[str, Any], depth: int) -> Node:
    if not isinstance(arg, bool | int | float):
        _bad(f"$exists needs true or false (key {key!r})")
    return Exists(path) if arg else Not(Exists(path))


# MongoDB compares booleans and null within their own type: false < true, null only
# equals null (or missing). The AST's Cmp is for numbers and strings, so these become
# equalities.
_BOOLEAN_RANGES: Final[dict[tuple[str, bool], tuple[bool, ...]]] = {
    ("$gt", False): (True,),
    ("$gt", True): (),
    ("$gte", False): (False, True),
    ("$gte", True): (True,),
    ("$lt", False): (),
    ("$lt", True): (False,),
    ("$lte", False): (False,),
    ("$lte", True): (False, True),
}
_COMPARISONS: Final = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def _op_compare_for(op: str) -> Callable[..., Node]:
    def compare(path: Path, key: str, arg: Any, ops: Mapping[str, Any], depth: int) -> Node:
        if isinstance(arg, bool):
            values = _BOOLEAN_RANGES[(op, arg)]
            return In(path, values) if len(values) != 1 else Eq(path, values[0])
        if arg is None:
            return Eq(path, None) if op in ("$gte", "$lte") else _nothing(path)
        if isinstance(arg, str) and regex_string(arg) is not None:
            _bad(f"{op} cannot compare with a regex (key {key!r})")
        if not isinstance(arg, str | int | float):
            _bad(f"{op} needs a number or a string, not {type(arg).__name__} (key {key!r})")
        return Cmp(path, _COMPARISONS[op], arg)

    return compare


def _op_regex(path: Path, key: str, arg: Any, ops: Mapping[str, Any], depth: int) -> Node:
    options = ops.get("$options", "")
    if not isinstance(options, str):
        _bad(f"$options must be a string (key {key!r})")
    regex = _as_regex(arg)
    if regex is None:
        if not isinstance(arg, str):
            _bad(f"$regex needs a string (key {key!r})")
        regex = (arg, "")
    return _regex_node(path, regex[0], regex[1] + options)


def _op_not(path: Path, key: str, arg: Any, ops: Mapping[str, Any], depth: int) -> Node:
    regex = _as_regex(arg)
    if regex is not None:
        return Not(_regex_node(path, *regex))
    if (
        isinstance(arg, Mapping)
        and arg
        and all(isinstance(k, str) and k.startswith("$") for k in arg)
    ):
        return Not(_operators(path, key, arg, depth + 1))
    _bad(f"$not needs an operator object or a regex (key {key!r})")


_FIELD_OPERATORS: Final[dict[str, Callable[..., Node]]] = {
    "$eq": _op_eq,
    "$ne": _op_ne,
    "$in": _op_in,
    "$nin": _op_nin,
    "$exists": _op_exists,
    "$gt": _op_compare_for("$gt"),
    "$gte": _op_compare_for("$gte"),
    "$lt": _op_compare_for("$lt"),
    "$lte": _op_compare_for("$lte"),
    "$regex": _op_regex,
    "$not": _op_not,
}


def from_mongo(query: Mapping[str, Any]) -> Node:
    """The AST for a ``search_mongo`` query dict (see the module docstring).

    >>> from_mongo({})
    All()
    >>> from_mongo({"$or": [{"lock": {"$exists": False}}, {"lock": "alice"}]})
    Or(nodes=(Not(node=Exists(path=('lock',))), Eq(path=('lock',), value='alice')))
    """
    try:
        return _query(query, 0)
    except RecursionError:  # a pathological structure built in Python, not JSON
        _bad(f"query nested too deeply (at most {MAX_DEPTH} levels)")


__all__ = ["MAX_DEPTH", "from_mongo", "regex_string"]
