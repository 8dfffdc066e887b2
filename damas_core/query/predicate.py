"""AST → Python predicate, for the backends that filter elements in Python.

:func:`to_predicate` compiles a query once into nested closures (one compiler per
node type, chosen through one dispatch table); evaluating it on an element does no
type dispatch on the query. The common case, a single-key path compared with one
scalar, gets a dedicated closure doing one ``dict.get``.

Semantics (those of :mod:`damas_core.query.ast`, shared by every backend):

- A path descends through objects; when a value on the way is an array, each member
  that is an object is looked into (MongoDB's rule). A key absent from an object
  reached on the way is *missing*; a non-object reached before the end of the path
  gives nothing (neither a value nor missing).
- At the end of the path an array matches when any member matches (one level deep).
- Numbers are equal by value across int and float; a boolean is not a number; the
  string ``"12"`` is not the number ``12``.
- Comparisons stay within a type bracket (:func:`damas_core.ordering.bracket`):
  numbers with numbers, strings with strings by code point.
- A regex searches string values only (RE2, linear time).
- ``Eq(path, None)`` and an ``In`` holding ``None`` match ``null`` or missing;
  ``Exists`` matches a present key, even ``null`` or an empty array.

>>> from damas_core.query.parser import parse
>>> match = to_predicate(parse("type:shot file_size>100"))
>>> match({"_id": "/a", "type": "shot", "file_size": 120})
True
>>> match({"_id": "/b", "type": ["asset", "shot"], "file_size": "120"})
False
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any, Final

import re2

from damas_core.errors import BadRequest
from damas_core.ordering import MISSING
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
)

Predicate = Callable[[Mapping[str, Any]], bool]
_Test = Callable[[Any], bool]

_OPERATORS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def leaf_values(element: Mapping[str, Any], path: Path) -> list[Any]:
    """The values found at ``path`` (arrays at the end not expanded), with
    ``MISSING`` for each object on the way that lacks the next key.

    >>> leaf_values({"a": [{"b": 1}, {"c": 2}, 3]}, ("a", "b"))
    [1, MISSING]
    """
    out: list[Any] = []
    _collect(element, path, 0, out)
    return out


def _collect(value: Any, path: Path, i: int, out: list[Any]) -> None:
    if type(value) is dict:
        v = value.get(path[i], MISSING)
        if v is MISSING:
            out.append(MISSING)
        elif i + 1 == len(path):
            out.append(v)
        else:
            _collect(v, path, i + 1, out)
    elif type(value) is list:
        for member in value:
            if type(member) is dict:
                _collect(member, path, i, out)
    # Any other value has no keys: nothing to find below it.


def _on_path(path: Path, test: _Test, missing: bool = False) -> Predicate:
    """A predicate: some value at ``path`` (or a member of an array there) passes
    ``test``; ``missing`` says whether a missing key counts as a match."""
    if len(path) == 1:
        key = path[0]

        def single(element: Mapping[str, Any]) -> bool:
            v = element.get(key, MISSING)
            if type(v) is list:
                for m in v:  # noqa: SIM110 - a loop is faster than any() on a generator
                    if test(m):
                        return True
                return False
            if v is MISSING:
                return missing
            return test(v)

        return single

    def nested(element: Mapping[str, Any]) -> bool:
        for v in leaf_values(element, path):
            if v is MISSING:
                if missing:
                    return True
            elif type(v) is list:
                for m in v:
                    if test(m):
                        return True
            elif test(v):
                return True
        return False

    return nested


# -- value tests ------------------------------------------------------------------------


def _equal_test(value: Scalar) -> _Test:
    if value is None:
        return lambda v: v is None
    if value is True or value is False:
        return lambda v: v is value
    if isinstance(value, str):
        return lambda v: v == value  # str == anything else is False
    return lambda v: (type(v) is int or type(v) is float) and v == value


def _membership_test(values: tuple[Scalar, ...]) -> _Test:
    strings = frozenset(v for v in values if type(v) is str)
    numbers = frozenset(v for v in values if type(v) is int or type(v) is float)
    booleans = frozenset(v for v in values if type(v) is bool)
    has_null = any(v is None for v in values)

    def test(v: Any) -> bool:
        t = type(v)
        if t is str:
            return v in strings
        if t is int or t is float:
            return v in numbers
        if t is bool:
            return v in booleans
        return has_null and v is None

    return test


# -- compilers, one per node type ----------------------------------------------------------


def _all(node: All) -> Predicate:
    return lambda element: True


def _exists(node: Exists) -> Predicate:
    path = node.path
    if len(path) == 1:
        key = path[0]
        return lambda element: key in element
    return lambda element: any(v is not MISSING for v in leaf_values(element, path))


def _eq(node: Eq) -> Predicate:
    path, value = node.path, node.value
    if len(path) != 1:
        return _on_path(path, _equal_test(value), missing=value is None)
    key = path[0]
    # Specialised closures: one dict.get, one comparison, arrays scanned inline.
    if isinstance(value, str):

        def eq_string(element: Mapping[str, Any]) -> bool:
            v = element.get(key)
            if v == value:
                return True
            return type(v) is list and value in v  # list `in` is ==, and str == str only

        return eq_string
    if value is None:

        def eq_null(element: Mapping[str, Any]) -> bool:
            v = element.get(key)
            if v is None:  # null or missing
                return True
            if type(v) is list:
                for m in v:
                    if m is None:
                        return True
            return False

        return eq_null
    if value is True or value is False:

        def eq_bool(element: Mapping[str, Any]) -> bool:
            v = element.get(key)
            if v is value:
                return True
            if type(v) is list:
                for m in v:
                    if m is value:
                        return True
            return False

        return eq_bool

    def eq_number(element: Mapping[str, Any]) -> bool:
        v = element.get(key)
        t = type(v)
        if t is int or t is float:
            return v == value
        if t is list:
            for m in v:
                if (type(m) is int or type(m) is float) and m == value:
                    return True
        return False

    return eq_number


def _in(node: In) -> Predicate:
    has_null = any(v is None for v in node.values)
    return _on_path(node.path, _membership_test(node.values), missing=has_null)


def _cmp(node: Cmp) -> Predicate:
    path, value, compare = node.path, node.value, _OPERATORS[node.op]
    if isinstance(value, str):

        def test(v: Any) -> bool:
            return type(v) is str and compare(v, value)

    else:

        def test(v: Any) -> bool:
            return (type(v) is int or type(v) is float) and compare(v, value)

    if len(path) != 1:
        return _on_path(path, test)
    key = path[0]

    def cmp_single(element: Mapping[str, Any]) -> bool:
        v = element.get(key)
        if type(v) is list:
            for m in v:  # noqa: SIM110 - a loop is faster than any() on a generator
                if test(m):
                    return True
            return False
        return test(v)

    return cmp_single


def _searcher(node: Regex) -> Callable[[str], bool]:
    """``found(text) -> bool``: does the regex occur in ``text``.

    google-re2's public ``search`` builds a match object through a Python generator,
    which costs five times the search itself on short strings; the RE2 object
    underneath answers directly. If that internal API is not there (another
    google-re2 release), the public one is used.
    """
    compiled = node.compiled
    raw = getattr(getattr(compiled, "_regexp", None), "Match", None)
    anchor = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
    if raw is not None and anchor is not None:
        try:
            usable = raw(anchor, b"", 0, 0)[0][0] in (-1, 0)
        except Exception:
            usable = False
        if usable:

            def found(text: str) -> bool:
                encoded = text.encode()
                return raw(anchor, encoded, 0, len(encoded))[0][0] >= 0

            return found
    search = compiled.search
    return lambda text: search(text) is not None


def _regex(node: Regex) -> Predicate:
    search = _searcher(node)
    path = node.path

    def test(v: Any) -> bool:
        return type(v) is str and search(v)

    if len(path) != 1:
        return _on_path(path, test)
    key = path[0]

    def regex_single(element: Mapping[str, Any]) -> bool:
        v = element.get(key)
        if type(v) is str:
            return search(v)
        if type(v) is list:
            for m in v:
                if type(m) is str and search(m):
                    return True
        return False

    return regex_single


def _not(node: Not) -> Predicate:
    inner = to_predicate(node.node)
    return lambda element: not inner(element)


def _and(node: And) -> Predicate:
    parts = tuple(to_predicate(n) for n in node.nodes)
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda element: first(element) and second(element)

    def all_of(element: Mapping[str, Any]) -> bool:
        for p in parts:  # noqa: SIM110 - a loop is faster than all() on a generator
            if not p(element):
                return False
        return True

    return all_of


def _or(node: Or) -> Predicate:
    parts = tuple(to_predicate(n) for n in node.nodes)
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda element: first(element) or second(element)

    def any_of(element: Mapping[str, Any]) -> bool:
        for p in parts:  # noqa: SIM110 - a loop is faster than any() on a generator
            if p(element):
                return True
        return False

    return any_of


_COMPILERS: Final[dict[type, Callable[[Any], Predicate]]] = {
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


def to_predicate(node: Node) -> Predicate:
    """Compile ``node`` into ``match(element) -> bool`` (see the module docstring).

    >>> match = to_predicate(Eq(("#parent",), None))
    >>> match({"_id": "/a"}), match({"_id": "/b", "#parent": "/a"})
    (True, False)
    """
    compiler = _COMPILERS.get(type(node))
    if compiler is None:
        raise BadRequest(f"search error: not a query node: {node!r}")
    return compiler(node)


__all__ = ["Predicate", "leaf_values", "to_predicate"]
