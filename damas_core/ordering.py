"""One missing-key sentinel and one cross-type ordering, shared by every layer.

The ordering is MongoDB's, restricted to JSON values, so that a sort gives the same
order on every backend: missing and ``null`` first, then numbers, strings, objects,
arrays, and booleans last.

>>> sorted([True, "b", 2, None, [1], {"a": 1}, 1.5], key=sort_key)
[None, 1.5, 2, 'b', {'a': 1}, [1], True]
"""

from __future__ import annotations

from typing import Any, Final


class _Missing:
    """The value of a key an element does not have (distinct from ``None``/``null``)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

# Type brackets, lowest first (MongoDB's order for the JSON types).
BRACKET_NULL: Final = 0
BRACKET_NUMBER: Final = 1
BRACKET_STRING: Final = 2
BRACKET_OBJECT: Final = 3
BRACKET_ARRAY: Final = 4
BRACKET_BOOL: Final = 5


def bracket(value: Any) -> int:
    """The type bracket of a JSON value; ``MISSING`` sorts with ``null``."""
    if value is None or value is MISSING:
        return BRACKET_NULL
    if isinstance(value, bool):
        return BRACKET_BOOL
    if isinstance(value, int | float):
        return BRACKET_NUMBER
    if isinstance(value, str):
        return BRACKET_STRING
    if isinstance(value, dict):
        return BRACKET_OBJECT
    if isinstance(value, list | tuple):
        return BRACKET_ARRAY
    raise TypeError(f"not a JSON value: {value!r}")


def sort_key(value: Any) -> tuple:
    """A key that orders any JSON values (and ``MISSING``) across types.

    Within a bracket: numbers numerically, strings by code point, booleans
    ``False < True``, objects and arrays element by element.
    """
    b = bracket(value)
    if b == BRACKET_NULL:
        return (b,)
    if b in (BRACKET_NUMBER, BRACKET_STRING, BRACKET_BOOL):
        return (b, value)
    if b == BRACKET_OBJECT:
        return (b, tuple((k, sort_key(v)) for k, v in value.items()))
    return (b, tuple(sort_key(v) for v in value))


def same_bracket(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` may be compared with ``<``: comparisons stay within a type."""
    return bracket(a) == bracket(b)
