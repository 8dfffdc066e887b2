"""The storage contract every backend implements.

A backend stores JSON elements keyed by their string ``_id`` and offers per-element
primitives; every tracker operation (create, publish, lock, graph, ...) is written once
in the core on top of them, so a backend never re-implements an operation.

The public methods below (``get_many``, ``insert_many``, ...) are final: they validate
their arguments and translate any driver failure into
:class:`~damas_core.errors.StorageError` (keeping the original as ``__cause__``) in one
place, then call the ``_``-prefixed methods a backend implements. A backend that
forgets an abstract method cannot be instantiated.

Rules every backend honours (the conformance suite in ``tests/conformance`` checks them):

- Elements are JSON objects. What is stored is a copy: mutating a dict passed in or
  returned never changes the store.
- ``_id`` is a non-empty string; ids compare by code point.
- Without a sort, ``find`` returns ids in ``_id`` order; with a sort, ``_id`` breaks ties.
  Sorting across types follows :func:`damas_core.ordering.sort_key`.
- A write transaction (``with store.transaction():``) makes the primitives called inside
  it, from the same thread, one atomic step: they see each other's writes, other
  writers (threads and processes) wait, and either all of it becomes durable at exit or,
  if the block raises, none of it does. Transactions nest: an inner one joins the outer.
  Each primitive called outside a transaction is atomic on its own.
- Every write that changes an element (an insert, an applied patch, a delete) takes the
  next store-wide sequence number in the same transaction as the write: a crash never
  leaves one without the other. The feed (:meth:`Storage.changes`) keeps each id's
  latest change; a delete leaves a tombstone. See :meth:`Storage.changes`.

>>> from damas_core.backends.memory import MemoryStorage
>>> store = MemoryStorage("memory://")
>>> store.insert_many([{"_id": "/a", "n": 1}, {"_id": "/a", "n": 2}])
[True, False]
>>> store.patch_many([Patch("/a", set={"m": 2}, unset=("n",))])
[True]
>>> store.get_many(["/a", "/nope"])
[{'_id': '/a', 'm': 2}, None]
"""

from __future__ import annotations

import abc
import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import orjson

from damas_core.elements import encode_all, id_of
from damas_core.errors import BadRequest, DamasError, StorageError
from damas_core.ordering import MISSING, bracket, sort_key
from damas_core.query.ast import All, And, Cmp, Eq, In, Node, Not, Or, Regex, Sort

Element = dict[str, Any]
#: One entry of the change feed: ``(seq, id, deleted)``.
Change = tuple[int, str, bool]
T = TypeVar("T")

# Keys every backend indexes, whatever the options say: the graph walks links by
# ``tgt_id``/``src_id`` and history/comments hang off ``#parent``.
DEFAULT_INDEXES: tuple[str, ...] = ("#parent", "src_id", "tgt_id")


@dataclass(frozen=True)
class Patch:
    """A change to one element: keys to set, keys to remove, and an optional guard.

    ``expect`` maps keys to the value they must hold for the patch to apply
    (``MISSING`` for "the key is absent"); the check and the write are one atomic
    step, which is what lock and unlock are built on.
    """

    id: str
    set: Mapping[str, Any] = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    expect: Mapping[str, Any] | None = None


def _translated(fn: Callable[..., T]) -> Callable[..., T]:
    """Run ``fn`` and turn any non-damas exception into ``StorageError``."""

    @functools.wraps(fn)
    def wrapper(self: Storage, *args: Any, **kwargs: Any) -> T:
        try:
            return fn(self, *args, **kwargs)
        except DamasError:
            raise
        except Exception as e:
            raise self.storage_error(fn.__name__, e) from e

    return wrapper


