"""The search language's abstract syntax tree: immutable, hashable, validated when built.

A query is parsed once into these frozen dataclasses, then compiled by separate
visitors: ``predicate.to_predicate`` (Python, for the memory, LMDB and TinyDB
backends), ``mongo.to_mongo`` (a MongoDB filter) and ``sql.to_sql`` (SQL through
sqlglot). Nothing here knows about any backend.

Semantics every compiler must honour (the conformance and differential tests check
them on every backend):

- A *path* is a tuple of keys: ``("a", "b")`` for the dotted ``a.b``. Keys may start
  with ``#``. When a value on the way is an array, every member is looked into
  (MongoDB's rule), and a leaf that is an array matches when any member matches.
- ``Eq(path, v)``: some value at ``path`` equals ``v``. Numbers compare by value
  (``1 == 1.0``), ``True`` is not ``1``, and ``"12"`` is not ``12``.
- ``In(path, values)``: ``Eq`` for any one of ``values``. The parser turns a bare
  ``12`` into ``In(path, (12, "12"))``: a bare number, ``true``, ``false`` or
  ``null`` matches the typed value and the string as written.
- ``Eq(path, None)`` / ``In`` containing ``None`` also match a missing key (as MongoDB).
- ``Cmp(path, op, v)``: comparisons stay within a type: a number against numbers,
  a string against strings (by code point); other values never match.
- ``Regex(path, pattern, flags)``: RE2 search (unanchored) against string values only.
- ``Exists(path)``: the key is present (even with ``null``).
- ``All()``: every element. ``Not``, ``And``, ``Or`` as in logic; ``Not(Eq)`` matches
  elements where the key is missing.

>>> q = And((Eq(("type",), "shot"), Cmp(("file_size",), ">", 100)))
>>> q == And((Eq(("type",), "shot"), Cmp(("file_size",), ">", 100)))
True
>>> Cmp(("size",), "=>", 3)
Traceback (most recent call last):
...
damas_core.errors.BadRequest: search error: unknown comparison '=>'
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, TypeAlias

import re2

from damas_core.errors import BadRequest

Scalar: TypeAlias = str | int | float | bool | None
Path: TypeAlias = tuple[str, ...]
CmpOp: TypeAlias = Literal["<", "<=", ">", ">="]

COMPARISONS: tuple[str, ...] = ("<", "<=", ">", ">=")
# JavaScript's flags as damas-core clients send them; g, u and y change nothing here.
REGEX_FLAGS: str = "gimsuy"


def _check_path(path: Path) -> None:
    if not isinstance(path, tuple) or not path:
        raise BadRequest(f"search error: a key path must be a non-empty tuple, not {path!r}")
    for part in path:
        if not isinstance(part, str) or part == "":
            raise BadRequest(f"search error: empty key in path {'.'.join(map(str, path))!r}")


def _check_scalar(value: object, *, what: str) -> None:
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadRequest(f"search error: {what} must be a finite number, not {value!r}")
        return
    raise BadRequest(
        f"search error: {what} must be a string, number, boolean or null, not {value!r}"
    )


class Node:
    """Base class of every query node."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class All(Node):
    """``*``: matches every element."""


@dataclass(frozen=True, slots=True)
class Exists(Node):
    """``key:*``: the key is present."""

    path: Path

    def __post_init__(self) -> None:
        _check_path(self.path)


@dataclass(frozen=True, slots=True)
class Eq(Node):
    """``key:"value"``: strict equality (numbers by value)."""

    path: Path
    value: Scalar

    def __post_init__(self) -> None:
        _check_path(self.path)
        _check_scalar(self.value, what="an equality value")


@dataclass(frozen=True, slots=True)
class In(Node):
    """Equality with any one of ``values`` (a bare ``12`` is ``In(path, (12, "12"))``)."""

    path: Path
    values: tuple[Scalar, ...]

    def __post_init__(self) -> None:
        _check_path(self.path)
        if not isinstance(self.values, tuple):
            raise BadRequest("search error: In values must be a tuple")
        for v in self.values:
            _check_scalar(v, what="an $in value")


