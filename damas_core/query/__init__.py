"""The search query: one immutable AST, its text language, and its compilers.

- :func:`parse` reads the search language (``docs/query-language.md``) into an AST;
  :func:`to_text` prints an AST back as canonical text.
- :func:`from_mongo` reads a ``search_mongo`` MongoDB-style query dict into the same AST.
- :func:`to_predicate` compiles an AST into a Python ``match(element) -> bool``.
- :func:`normalize_sort` turns any accepted sort specification into a ``Sort``.

>>> from damas_core.query import parse, to_predicate, to_text
>>> q = parse("type:shot (status:wip OR status:todo)")
>>> to_text(q)
'type:shot (status:wip OR status:todo)'
>>> to_predicate(q)({"_id": "/s1", "type": "shot", "status": ["todo"]})
True
"""

from damas_core.query.ast import (
    COMPARISONS,
    REGEX_FLAGS,
    All,
    And,
    Cmp,
    CmpOp,
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
    keys_of,
    walk,
)
from damas_core.query.mongo_query import from_mongo
from damas_core.query.parser import parse
from damas_core.query.predicate import Predicate, to_predicate
from damas_core.query.printer import to_text
from damas_core.query.sort import normalize_sort

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
    "Predicate",
    "Regex",
    "Scalar",
    "Sort",
    "from_mongo",
    "keys_of",
    "normalize_sort",
    "parse",
    "to_predicate",
    "to_text",
    "walk",
]