class Storage(abc.ABC):
    """Abstract storage. Subclasses set ``scheme`` and implement the ``_`` methods.

    ``url`` is the backend URL it was opened with (``lmdb:///srv/damas``); ``options``
    are the keyword options given to :func:`damas_core.open`. ``indexes`` names the
    keys with a secondary index: :data:`DEFAULT_INDEXES` plus ``options["indexes"]``.
    """

    scheme: ClassVar[str] = ""
    #: True when the backend keeps atomicity across processes for transactions.
    atomic: ClassVar[bool] = True
    #: True when another process opening the same url works on the same elements (a
    #: hub then runs its storages' agents as processes of their own)
    shared: ClassVar[bool] = True

    def __init__(self, url: str, **options: Any) -> None:
        self.url = url
        self.options = options
        extra = options.get("indexes") or ()
        if isinstance(extra, str):
            extra = [k for k in extra.split(",") if k]
        self.indexes: tuple[str, ...] = tuple(dict.fromkeys([*DEFAULT_INDEXES, *extra]))
        self._commit_callbacks: list[Callable[[], None]] = []
        self._outer = threading.local()  # per thread: how deep in transaction()

    # -- commits ----------------------------------------------------------------------

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after each write of this process commits: a write
        primitive called outside a transaction, or the outermost
        :meth:`transaction` block, once it succeeded (whether or not it changed
        anything). It runs in the writing thread, must be quick and must not raise; the
        change feed's waiters are woken this way. Writes from other processes are seen
        by polling :meth:`last_seq`, or, on a backend that hears of them (PostgreSQL's
        ``NOTIFY``), by the same callbacks, called from its listening thread."""
        self._commit_callbacks.append(callback)

    def _committed(self) -> None:
        if self._commit_callbacks and not getattr(self._outer, "depth", 0):
            for callback in self._commit_callbacks:
                callback()

    # -- errors ---------------------------------------------------------------------

    def storage_error(self, op: str, error: BaseException) -> StorageError:
        """The one place a driver error becomes a ``StorageError`` naming backend and op."""
        name = type(self).__name__
        return StorageError(
            f"{name} {op.lstrip('_')} failed: {type(error).__name__}: {error}", op=op
        )

    # -- public, final ------------------------------------------------------------------

    @_translated
    def get_many(self, ids: Sequence[str]) -> list[Element | None]:
        """The elements with these ids, in order; ``None`` for an id that is not stored.

        Repeated ids give repeated results. An empty list gives ``[]``.
        """
        if ids.__class__ is list and len(ids) == 1 and ids[0].__class__ is str and ids[0]:
            return self._get_many(ids)  # one id, checked at once: the most common call
        return self._get_many(_check_ids(ids))

    def get(self, id: str) -> Element | None:
        """The element with this id, or ``None``."""
        return self.get_many([id])[0]

    @_translated
    def insert_many(self, elements: Sequence[Element], *, op: str = "insert") -> list[bool]:
        """Store new elements; ``True`` for each one stored, ``False`` where its ``_id``
        already exists (that element is left as it was). When the same ``_id`` appears
        twice in the call, the first one is stored and the later ones get ``False``.
        All stored elements become durable together.

        An element that is not one (:func:`damas_core.elements.encode`: a JSON object,
        nested at most 64 levels) raises ``BadRequest`` naming ``op``, and nothing is
        written.
        """
        if not _plain(elements):  # one by one, for a clear error
            for e in elements:
                if not isinstance(e, dict):
                    raise BadRequest(
                        f"storage error: an element must be an object, not {type(e).__name__}"
                    )
                _check_ids([e.get("_id")])
        done = self._insert_many(elements, op)
        self._committed()
        return done

    @_translated
    def patch_many(self, patches: Sequence[Patch], *, op: str = "patch") -> list[bool]:
        """Apply each patch; ``True`` where applied, ``False`` where the element does not
        exist or its ``expect`` guard does not hold (that element is left as it was).

        ``set`` keys are replaced whole (a dict value replaces, it does not merge);
        ``unset`` keys that are absent are ignored; ``_id`` can be neither set nor unset.
        ``op`` is the operation writing (as for :meth:`insert_many`): the guarded store
        of a non-admin session (:mod:`damas_core.trust`) names it when it refuses.
        """
        _check_ids([p.id for p in patches])
        if any("_id" in p.set or "_id" in p.unset for p in patches):
            raise BadRequest("storage error: _id cannot be changed")
        done = self._patch_many(patches)
        self._committed()
        return done

    @_translated
    def delete_many(self, ids: Sequence[str], *, op: str = "delete") -> list[bool]:
        """Remove elements; ``True`` for each one removed, ``False`` where it was absent
        (or already removed earlier in the same call). ``op``: as for :meth:`patch_many`."""
        done = self._delete_many(_check_ids(ids))
        self._committed()
        return done

    def scan(self) -> Iterator[Element]:
        """Every element, in ``_id`` order. Failures while iterating are ``StorageError``."""
        try:
            yield from self._scan()
        except DamasError:
            raise
        except Exception as e:
            raise self.storage_error("scan", e) from e

    @_translated
    def find(
        self, query: Node, sort: Sort | None = None, skip: int = 0, limit: int | None = None
    ) -> list[str]:
        """Ids of the elements matching ``query``: sorted by ``sort`` then ``_id``
        (``_id`` order alone without a sort), then ``skip`` dropped and at most ``limit``
        kept (``None`` or 0: no limit)."""
        if skip < 0 or (limit is not None and limit < 0):
            raise BadRequest("search error: skip and limit must not be negative")
        return self._find(query, tuple(sort or ()), skip, limit or None)

    @_translated
    def find_elements(
        self, query: Node, sort: Sort | None = None, skip: int = 0, limit: int | None = None
    ) -> list[Element]:
        """Like :meth:`find`, but the matching elements themselves (one read instead of
        ``find`` then ``get_many``)."""
        if skip < 0 or (limit is not None and limit < 0):
            raise BadRequest("search error: skip and limit must not be negative")
        return self._find_elements(query, tuple(sort or ()), skip, limit or None)

    @_translated
    def count(self, query: Node) -> int:
        """How many elements match ``query``."""
        return self._count(query)

    def transaction(self) -> AbstractContextManager[None]:
        """A write transaction (see the module docstring). Re-entrant."""
        return self._translated_transaction()

    @contextmanager
    def _translated_transaction(self) -> Iterator[None]:
        try:
            cm = self._transaction()
            cm.__enter__()
        except DamasError:
            raise
        except Exception as e:
            raise self.storage_error("transaction", e) from e
        outer = self._outer
        outer.depth = getattr(outer, "depth", 0) + 1
        try:
            yield
        except BaseException as exc:
            # The block failed: roll back; the block's own exception goes up untouched.
            outer.depth -= 1
            try:
                cm.__exit__(type(exc), exc, exc.__traceback__)
            except BaseException as rollback_error:
                if rollback_error is not exc and not isinstance(rollback_error, DamasError):
                    raise self.storage_error("rollback", rollback_error) from rollback_error
                raise
            raise
        else:
            outer.depth -= 1
            try:
                cm.__exit__(None, None, None)
            except DamasError:
                raise
            except Exception as e:
                raise self.storage_error("commit", e) from e
            self._committed()

    # -- the change feed --------------------------------------------------------------

    @_translated
    def changes(self, since: int, limit: int) -> tuple[int, list[Change]]:
        """The latest change of each id whose sequence number is above ``since``, in
        sequence order, at most ``limit`` of them: ``(last_seq, [(seq, id, deleted), …])``.

        Rules:

        - Every write that changes an element (an insert that stores, a patch that
          applies, a delete that removes) takes a store-wide sequence number, strictly
          increasing in commit order, written in the same transaction as the write. A
          write that changes nothing (a duplicate insert, a patch whose guard fails, a
          delete of an absent id) takes none.
        - Each id appears once, at its latest seq: a transaction writing one id several
          times leaves one entry, at its last write's seq. ``deleted`` is ``True`` for a
          tombstone (the id's last change removed it); re-creating the id replaces the
          tombstone.
        - ``last_seq`` is the seq of the last entry returned when ``limit`` cut the
          list short, else the store's current :meth:`last_seq`. Reading on from
          ``last_seq`` page by page gives every change exactly once; an empty answer
          gives the current position. A ``since`` at or above the current position
          answers ``(last_seq(), [])``.
        - Internal ids (starting with :data:`damas_core.elements.RESERVED_PREFIX`) are
          numbered like the others; the layer above filters them.
        - A reader whose ``since`` is below :meth:`horizon` may have missed dropped
          tombstones and must read everything again.
        - ``since`` is an integer ≥ 0 and ``limit`` an integer ≥ 1; anything else raises
          ``BadRequest`` and reads nothing.

        >>> from damas_core.backends.memory import MemoryStorage
        >>> store = MemoryStorage("memory://")
        >>> store.insert_many([{"_id": "/a"}, {"_id": "/b"}])
        [True, True]
        >>> store.patch_many([Patch("/a", set={"n": 1})])
        [True]
        >>> store.delete_many(["/b"])
        [True]
        >>> store.changes(0, 10)
        (4, [(3, '/a', False), (4, '/b', True)])
        >>> store.changes(0, 1)  # cut by the limit: read on from 3
        (3, [(3, '/a', False)])
        >>> store.changes(3, 10)
        (4, [(4, '/b', True)])
        >>> store.changes(4, 10)
        (4, [])
        """
        _check_count("changes", "since", since, 0)
        _check_count("changes", "limit", limit, 1)
        return self._changes(since, limit)

    @_translated
    def last_seq(self) -> int:
        """The store's current position: the highest sequence number committed (0 for a
        new store). Cheap: a reader polls it.

        >>> from damas_core.backends.memory import MemoryStorage
        >>> store = MemoryStorage("memory://")
        >>> store.last_seq()
        0
        >>> store.insert_many([{"_id": "/a"}, {"_id": "/a"}])
        [True, False]
        >>> store.last_seq()
        1
        """
        return self._last_seq()

    @_translated
    def horizon(self) -> int:
        """The highest sequence number dropped by :meth:`drop_tombstones` (0 if none).
        A reader whose ``since`` is below it must read everything again."""
        return self._horizon()

    @_translated
    def drop_tombstones(self, older_than_ms: int) -> int:
        """Remove the tombstones of ids deleted before ``older_than_ms`` (milliseconds
        since the epoch; each tombstone keeps its deletion time), raise :meth:`horizon`
        to the highest seq removed, and return how many were removed. Live entries are
        never removed; ``last_seq`` does not change.

        >>> import time
        >>> from damas_core.backends.memory import MemoryStorage
        >>> store = MemoryStorage("memory://")
        >>> store.insert_many([{"_id": "/a"}, {"_id": "/b"}])
        [True, True]
        >>> store.delete_many(["/a"])
        [True]
        >>> store.drop_tombstones(time.time_ns() // 1_000_000 + 1000)
        1
        >>> store.horizon(), store.changes(0, 10)
        (3, (3, [(2, '/b', False)]))
        """
        _check_count("drop_tombstones", "older_than_ms", older_than_ms, 0)
        return self._drop_tombstones(older_than_ms)

    @_translated
    def ensure_index(self, key: str) -> None:
        """Keep a secondary index on the top-level ``key`` from now on (idempotent)."""
        if key not in self.indexes:
            self.indexes = (*self.indexes, key)
        self._ensure_index(key)

    def close(self) -> None:
        """Release files and connections. Using the store afterwards is an error."""
        self._close()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what a backend implements --------------------------------------------------

    @abc.abstractmethod
    def _get_many(self, ids: list[str]) -> list[Element | None]:
        """Fresh copies of the stored elements, ``None`` where absent."""

    @abc.abstractmethod
    def _insert_many(self, elements: Sequence[Element], op: str) -> list[bool]:
        """Insert atomically as one step (one write transaction). Each element is
        checked and encoded by ``damas_core.elements.encode(element, op)``; when that
        raises, nothing of the call is written."""

    @abc.abstractmethod
    def _patch_many(self, patches: Sequence[Patch]) -> list[bool]:
        """Apply atomically as one step; check each ``expect`` against the stored element."""

    @abc.abstractmethod
    def _delete_many(self, ids: list[str]) -> list[bool]:
        """Delete atomically as one step."""

    @abc.abstractmethod
    def _scan(self) -> Iterable[Element]:
        """Every stored element (copies), in ``_id`` order."""

    @abc.abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """A re-entrant write transaction: commit on a clean exit, roll back otherwise."""

    @abc.abstractmethod
    def _changes(self, since: int, limit: int) -> tuple[int, list[Change]]:
        """The feed after ``since`` (arguments checked), as :meth:`changes` states,
        read in one consistent snapshot."""

    @abc.abstractmethod
    def _last_seq(self) -> int:
        """The highest committed seq, 0 for a new store."""

    @abc.abstractmethod
    def _horizon(self) -> int:
        """The highest seq dropped by compaction, 0 if none."""

    @abc.abstractmethod
    def _drop_tombstones(self, older_than_ms: int) -> int:
        """Remove tombstones deleted before ``older_than_ms`` in one write transaction,
        raise the horizon, return how many."""

    def _find(self, query: Node, sort: Sort, skip: int, limit: int | None) -> list[str]:
        """Default: scan and filter with the Python predicate. Backends that can run
        the query natively (MongoDB, SQL) override this; backends with their own
        indexes override :meth:`_candidates` instead."""
        return [e["_id"] for e in select(self._candidates(query), query, sort, skip, limit)]

    def _find_elements(
        self, query: Node, sort: Sort, skip: int, limit: int | None
    ) -> list[Element]:
        """Default: the predicate over :meth:`_candidates`, or, for a backend that
        overrides :meth:`_find`, its ids read back with :meth:`_get_many`."""
        if type(self)._find is not Storage._find:
            found = self._get_many(self._find(query, sort, skip, limit))
            return [e for e in found if e is not None]
        return select(self._candidates(query), query, sort, skip, limit)

    def _count(self, query: Node) -> int:
        """Default: the length of an unlimited ``_find``."""
        return len(self._find(query, (), 0, None))

    def _candidates(self, query: Node) -> Iterable[Element]:
        """Elements that may match ``query`` (a superset). Default: all of them.
        A backend with secondary indexes narrows this with :func:`index_lookup`."""
        return self._scan()

    def _ensure_index(self, key: str) -> None:  # noqa: B027 - optional hook
        """Build the index for ``key``. Default: nothing (the backend scans)."""

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Default: nothing."""


def insert_encoded(
    stored: Mapping[str, bytes],
    put: Callable[[str, bytes], None],
    elements: Sequence[Element],
    op: str,
) -> list[bool]:
    """``insert_many`` for backends keeping each element's JSON by id in memory:
    ``stored`` maps ids to JSON, ``put(id, json)`` stores one. Every element is
    encoded before the first put (so one that is not an element writes nothing)."""
    out = []
    for element, raw in zip(elements, list(encode_all(elements, op))):
        fresh = element["_id"] not in stored
        if fresh:
            put(element["_id"], raw)
        out.append(fresh)
    return out


def patch_encoded(
    stored: Mapping[str, bytes], put: Callable[[str, bytes], None], patches: Sequence[Patch]
) -> list[bool]:
    """``patch_many`` for the same backends (see :func:`insert_encoded`)."""
    out = []
    for p in patches:
        raw = stored.get(p.id)
        if raw is None:
            out.append(False)
            continue
        element = orjson.loads(raw)
        ok = apply_patch(element, p)
        if ok:
            put(p.id, orjson.dumps(element))
        out.append(ok)
    return out


def apply_patch(element: Element, patch: Patch) -> bool:
    """Apply ``patch`` to ``element`` in place if its guard holds; ``True`` if applied.

    The one implementation of patch semantics for backends that hold elements as
    Python dicts (memory, LMDB, TinyDB).
    """
    if patch.expect:
        for key, wanted in patch.expect.items():
            current = element.get(key, MISSING)
            if wanted is MISSING or current is MISSING:
                if current is not wanted:
                    return False
            elif current != wanted or bracket(current) != bracket(wanted):
                return False  # 1 == True in Python, but not in JSON
    for key in patch.unset:
        element.pop(key, None)
    element.update(patch.set)
    return True


def _plain(elements: Sequence[Element]) -> bool:
    """True when every element is a plain dict with a non-empty string ``_id``, checked
    in bulk: bulk writes are where a Python step per element shows."""
    try:
        ids = list(map(id_of, elements))  # KeyError, TypeError: not that
        joined = "\x00".join(ids)  # TypeError unless all strings
    except (KeyError, TypeError):
        return False
    return bool(joined) and set(map(type, elements)) == {dict} and "" not in ids


def _check_ids(ids: Sequence[Any]) -> list[str]:
    if isinstance(ids, str | bytes):
        raise BadRequest("storage error: ids must be a list of strings, not a string")
    out = list(ids)
    try:
        if "" not in out and "".join(out):  # TypeError unless all strings: in bulk
            return out
    except TypeError:
        pass
    for i in out:
        if not isinstance(i, str) or i == "":
            raise BadRequest(f"storage error: an _id must be a non-empty string, not {i!r}")
    return out


def _check_count(op: str, name: str, value: Any, least: int) -> None:
    if value.__class__ is not int or value < least:
        raise BadRequest(f"{op} error: {name} must be an integer >= {least}, not {value!r}")


def now_ms() -> int:
    """The time tombstones are stamped with: milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def select(
    elements: Iterable[Element], query: Node, sort: Sort, skip: int, limit: int | None
) -> list[Element]:
    """Filter ``elements`` with the Python predicate, then sort, skip and limit.

    The one implementation of the ordering rules for backends without a native engine.
    ``elements`` may come in any order; the result is sorted by ``sort`` then ``_id``.
    """
    from damas_core.query.predicate import to_predicate

    match = to_predicate(query)
    hits = [e for e in elements if match(e)]
    hits.sort(key=lambda e: e["_id"])
    for key, direction in reversed(sort):
        path = tuple(key.split("."))
        hits.sort(key=lambda e, p=path: sort_key(resolve_first(e, p)), reverse=direction < 0)
    end = None if limit is None else skip + limit
    return hits[skip:end]


def resolve_first(element: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at a dotted path for sorting (``MISSING`` when absent)."""
    value: Any = element
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return MISSING
    return value


def index_lookup(query: Node, indexed: Sequence[str]) -> tuple[str, tuple[Any, ...]] | None:
    """The indexed key and values a query pins down, if any.

    Returns ``(key, values)`` when the query, or one term of a top-level ``And``, is an
    ``Eq`` or ``In`` on a single-key path that is indexed, so that only elements whose
    ``key`` holds one of ``values`` can match; ``None`` otherwise (scan). ``All`` and
    queries on unindexed keys return ``None``.
    """
    terms = query.nodes if isinstance(query, And) else (query,)
    for t in terms:
        if isinstance(t, Eq | In) and len(t.path) == 1 and t.path[0] in indexed:
            values = (t.value,) if isinstance(t, Eq) else t.values
            if None in values:  # null also matches a missing key: not in any index
                continue
            return t.path[0], values
    return None


#: Characters that mean something in a regex: a prefix is literal only without them.
_REGEX_SYNTAX = frozenset("\\.^$|?*+()[]{}")
_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ ")
#: A sort that is the default order: by ``_id``, ascending.
ID_ORDER: tuple[Sort, ...] = ((), (("_id", 1),))


def id_prefix(query: Node) -> str | None:
    r"""The literal prefix ``query`` pins ``_id`` to, if any: only ids starting with it
    can match, so a store whose keys are the ids in order reads just that key range.

    It is found when the query, or a term of a top-level ``And`` (``And``s within it
    included), is a ``Regex`` on ``_id`` made of ``^`` and a literal: any character but
    regex syntax, a backslash before punctuation (``\/``), or ``\xHH``, as
    ``re2.escape`` and the query language write them, and without the ``i`` or ``m``
    flag. Of several, the longest. ``None`` otherwise.

    >>> from damas_core.query.parser import parse
    >>> id_prefix(parse(r"_id:/^\/shots\/s01\// type:shot"))
    '/shots/s01/'
    >>> id_prefix(parse(r"_id:/^\/shots.*/")) is None, id_prefix(parse(r"_id:/\/shots/")) is None
    (True, True)
    """
    found = (
        _literal_prefix(node.pattern)
        for node in _terms(query)
        if isinstance(node, Regex) and node.path == ("_id",) and not {"i", "m"} & set(node.flags)
    )
    return max(filter(None, found), key=len, default=None)


def prefix_range(query: Node) -> Node:
    r"""``query`` with each regex on ``_id`` that is ``^`` and a literal (as
    :func:`id_prefix` reads them) replaced by the range it spans: ``_id>=p`` and, when
    there is one, ``_id<`` the least string above every string starting with ``p``.
    Every ``_id`` is a string, so the two mean the same, and a store keyed by ``_id``
    answers the range from its key order.

    >>> from damas_core.query.parser import parse
    >>> prefix_range(parse(r"_id:/^\/s\//"))
    And(nodes=(Cmp(path=('_id',), op='>=', value='/s/'), Cmp(path=('_id',), op='<', value='/s0')))
    >>> prefix_range(parse(r"-_id:/^a/i")) == parse(r"-_id:/^a/i")
    True
    """
    t = type(query)
    if t is Regex:
        prefix = id_prefix(query)
        if not prefix:
            return query
        return prefix_span(("_id",), prefix)
    if t is Not:
        inner = prefix_range(query.node)
        return query if inner is query.node else Not(inner)
    if t is And or t is Or:
        nodes = tuple(map(prefix_range, query.nodes))
        return query if nodes == query.nodes else t(nodes)
    return query


def prefix_span(path: tuple[str, ...], prefix: str) -> And:
    """The strings at ``path`` that start with ``prefix``, as a range: ``>= prefix`` and,
    when there is one, ``<`` the least string above every string starting with it.

    >>> prefix_span(("name",), "a\U0010ffff")
    And(nodes=(Cmp(path=('name',), op='>=', value='a\U0010ffff'), Cmp(path=('name',), op='<', value='b')))
    """
    terms: list[Node] = [Cmp(path, ">=", prefix)]
    chars = list(prefix)
    while chars:
        c = ord(chars.pop()) + 1
        if c == 0xD800:
            c = 0xE000  # no string holds a lone surrogate
        if c <= 0x10FFFF:
            terms.append(Cmp(path, "<", "".join(chars) + chr(c)))
            break
    return And(tuple(terms))


def id_lower_bound(query: Node) -> str | None:
    """The least ``_id`` ``query`` lets match, if it says one: a ``_id>v`` or ``_id>=v``
    with a string ``v``, the query itself or a term of a top-level ``And`` (``And``s
    within it included); of several, the greatest. A store whose keys are the ids in
    order starts reading there: ``_id>last`` pages on from any depth at the cost of a
    page. ``None`` otherwise.

    >>> from damas_core.query.parser import parse
    >>> id_lower_bound(parse("_id>/s/b _id>=/s/a origin:*"))
    '/s/b'
    >>> id_lower_bound(parse("_id</s/b")) is None, id_lower_bound(parse("_id>3")) is None
    (True, True)
    """
    bounds = [
        node.value
        for node in _terms(query)
        if isinstance(node, Cmp)
        and node.path == ("_id",)
        and node.op in (">", ">=")
        and isinstance(node.value, str)
    ]
    return max(bounds, default=None)


def _terms(query: Node) -> Iterator[Node]:
    """``query``, or the terms of a top-level ``And`` (those of ``And``s within it too):
    what every match must match."""
    todo = [query]
    while todo:
        node = todo.pop()
        if isinstance(node, And):
            todo.extend(node.nodes)
        else:
            yield node


def _literal_prefix(pattern: str) -> str | None:
    """What an anchored, wholly literal pattern matches at the start; ``None`` when the
    pattern is anything else."""
    if not pattern.startswith("^"):
        return None
    text, end = literal_head(pattern, 1)
    return text if end == len(pattern) else None


def literal_head(pattern: str, start: int = 0) -> tuple[str, int]:
    r"""The literal text ``pattern`` spells from ``start`` (any character but regex
    syntax, a backslash before punctuation, ``\xHH``), and the index where that stops.

    >>> literal_head(r"^\/a\x2fb.*", 1)
    ('/a/b', 9)
    """
    out: list[str] = []
    i, n = start, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1 : i + 2]
            if nxt in _PUNCTUATION and nxt:
                out.append(nxt)
                i += 2
                continue
            hex_digits = pattern[i + 2 : i + 4]
            if (
                nxt == "x"
                and len(hex_digits) == 2
                and all(h in "0123456789abcdefABCDEF" for h in hex_digits)
            ):
                out.append(chr(int(hex_digits, 16)))
                i += 4
                continue
            break
        if c in _REGEX_SYNTAX:
            break
        out.append(c)
        i += 1
    return "".join(out), i


def index_values(element: Mapping[str, Any], key: str) -> list[Any]:
    """The values under which ``element`` is indexed for ``key``: the value itself, or
    each member of an array (so array members match), none when absent or ``null``."""
    v = element.get(key, MISSING)
    if v is MISSING or v is None:
        return []
    if isinstance(v, list):
        return [m for m in v if m is not None and not isinstance(m, dict | list)]
    if isinstance(v, dict):
        return []
    return [v]


__all__ = [
    "DEFAULT_INDEXES",
    "ID_ORDER",
    "All",
    "Change",
    "Element",
    "Patch",
    "Storage",
    "apply_patch",
    "id_lower_bound",
    "id_prefix",
    "index_lookup",
    "index_values",
    "insert_encoded",
    "literal_head",
    "now_ms",
    "patch_encoded",
    "prefix_range",
    "prefix_span",
    "resolve_first",
    "select",
]
