"""The per-site state of a file: the key names, and the rules read from them.

Every key the engine writes about one site on a file element is named here, once, by
:class:`SiteKeys`; the planner, the scanner, the agent and the status matrix read
them through it, and the rules on them (who wrote the current version, whether a
site holds it, whether a copy changed since the site's baseline, the conflict record)
live beside them.

>>> keys = SiteKeys("tokyo")
>>> keys.synced, keys.error, keys.conflict
('synced_tokyo', 'syncError_tokyo', 'conflict_tokyo')
>>> el = {"origin": "paris", "time": 5, "synced_tokyo": 5}
>>> writer_of(el), holds_current(el, "tokyo"), holds_current(el, "lyon")
('paris', True, False)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

#: the prefixes of the per-site keys, ``<prefix><site>``
PREFIXES = (
    "synced_",
    "syncError_",
    "syncFailures_",
    "syncLastAttempt_",
    "syncWait_",
    "modified_",
    "conflict_",
    "sync_",
    "trashed_",
)


_FIELDS = ("synced", "error", "failures", "attempt", "wait", "modified", "conflict")
_FIELDS += ("wanted", "trashed")


@dataclass(frozen=True)
class SiteKeys:
    """The names of the per-site keys of ``site`` on a file element.

    - ``synced``: the ``time`` of the version the site holds (ms), its sync baseline;
    - ``error``: the rsync exit code of the last failed copy there (23: not found);
    - ``failures``: failed copies in a row (the back-off counts them);
    - ``attempt``: when a copy there was last tried (ms);
    - ``wait``: why a copy there waits (a lock, a conflict, another agent);
    - ``modified``: when the site's scan wrote the current version (ms);
    - ``conflict``: the conflict record (:func:`conflict_record`);
    - ``wanted``: ``sync_<site>``, true/false: the file is wanted there or not;
    - ``trashed``: where the site's copy was moved when its deletion was propagated.
    """

    site: str
    synced: str = field(init=False)
    error: str = field(init=False)
    failures: str = field(init=False)
    attempt: str = field(init=False)
    wait: str = field(init=False)
    modified: str = field(init=False)
    conflict: str = field(init=False)
    wanted: str = field(init=False)
    trashed: str = field(init=False)

    def __post_init__(self) -> None:
        for name, prefix in zip(_FIELDS, PREFIXES, strict=True):
            object.__setattr__(self, name, prefix + self.site)


@lru_cache(maxsize=256)
def site_keys(site: str) -> SiteKeys:
    """:class:`SiteKeys` of ``site``, made once per site (the rules below run per file)."""
    return SiteKeys(site)


def site_of_key(key: str) -> str | None:
    """The site a per-site key names, or ``None`` for any other key.

    >>> site_of_key("syncError_tokyo"), site_of_key("sync_priority"), site_of_key("time")
    ('tokyo', 'priority', None)
    """
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :] or None
    return None


def writer_of(element: Mapping[str, Any]) -> str | None:
    """The site whose scan produced the element's current version.

    The site with the latest ``modified_<site>`` when that is not older than
    ``time``, else the ``origin``.

    >>> writer_of({"origin": "paris", "time": 5, "modified_tokyo": 5})
    'tokyo'
    >>> writer_of({"origin": "paris", "time": 9, "modified_tokyo": 5})
    'paris'
    """
    t = element.get("time") or 0
    best, best_t = None, -1
    for key in element:
        # the first-letter test keeps this cheap on the many elements with no modified_ key
        if key[0] != "m" or not key.startswith("modified_"):
            continue
        value = element[key]
        if isinstance(value, int | float) and value >= t and value > best_t:
            best, best_t = key[9:], value
    return best or element.get("origin")


def holds_current(element: Mapping[str, Any], site: str, writer: str | None = None) -> bool:
    """True when ``site`` holds the element's current version (it wrote it or synced it).
    ``writer``: the element's :func:`writer_of`, when the caller has it already.

    >>> holds_current({"origin": "p", "time": 5, "synced_t": 4}, "t")
    False
    """
    if deleted_here(element, site):
        return False
    synced = element.get(site_keys(site).synced)
    if isinstance(synced, int | float) and synced >= (element.get("time") or 0):
        return True
    return (writer or writer_of(element)) == site


def deleted_here(element: Mapping[str, Any], site: str) -> bool:
    """True when the element is recorded deleted by ``site``'s scan (``deleted_at``;
    the origin for deletions recorded before that key).

    >>> deleted_here({"origin": "p", "deleted": True}, "p")
    True
    >>> deleted_here({"origin": "p", "deleted": True, "deleted_at": "t"}, "p")
    False
    """
    return bool(element.get("deleted")) and element.get("deleted_at", element.get("origin")) == site


#: ``file_mtime`` values below this are seconds, as earlier versions wrote them (a
#: float); 10^11 ms is in 1973, 10^11 s in the year 5138
SECONDS_BELOW = 10**11


def mtime_ms(mtime: int) -> int:
    """The ``file_mtime`` of a look's mtime (ns): the millisecond it falls in.

    >>> mtime_ms(1_567_529_676_123_999_999)
    1567529676123
    """
    return mtime // 1_000_000


#: nanoseconds in a millisecond: the precision of ``file_mtime`` (an integer of ms)
MILLISECOND = 1_000_000


def same_mtime(mtime: int, recorded: Any, precision: int = 1) -> bool:
    """True when a copy's mtime (ns) is the ``file_mtime`` ``recorded``. The one place
    an mtime a site lists is compared with an element's: at the coarser of the
    listing's ``precision`` (ns; 1 for nanoseconds, 10**9 for a listing in whole
    seconds) and the element's (a millisecond), so that no precision difference makes
    a new version, a conflict or a transfer.

    At a millisecond or finer: the same millisecond, or, for a value below
    :data:`SECONDS_BELOW` that is not that millisecond, the same time in seconds to the
    microsecond (what earlier versions wrote, and the precision they compared at).
    At a coarser precision: the same step of it (mtimes are listed truncated).

    >>> ns = 1_567_529_676_123_456_789
    >>> same_mtime(ns, 1_567_529_676_123), same_mtime(ns, 1_567_529_676_124)
    (True, False)
    >>> same_mtime(ns, 1567529676.1234567), same_mtime(ns, 1567529676.1244567)
    (True, False)
    >>> same_mtime(1_567_529_676_000_000_000, 1_567_529_676_123, 10**9)  # whole seconds
    True
    >>> same_mtime(1_567_529_677_000_000_000, 1_567_529_676_123, 10**9)
    False
    """
    kind = recorded.__class__
    if precision > MILLISECOND:
        if kind is int:
            recorded_ns = recorded * MILLISECOND
        elif kind is float and recorded == recorded:
            recorded_ns = int(recorded * (1e9 if recorded < SECONDS_BELOW else 1e6))
        else:
            return False
        return mtime // precision == recorded_ns // precision
    if kind is int:
        if recorded == mtime // MILLISECOND:
            return True
    elif kind is not float or recorded != recorded:  # not a number (or NaN)
        return False
    elif recorded >= SECONDS_BELOW:
        return recorded == mtime // MILLISECOND
    return recorded < SECONDS_BELOW and abs(mtime - recorded * 1e9) <= 1000


def look_matches(
    look: tuple[int, int] | None, element: Mapping[str, Any], precision: int = 1
) -> bool:
    """True when ``look`` (a copy's size and mtime, listed at ``precision`` ns) is the
    version ``element`` records (``file_size`` and ``file_mtime``, see
    :func:`same_mtime`); false when there is no copy or the element records no size or
    no mtime.

    >>> el = {"file_size": 3, "file_mtime": 1_567_529_676_123}
    >>> look_matches((3, 1_567_529_676_123_456_789), el), look_matches(None, el)
    (True, False)
    >>> look_matches((3, 1_567_529_676_123_456_789), {"file_size": 3})
    False
    """
    if look is None:
        return False
    size = element.get("file_size")
    return (
        size.__class__ is int
        and size == look[0]
        and same_mtime(look[1], element.get("file_mtime"), precision)
    )


def changed_since(mtime: int, synced: Any, precision: int = 1) -> bool:
    """True when a copy whose mtime is ``mtime`` (ns, listed at ``precision`` ns) was
    written after the site's sync baseline ``synced`` (ms since epoch; ``None``: the
    site never synced).

    Compared at the millisecond, or the listing's coarser precision: a baseline is a
    whole millisecond taken when the scan that recorded the copy started, so a copy
    written earlier in that same millisecond (that same second, for a listing in
    seconds) is not a later change.

    >>> changed_since(1_000_400_000, 1000), changed_since(1_001_400_000, 1000)
    (False, True)
    >>> changed_since(1_000_000_000, None)
    True
    """
    if synced is None:
        return True
    if precision > MILLISECOND:
        return mtime // precision > int(synced) * MILLISECOND // precision
    return mtime // MILLISECOND > synced


def changed_here(mtime: int, element: Mapping[str, Any], site: str, precision: int = 1) -> bool:
    """True when the copy at ``site`` (its mtime ``mtime``, ns), which is not the
    version ``element`` records, is a change made there: written after the site's
    baseline, and not the origin's own first copy waiting for its first sync. Such a
    copy is never overwritten: both are kept (a conflict).

    >>> el = {"origin": "paris", "time": 5, "synced_tokyo": 1000}
    >>> changed_here(2_000_000_000, el, "tokyo"), changed_here(900_000_000, el, "tokyo")
    (True, False)
    """
    synced = element.get(site_keys(site).synced)
    return changed_since(mtime, synced, precision) and (
        element.get("origin") != site or synced is not None
    )


def recorded_exactly(look: tuple[int, int], element: Mapping[str, Any], precision: int = 1) -> bool:
    """True when ``element`` records ``look`` (size, mtime in ns, listed at
    ``precision`` ns) as a scan writes it: the same size and ``file_mtime`` the integer
    millisecond of its mtime (not seconds, as earlier versions wrote it: a scan
    rewrites those); for a listing coarser than a millisecond, an integer in the same
    step (the element may know the mtime better than the listing).

    >>> recorded_exactly((3, 1_567_529_676_123_456_789), {"file_size": 3, "file_mtime": 1567529676.1234567})
    False
    """
    mtime = element.get("file_mtime")
    if element.get("file_size") != look[0] or mtime.__class__ is not int:
        return False
    if precision > MILLISECOND:
        return same_mtime(look[1], mtime, precision)
    return mtime == look[1] // MILLISECOND


def settled(
    look: tuple[int, int], element: Mapping[str, Any] | None, site: str, precision: int = 1
) -> bool:
    """True when ``element`` records ``look`` as the version ``site`` holds, with no
    deletion, conflict or error pending there: while neither changes, a scan has
    nothing to write for that file.

    >>> el = {"origin": "paris", "time": 5, "file_size": 3, "file_mtime": 1500}
    >>> look = (3, 1_500_000_000)
    >>> settled(look, el, "paris"), settled((4, 1_500_000_000), el, "paris"), settled(look, el, "tokyo")
    (True, False, False)
    """
    keys = site_keys(site)
    return (
        element is not None
        and recorded_exactly(look, element, precision)
        and holds_current(element, site)
        and not element.get("deleted")
        and not element.get(keys.conflict)
        and element.get(keys.error) is None
    )


def conflict_record(
    now: int, source: str, incoming: str | None, size: int, mtime_ms: int
) -> dict[str, Any]:
    """The value of ``conflict_<site>``: when it was found, the site the other copy
    came from, the id that copy was saved under (``None`` until it is fetched), and
    the size and mtime (ms) of the local copy.

    >>> conflict_record(7, "paris", None, 3, 1500)
    {'time': 7, 'from': 'paris', 'incoming': None, 'local_size': 3, 'local_mtime': 1500}
    """
    return {
        "time": now,
        "from": source,
        "incoming": incoming,
        "local_size": size,
        "local_mtime": mtime_ms,
    }


__all__ = [
    "MILLISECOND",
    "PREFIXES",
    "SECONDS_BELOW",
    "SiteKeys",
    "changed_here",
    "changed_since",
    "conflict_record",
    "deleted_here",
    "holds_current",
    "look_matches",
    "mtime_ms",
    "recorded_exactly",
    "same_mtime",
    "settled",
    "site_keys",
    "site_of_key",
    "writer_of",
]
