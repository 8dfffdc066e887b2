"""AST → canonical search text, the inverse of :func:`~damas_core.query.parser.parse`.

What the caller can rely on:

- For every AST the parser produces, ``parse(to_text(node)) == node``, and
  ``to_text(parse(s))`` is a fixed point of ``to_text ∘ parse``.
- For other ASTs (built by hand or by :func:`~damas_core.query.mongo_query.from_mongo`)
  the text is an equivalent query: it matches the same elements. An exact typed
  equality prints as ``key:=12`` (``Eq(path, 12)``), an ``In`` of several values as
  equalities joined by ``OR``, an empty ``In`` as ``-*``.
- Keys cannot contain ``.`` in the text language (a dot separates path parts), so a
  path part holding a dot prints as a dotted path: such an AST has no text form.

>>> from damas_core.query.ast import And, Cmp, Eq, In
>>> to_text(And((Eq(("type",), "shot"), Cmp(("file_size",), ">", 100))))
'type:shot file_size>100'
>>> to_text(In(("frame",), (12, "12")))
'frame:12'
>>> to_text(Eq(("name",), "a b"))
'name:"a b"'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

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
from damas_core.query.parser import is_typed, regex_parts, typed_value

# Precedence of what a piece of text is, loosest first: a parent wraps a child in
# parentheses when the child binds more loosely than the parent needs.
_OR_LEVEL, _AND_LEVEL, _UNARY_LEVEL = 0, 1, 2

_PLAIN_KEY: Final = re.compile(r'[^\s()":<>.]+')
_PLAIN_VALUE: Final = re.compile(r'[^\s()"\\]+')


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _key(path: Path) -> str:
    if not path[0].startswith("-") and all(_PLAIN_KEY.fullmatch(p) for p in path):
        return ".".join(path)
    return _quote(".".join(path))


def _string(value: str) -> str:
    """A string value as it must be written to be read back as that string."""
    if (
        _PLAIN_VALUE.fullmatch(value)
        and value != "*"
        and not value.startswith("=")
        and not is_typed(value)
        and regex_parts(value) is None
    ):
        return value
    return _quote(value)


def _literal(value: Scalar) -> str:
    """A number, boolean or null as the parser reads it."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _regex_source(pattern: str) -> str:
    """The pattern with whitespace written as ``\\x{…}`` escapes: the text language
    ends a value at whitespace, and RE2 reads the escape as the same character."""
    if not any(c.isspace() for c in pattern):
        return pattern
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(f"\\x{{{ord(nxt):x}}}" if nxt.isspace() else c + nxt)
            i += 2
            continue
        out.append(f"\\x{{{ord(c):x}}}" if c.isspace() else c)
        i += 1
    return "".join(out)


def _equality(path: Path, value: Scalar) -> str:
    if isinstance(value, str):
        return f"{_key(path)}:{_string(value)}"
    return f"{_key(path)}:={_literal(value)}"


def _all(node: All) -> tuple[str, int]:
    return "*", _UNARY_LEVEL


def _exists(node: Exists) -> tuple[str, int]:
    return f"{_key(node.path)}:*", _UNARY_LEVEL


def _eq(node: Eq) -> tuple[str, int]:
    return _equality(node.path, node.value), _UNARY_LEVEL


def _in(node: In) -> tuple[str, int]:
    values = node.values
    if len(values) == 2 and isinstance(values[1], str):
        typed, text = values
        if _PLAIN_VALUE.fullmatch(text):
            back = typed_value(text)
            if type(back) is type(typed) and back == typed:
                return f"{_key(node.path)}:{text}", _UNARY_LEVEL
    if not values:
        return "-*", _UNARY_LEVEL  # equal to nothing: matches no element
    if len(values) == 1:
        return _equality(node.path, values[0]), _UNARY_LEVEL
    return " OR ".join(_equality(node.path, v) for v in values), _OR_LEVEL


def _cmp(node: Cmp) -> tuple[str, int]:
    value = node.value
    text = _string(value) if isinstance(value, str) else _literal(value)
    return f"{_key(node.path)}{node.op}{text}", _UNARY_LEVEL


def _regex(node: Regex) -> tuple[str, int]:
    return f"{_key(node.path)}:/{_regex_source(node.pattern)}/{node.flags}", _UNARY_LEVEL


def _wrapped(node: Node, level: int) -> str:
    text, own = _format(node)
    return f"({text})" if own < level else text


def _not(node: Not) -> tuple[str, int]:
    return "-" + _wrapped(node.node, _UNARY_LEVEL), _UNARY_LEVEL


def _and(node: And) -> tuple[str, int]:
    if len(node.nodes) == 1:
        return _format(node.nodes[0])
    return " ".join(_wrapped(n, _AND_LEVEL) for n in node.nodes), _AND_LEVEL


def _or(node: Or) -> tuple[str, int]:
    if len(node.nodes) == 1:
        return _format(node.nodes[0])
    return " OR ".join(_wrapped(n, _OR_LEVEL) for n in node.nodes), _OR_LEVEL


_PRINTERS: Final[dict[type, Callable[..., tuple[str, int]]]] = {
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


def _format(node: Node) -> tuple[str, int]:
    return _PRINTERS[type(node)](node)


def to_text(node: Node) -> str:
    """The canonical search text of ``node`` (see the module docstring).

    >>> from damas_core.query.ast import Not, Or, Regex
    >>> to_text(Not(Or((Regex(("name",), "^sh", "i"), Eq(("n",), 3)))))
    '-(name:/^sh/i OR n:=3)'
    """
    return _format(node)[0]


__all__ = ["to_text"]
