"""Compile a search AST to a MongoDB filter document.

One function per node type, chosen from a dispatch table, each giving exactly the
semantics stated in :mod:`damas_core.query.ast`. MongoDB already does most of the
work: it looks into arrays on the way and at the leaf, compares numbers by value and
never equates ``true`` with ``1`` or ``"12"`` with ``12``, keeps ``$gt``/``$lt``
within a type bracket, and lets ``{k: null}`` match a missing key.

>>> from damas_core.query.ast import And, Cmp, Eq, In, Not, Regex
>>> to_mongo(And((In(("n",), (12, "12")), Not(Eq(("#parent",), "/a")))))
{'$and': [{'n': {'$in': [12, '12']}}, {'$nor': [{'#parent': '/a'}]}]}
>>> to_mongo(Regex(("file",), "^/shots/.*\\\\.exr$", "gi"))  # $: the end of the text, as in RE2
{'file': {'$regex': '^/shots/.*\\\\.exr(?!\\\\n)$', '$options': 'i'}}
>>> to_mongo(Cmp(("file_size",), ">=", 100))
{'file_size': {'$gte': 100}}

A key containing a dot or starting with ``$`` cannot be named in a MongoDB filter:
such a query raises :class:`~damas_core.errors.NotImplementedByBackend` (501).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from damas_core.errors import NotImplementedByBackend
from damas_core.query.ast import All, And, Cmp, Eq, Exists, In, Node, Not, Or, Path, Regex, Sort

Filter = dict[str, Any]

_CMP_OPERATORS: dict[str, str] = {"<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}


def field_name(path: Path) -> str:
    """The dotted MongoDB field name of a path; refuses keys MongoDB would misread.

    >>> field_name(("a", "#b"))
    'a.#b'
    """
    for key in path:
        if "." in key or key.startswith("$") or "\x00" in key:
            raise NotImplementedByBackend(
                f"search error: the key {key!r} cannot be searched on MongoDB "
                "(keys with '.', a leading '$' or NUL)"
            )
    return ".".join(path)


def _all(node: All) -> Filter:
    return {}


def _exists(node: Exists) -> Filter:
    return {field_name(node.path): {"$exists": True}}


def _eq(node: Eq) -> Filter:
    # A bare value (not {"$eq": v}) is the plain form every MongoDB version and
    # mongomock accept; null also matches a missing key, as the AST requires.
    return {field_name(node.path): node.value}


def _in(node: In) -> Filter:
    return {field_name(node.path): {"$in": list(node.values)}}


def _cmp(node: Cmp) -> Filter:
    # MongoDB's comparison operators only match values of the operand's type bracket.
    return {field_name(node.path): {_CMP_OPERATORS[node.op]: node.value}}


def _regex(node: Regex) -> Filter:
    pattern = node.pattern if "m" in node.inline_flags else end_only(node.pattern)
    spec: dict[str, Any] = {"$regex": pattern}
    if node.inline_flags:  # g, u and y change nothing: only i, m and s are passed
        spec["$options"] = node.inline_flags
    return {field_name(node.path): spec}


def end_only(pattern: str) -> str:
    r"""``pattern`` with each ``$`` anchor matching only at the very end of the text, as
    RE2's does outside multi-line mode (the predicate and SQL run on RE2): PCRE's, on a
    MongoDB server, and Python's, in mongomock, also match before a final newline.

    >>> end_only("^a$"), end_only("[$]\\$"), end_only("[]$]x$")
    ('^a(?!\\n)$', '[$]\\$', '[]$]x(?!\\n)$')
    """
    out, i, n, in_class = [], 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\":  # an escape: the next character is never an anchor
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if pattern.startswith("[:", i):  # a POSIX class such as [:alpha:]
                end = pattern.find(":]", i + 2)
                end = n if end < 0 else end + 2
                out.append(pattern[i:end])
                i = end
                continue
            in_class = c != "]"
        elif c == "[":
            in_class = True
            out.append(c)
            i += 1
            for literal in ("^", "]"):  # [^…] and a ] right after [ or [^ are not ends
                if pattern.startswith(literal, i):
                    out.append(literal)
                    i += 1
            continue
        elif c == "$":
            out.append("(?!\\n)$")
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _not(node: Not) -> Filter:
    # $nor takes any filter, where $not only takes an operator expression.
    return {"$nor": [to_mongo(node.node)]}


def _and(node: And) -> Filter:
    return {"$and": [to_mongo(n) for n in node.nodes]}


def _or(node: Or) -> Filter:
    return {"$or": [to_mongo(n) for n in node.nodes]}


_COMPILERS: dict[type[Node], Callable[[Any], Filter]] = {
    All: _all,
    Exists: _exists,
    Eq: _eq,
    In: _in,
    Cmp: _cmp,
    Regex: _regex,
    Not: _not,
    And: _and,
    Or: _or,
}


def to_mongo(node: Node) -> Filter:
    """The MongoDB filter that selects exactly the elements ``node`` matches.

    >>> to_mongo(Eq(("type",), None))
    {'type': None}
    """
    try:
        compile_node = _COMPILERS[type(node)]
    except KeyError:
        raise TypeError(f"not a query node: {node!r}") from None
    return compile_node(node)


def to_mongo_sort(sort: Sort) -> list[tuple[str, int]]:
    """A MongoDB sort specification for a normalized sort, with ``_id`` breaking ties.

    >>> to_mongo_sort((("time", -1),))
    [('time', -1), ('_id', 1)]
    """
    spec = [
        (field_name(tuple(key.split("."))), 1 if direction >= 0 else -1) for key, direction in sort
    ]
    if "_id" not in (key for key, _ in spec):
        spec.append(("_id", 1))
    return spec


__all__ = ["field_name", "to_mongo", "to_mongo_sort"]