@dataclass(frozen=True, slots=True)
class Cmp(Node):
    """``key<v``, ``key<=v``, ``key>v``, ``key>=v``: within the value's type only."""

    path: Path
    op: CmpOp
    value: str | int | float

    def __post_init__(self) -> None:
        _check_path(self.path)
        if self.op not in COMPARISONS:
            raise BadRequest(f"search error: unknown comparison {self.op!r}")
        if self.value is None or isinstance(self.value, bool):
            raise BadRequest(
                f"search error: {'.'.join(self.path)}{self.op} needs a number or a string"
            )
        _check_scalar(self.value, what="a comparison value")


@dataclass(frozen=True)
class Regex(Node):  # no slots: the compiled pattern is cached on the instance
    """``key:/pattern/flags``: an RE2 search over string values."""

    path: Path
    pattern: str
    flags: str = ""

    def __post_init__(self) -> None:
        _check_path(self.path)
        if not isinstance(self.pattern, str) or not isinstance(self.flags, str):
            raise BadRequest("search error: a regex needs a string pattern and flags")
        bad = sorted(set(self.flags) - set(REGEX_FLAGS))
        if bad:
            raise BadRequest(
                f"search error: unknown regex flag {''.join(bad)!r} (known: {REGEX_FLAGS})"
            )
        self.compiled  # noqa: B018 - compile now so a bad pattern fails when built

    @property
    def inline_flags(self) -> str:
        """The flags RE2 and MongoDB understand, in a canonical order (``ims``)."""
        return "".join(f for f in "ims" if f in self.flags)

    @cached_property
    def compiled(self) -> re2._Regexp:
        """The RE2 program: linear time in the subject, whatever the pattern."""
        opts = re2.Options()
        opts.log_errors = False
        opts.max_mem = 8 << 20
        flags = self.inline_flags
        try:
            return re2.compile(f"(?{flags}){self.pattern}" if flags else self.pattern, opts)
        except re2.error as e:
            reason = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
            raise BadRequest(f"search error: invalid regex /{self.pattern}/: {reason}") from None


@dataclass(frozen=True, slots=True)
class Not(Node):
    """``-term`` or ``NOT term``."""

    node: Node

    def __post_init__(self) -> None:
        if not isinstance(self.node, Node):
            raise BadRequest("search error: NOT needs a term")


@dataclass(frozen=True, slots=True)
class And(Node):
    """Terms separated by whitespace: every one must match."""

    nodes: tuple[Node, ...]

    def __post_init__(self) -> None:
        _check_nodes(self.nodes, "AND")


@dataclass(frozen=True, slots=True)
class Or(Node):
    """``a OR b``: at least one must match."""

    nodes: tuple[Node, ...]

    def __post_init__(self) -> None:
        _check_nodes(self.nodes, "OR")


def _check_nodes(nodes: tuple[Node, ...], name: str) -> None:
    if not isinstance(nodes, tuple) or len(nodes) == 0:
        raise BadRequest(f"search error: {name} needs at least one term")
    for n in nodes:
        if not isinstance(n, Node):
            raise BadRequest(f"search error: {name} needs query terms, not {n!r}")


Sort: TypeAlias = tuple[tuple[str, int], ...]
"""A normalized sort: ``(("file_size", -1), ("_id", 1))``: dotted keys, 1 or -1."""


def walk(node: Node) -> Iterator[Node]:
    """Yield ``node`` and every node below it, depth first."""
    yield node
    if isinstance(node, Not):
        yield from walk(node.node)
    elif isinstance(node, And | Or):
        for n in node.nodes:
            yield from walk(n)


def keys_of(node: Node) -> Iterator[Path]:
    """The key path of every test in ``node``, depth first (a path once per test):
    what a query looks at, for rules on which keys may be queried.

    >>> list(keys_of(And((Eq(("type",), "shot"), Not(Exists(("a", "b")))))))
    [('type',), ('a', 'b')]
    """
    for n in walk(node):
        if isinstance(n, Exists | Eq | In | Cmp | Regex):
            yield n.path


__all__ = [
    "COMPARISONS",
    "REGEX_FLAGS",
    "All",
    "And",
    "Cmp",
    "CmpOp",
    "Eq",
    "Exists",
    "In",
    "Node",
    "Not",
    "Or",
    "Path",
    "Regex",
    "Scalar",
    "Sort",
    "keys_of",
    "walk",
]
