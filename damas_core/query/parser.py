"""The search language: query text in, one validated AST out.

A hand-written tokenizer and recursive-descent parser for the language described in
``docs/query-language.md``. Whitespace-separated terms are ANDed; ``OR`` joins them;
``NOT``/``-`` negate; parentheses group. Precedence, tightest first: ``NOT``/``-``,
then the implicit AND, then ``OR``.

What the caller can rely on:

- :func:`parse` returns a :class:`~damas_core.query.ast.Node` or raises
  :class:`~damas_core.errors.BadRequest` (``"search error: <what> at position N"``, with
  ``position`` set to the 0-based character offset). No other exception escapes, for
  any string.
- Nested ``And``/``Or`` are flattened and a single term is returned unwrapped.
- Nesting (parentheses and negations) is limited to :data:`MAX_DEPTH` levels and the
  text to :data:`MAX_QUERY_LENGTH` characters, so a hostile query cannot exhaust the
  stack or the CPU.

>>> parse("type:shot file_size>100")
And(nodes=(Eq(path=('type',), value='shot'), Cmp(path=('file_size',), op='>', value=100)))
>>> parse("#parent:/project/seq01")
Eq(path=('#parent',), value='/project/seq01')
>>> parse("name:/^sh/i")
Regex(path=('name',), pattern='^sh', flags='i')
>>> parse("frame:12")
In(path=('frame',), values=(12, '12'))
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final, NoReturn

from damas_core.errors import BadRequest
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

#: Longest query text accepted, in characters.
MAX_QUERY_LENGTH: Final = 100_000
#: Deepest nesting of parentheses and negations accepted.
MAX_DEPTH: Final = 100

# A JSON number. Leading zeros ("007"), "+1", ".5" and "5." stay strings: they are
# more likely codes or names than numbers.
NUMBER_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_KEY_STOP: Final = frozenset('()":<>')
_NOT_TYPED: Final = object()

# Token kinds.
_LPAREN, _RPAREN, _OR, _NOT, _MINUS, _STAR, _TERM = "(", ")", "OR", "NOT", "-", "*", "term"


def _fail(what: str, position: int) -> NoReturn:
    raise BadRequest(f"search error: {what} at position {position}", position=position)


def typed_value(text: str) -> object:
    """The typed value a bare word stands for, or ``_NOT_TYPED``.

    ``12`` → 12, ``-3.5`` → -3.5, ``1e3`` → 1000.0, ``true``/``false``/``null`` →
    ``True``/``False``/``None``. A number too large to be finite stays a string.
    """
    if text == "true":
        return True
    if text == "false":
        return False
    if text == "null":
        return None
    if not NUMBER_RE.fullmatch(text):
        return _NOT_TYPED
    try:
        if "." in text or "e" in text or "E" in text:
            number = float(text)
            return number if math.isfinite(number) else _NOT_TYPED
        return int(text)
    except ValueError:  # more digits than int() accepts
        return _NOT_TYPED


def is_typed(text: str) -> bool:
    """True when the bare word ``text`` stands for a number, boolean or null."""
    return typed_value(text) is not _NOT_TYPED


def regex_parts(value: str) -> tuple[str, str] | None:
    """``(pattern, flags)`` when a bare value is a regex, else ``None``.

    A value is a regex only when it is ``/…/`` followed by nothing but flag letters
    (the last ``/`` is the delimiter), so ids, which are paths, stay equalities:
    ``/project/a.mov`` is not a regex, ``/^sh/i`` and ``/project/`` are.
    """
    if not value.startswith("/"):
        return None
    end = value.rfind("/")
    if end == 0:
        return None
    flags = value[end + 1 :]
    if any(f not in REGEX_FLAGS for f in flags):
        return None
    return value[1:end], flags


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    position: int
    node: Node | None = None


class _Lexer:
    """Turns the text into tokens; a term token carries its finished AST node."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)

    def tokens(self) -> list[_Token]:
        text, n = self.text, self.n
        out: list[_Token] = []
        i = 0
        while i < n:
            c = text[i]
            if c.isspace():
                i += 1
            elif c == "(":
                out.append(_Token(_LPAREN, i))
                i += 1
            elif c == ")":
                out.append(_Token(_RPAREN, i))
                i += 1
            elif c == "-":
                if i + 1 >= n or text[i + 1].isspace():
                    _fail("'-' needs a term right after it", i)
                out.append(_Token(_MINUS, i))
                i += 1
            else:
                i = self._word_or_term(i, out)
        return out

    def _word_or_term(self, start: int, out: list[_Token]) -> int:
        text, n = self.text, self.n
        if text[start] == '"':
            key, i = self._quoted(start)
            if i >= n or text[i] not in ":<>":
                _fail("a quoted key needs an operator after it (:, <, <=, >, >=)", i)
            return self._term(key, start, True, i, out)
        i = start
        while i < n and not text[i].isspace() and text[i] not in _KEY_STOP:
            i += 1
        word = text[start:i]
        if i < n and text[i] in ":<>":
            return self._term(word, start, False, i, out)
        if i < n and text[i] == '"':
            _fail("unexpected '\"' inside a word", i)
        if word == "OR":
            out.append(_Token(_OR, start))
        elif word == "NOT":
            out.append(_Token(_NOT, start))
        elif word == "*":
            out.append(_Token(_STAR, start))
        else:
            shown = word if len(word) <= 40 else word[:37] + "..."
            _fail(f"'{shown}' is not a term: write key:value, key<value or key>value", start)
        return i

    def _quoted(self, start: int) -> tuple[str, int]:
        """The string in the double quotes at ``start`` and the index after them."""
        text, n = self.text, self.n
        parts: list[str] = []
        i = start + 1
        while True:
            # Jump to the next quote or backslash instead of walking char by char.
            q = text.find('"', i)
            b = text.find("\\", i, q if q >= 0 else n)
            if q < 0 and b < 0:
                _fail("unterminated quoted string", start)
            if b < 0:
                parts.append(text[i:q])
                return "".join(parts), q + 1
            parts.append(text[i:b])
            if b + 1 >= n:
                _fail("unterminated quoted string", start)
            escaped = text[b + 1]
            if escaped not in '"\\':
                _fail(f"unknown escape '\\{escaped}' (only \\\" and \\\\ are known)", b)
            parts.append(escaped)
            i = b + 2

    def _path(self, key: str, key_pos: int, quoted: bool) -> Path:
        if key == "":
            _fail("empty key", key_pos)
        parts = key.split(".")
        if "" in parts:
            if quoted:
                _fail(f"empty key part in '{key}'", key_pos)
            offset = 0
            for p in parts:
                if p == "":
                    _fail(f"empty key part in '{key}'", key_pos + offset)
                offset += len(p) + 1
        return tuple(parts)

    def _term(self, key: str, key_pos: int, quoted_key: bool, i: int, out: list[_Token]) -> int:
        text, n = self.text, self.n
        path = self._path(key, key_pos, quoted_key)
        op = text[i]
        i += 1
        if op != ":" and i < n and text[i] == "=":
            op += "="
            i += 1
        value_pos = i
        if i >= n or text[i].isspace() or text[i] == ")":
            _fail(f"missing value after '{op}'", value_pos)
        if text[i] == '"':
            value, i = self._quoted(i)
            if i < n and not text[i].isspace() and text[i] != ")":
                _fail("unexpected character after a quoted value", i)
            node = self._node(path, op, value, True, value_pos)
        else:
            end = self._bare_end(i)
            node = self._node(path, op, text[i:end], False, value_pos)
            i = end
        out.append(_Token(_TERM, key_pos, node))
        return i

    def _bare_end(self, i: int) -> int:
        """Where a bare value starting at ``i`` ends: at whitespace or at a ``)`` that
        closes no ``(`` of the value itself, so ``name:/(a|b)/`` keeps its group. In a
        value that starts with ``/`` (maybe a regex) ``\\`` escapes the next character
        and ``[...]`` is a character class, as in the regex itself."""
        text, n = self.text, self.n
        regexish = text[i] == "/"
        depth = 0
        while i < n:
            c = text[i]
            if c.isspace():
                return i
            if c == "(":
                depth += 1
            elif c == ")":
                if depth == 0:
                    return i
                depth -= 1
            elif regexish and c == "\\":
                if i + 1 < n and not text[i + 1].isspace():
                    i += 1
            elif regexish and c == "[":
                i = self._class_end(i)
                continue
            i += 1
        return i

    def _class_end(self, i: int) -> int:
        """The index after the regex character class opened at ``i`` (or where the
        value ends if it is not closed)."""
        text, n = self.text, self.n
        i += 1
        if i < n and text[i] == "^":
            i += 1
        if i < n and text[i] == "]":  # a leading ] is a literal
            i += 1
        while i < n:
            c = text[i]
            if c.isspace():
                return i
            if c == "\\":
                if i + 1 < n and not text[i + 1].isspace():
                    i += 1
            elif c == "[" and text.startswith("[:", i):
                close = text.find(":]", i + 2)
                if close >= 0 and not any(ch.isspace() for ch in text[i:close]):
                    i = close + 1
            elif c == "]":
                return i + 1
            i += 1
        return i

    def _node(self, path: Path, op: str, value: str, quoted: bool, pos: int) -> Node:
        try:
            if op == ":":
                if quoted:
                    return Eq(path, value)
                if value == "*":
                    return Exists(path)
                rx = regex_parts(value)
                if rx is not None:
                    return Regex(path, rx[0], rx[1])
                if value.startswith("="):
                    exact = typed_value(value[1:])
                    if exact is not _NOT_TYPED:
                        return Eq(path, exact)  # type: ignore[arg-type]
                typed = typed_value(value)
                if typed is _NOT_TYPED:
                    return Eq(path, value)
                return In(path, (typed, value))  # type: ignore[arg-type]
            if not quoted:
                number = typed_value(value)
                if isinstance(number, int | float) and not isinstance(number, bool):
                    return Cmp(path, op, number)  # type: ignore[arg-type]
            return Cmp(path, op, value)  # type: ignore[arg-type]
        except BadRequest as e:
            # The AST says what is wrong (a bad regex); the parser adds where.
            _fail(e.message.removeprefix("search error: "), pos)


class _Parser:
    """Recursive descent over the tokens; depth counts parentheses and negations."""

    def __init__(self, tokens: list[_Token], length: int) -> None:
        self.tokens = tokens
        self.length = length
        self.i = 0

    def _peek(self) -> str | None:
        return self.tokens[self.i].kind if self.i < len(self.tokens) else None

    def parse(self) -> Node:
        if not self.tokens:
            _fail("empty query", 0)
        node = self._or(0)
        if self.i < len(self.tokens):  # only a ')' stops the top level early
            _fail("unmatched ')'", self.tokens[self.i].position)
        return node

    def _or(self, depth: int) -> Node:
        nodes = [self._and(depth)]
        while self._peek() == _OR:
            or_token = self.tokens[self.i]
            self.i += 1
            if self._peek() in (None, _RPAREN, _OR):
                _fail("OR needs a term after it", or_token.position)
            nodes.append(self._and(depth))
        if len(nodes) == 1:
            return nodes[0]
        flat: list[Node] = []
        for n in nodes:
            flat.extend(n.nodes if isinstance(n, Or) else (n,))
        return Or(tuple(flat))

    def _and(self, depth: int) -> Node:
        nodes: list[Node] = []
        while True:
            kind = self._peek()
            if kind in (None, _RPAREN, _OR):
                break
            nodes.append(self._unary(depth))
        if not nodes:
            kind = self._peek()
            if kind == _OR:
                _fail("OR needs a term before it", self.tokens[self.i].position)
            if kind == _RPAREN:
                _fail("unmatched ')'", self.tokens[self.i].position)
            _fail("missing term", self.length)
        if len(nodes) == 1:
            return nodes[0]
        flat: list[Node] = []
        for n in nodes:
            flat.extend(n.nodes if isinstance(n, And) else (n,))
        return And(tuple(flat))

    def _unary(self, depth: int) -> Node:
        # Negations are counted in a loop rather than by recursion.
        negations: list[_Token] = []
        while self._peek() in (_NOT, _MINUS):
            negations.append(self.tokens[self.i])
            self.i += 1
            if depth + len(negations) > MAX_DEPTH:
                _fail(f"too deeply nested (at most {MAX_DEPTH} levels)", negations[-1].position)
            if self._peek() in (None, _RPAREN, _OR):
                last = negations[-1]
                what = "NOT" if last.kind == _NOT else "'-'"
                _fail(f"{what} needs a term after it", last.position)
        node = self._primary(depth + len(negations))
        for _ in negations:
            node = Not(node)
        return node

    def _primary(self, depth: int) -> Node:
        token = self.tokens[self.i]
        self.i += 1
        if token.kind == _TERM:
            assert token.node is not None
            return token.node
        if token.kind == _STAR:
            return All()
        if token.kind == _LPAREN:
            if depth + 1 > MAX_DEPTH:
                _fail(f"too deeply nested (at most {MAX_DEPTH} levels)", token.position)
            kind = self._peek()
            if kind == _RPAREN:
                _fail("empty parentheses", token.position)
            if kind is None:
                _fail("unclosed '('", token.position)
            node = self._or(depth + 1)
            if self._peek() != _RPAREN:
                _fail("unclosed '('", token.position)
            self.i += 1
            return node
        # _and never hands over ')' or OR, and _unary handles negations.
        _fail(f"unexpected {token.kind!r}", token.position)  # pragma: no cover


def parse(text: str) -> Node:
    """Parse search text into an AST (see the module docstring for the guarantees).

    >>> parse('-status:done (type:shot OR type:asset)')
    And(nodes=(Not(node=Eq(path=('status',), value='done')), Or(nodes=(Eq(path=('type',), value='shot'), Eq(path=('type',), value='asset')))))
    """
    if not isinstance(text, str):
        raise BadRequest(f"search error: a query must be a string, not {type(text).__name__}")
    if len(text) > MAX_QUERY_LENGTH:
        _fail(
            f"query too long ({len(text)} characters, at most {MAX_QUERY_LENGTH})", MAX_QUERY_LENGTH
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        _fail("invalid character (a lone surrogate)", e.start)
    return _Parser(_Lexer(text).tokens(), len(text)).parse()


__all__ = [
    "MAX_DEPTH",
    "MAX_QUERY_LENGTH",
    "NUMBER_RE",
    "is_typed",
    "parse",
    "regex_parts",
    "typed_value",
]
