"""A volume's activity log: each change of a site's state is an element under its volume.

An event is ``{"#parent": <volume id>, "event": <name>, "time": <ms>, "detail": {...}}``,
written by the process that sees the change (the hub for a storage's connection, an
agent for its errors, brakes and conflicts, a watcher for an agent that stopped beating).
``create`` sets ``time`` and ``author``, so an event says who saw it and when; its
``_id`` is a fresh ULID, so events sort by creation.

Read the log with ``search("#parent:<volume id> event:*")``, with :func:`log`, with
``damas sync log`` or on the dashboard's site page.

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> _ = t.create({"_id": "vol_paris", "name": "paris", "url": "file:///srv/paris/"})
>>> record(t, "vol_paris", "unreachable", {"status": "refused", "code": 255})["event"]
'unreachable'
>>> [e["event"] for e in log(t, ["vol_paris"])]
['unreachable']
>>> record(t, "vol_paris", "asleep")
Traceback (most recent call last):
...
ValueError: activity: unknown event 'asleep'; one of agent_down, agent_up, unreachable, reachable, errors, errors_fixed, brake, conflict, disabled, enabled
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from .statefile import StateDir
from .tracker_api import TrackerAPI

_log = logging.getLogger(__name__)

#: every event name, each with the one that ends it (or ``None``)
EVENTS: dict[str, str | None] = {
    "agent_down": "agent_up",  # no heartbeat for agentTimeout seconds
    "agent_up": None,
    "unreachable": "reachable",  # a storage's connection, seen from its hub
    "reachable": None,
    "errors": "errors_fixed",  # files newly failing at that site: count and a few ids
    "errors_fixed": None,
    "brake": None,  # a deletion brake stopped a cycle
    "conflict": None,  # new conflicts
    "disabled": "enabled",  # a switch turned off: who and which
    "enabled": None,
}
#: how bad each event is, for a digest's subject: the worst one names it
SEVERITY: dict[str, int] = {
    "agent_down": 3,
    "unreachable": 3,
    "brake": 2,
    "errors": 2,
    "conflict": 2,
    "disabled": 1,
    "agent_up": 0,
    "reachable": 0,
    "errors_fixed": 0,
    "enabled": 0,
}


def event_element(
    volume_id: str, event: str, detail: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The element :func:`record` creates; ``ValueError`` for an unknown event name.

    >>> event_element("vol_tokyo", "brake", {"would_delete": 120, "maxDelete": 100})
    {'#parent': 'vol_tokyo', 'event': 'brake', 'detail': {'would_delete': 120, 'maxDelete': 100}}
    """
    if event not in EVENTS:
        raise ValueError(f"activity: unknown event {event!r}; one of {', '.join(EVENTS)}")
    if not isinstance(volume_id, str) or not volume_id:
        raise ValueError(f"activity: a volume id is a non-empty string, not {volume_id!r}")
    return {"#parent": volume_id, "event": event, "detail": dict(detail or {})}


def record(
    tracker: TrackerAPI, volume_id: str, event: str, detail: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Create one event under ``volume_id`` and return it (``time`` and ``author`` set
    by the tracker)."""
    return tracker.create(event_element(volume_id, event, detail))


def log(
    tracker: TrackerAPI,
    volume_ids: Iterable[str] | None = None,
    *,
    since: int | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """The events under ``volume_ids`` (every volume's when ``None``), oldest first
    (``newest_first``: the other way, so that ``limit`` keeps the latest), those at or
    after ``since`` (ms) only when given.

    One search per volume: each reads the ``#parent`` index, where one query for
    several volumes would read the whole store (finding every volume, for ``None``, is
    a search of the store: callers that know the volumes give their ids)."""
    from .volumes import volumes

    ids = list(volume_ids) if volume_ids is not None else [v["_id"] for v in volumes(tracker)]
    extra = f" time>={int(since)}" if since is not None else ""
    sort = "-time" if newest_first else "time"
    found: list[dict[str, Any]] = []
    for vid in dict.fromkeys(ids):
        found += tracker.search_elements(
            f'"#parent":{_quoted(vid)} event:*{extra}', sort=sort, limit=limit
        )
    if len(ids) > 1:
        found.sort(key=lambda e: (_number(e.get("time")), e["_id"]), reverse=newest_first)
    return found[:limit] if limit is not None else found


def _number(value: Any) -> float:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_event(element: Mapping[str, Any] | None) -> bool:
    """True for an element of the activity log.

    >>> is_event({"_id": "x", "#parent": "vol_a", "event": "brake", "time": 1})
    True
    >>> is_event({"_id": "x", "#parent": "/a", "comment": "c"})
    False
    """
    return (
        element is not None
        and isinstance(element.get("#parent"), str)
        and element.get("event") in EVENTS
    )


def worst(events: Iterable[str]) -> str | None:
    """The most severe of ``events`` (:data:`SEVERITY`; the first of equals), ``None``
    for none.

    >>> worst(["agent_up", "errors", "agent_down", "unreachable"])
    'agent_down'
    """
    best: str | None = None
    for e in events:
        if best is None or SEVERITY.get(e, 0) > SEVERITY.get(best, 0):
            best = e
    return best


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now_ms: int | None = None) -> int:
    """A point in time in ms from ``2h``-like text (that long ago: ``s``, ``m``, ``h``,
    ``d``, ``w``) or an ISO date or date-time (UTC unless it says otherwise);
    ``ValueError`` saying what is accepted otherwise.

    >>> parse_since("2h", now_ms=10_000_000)
    2800000
    >>> parse_since("1970-01-02")
    86400000
    >>> parse_since("yesterday")
    Traceback (most recent call last):
    ...
    ValueError: since: 'yesterday' is neither a duration (30m, 2h, 7d) nor an ISO date (2026-01-31 or 2026-01-31T08:00)
    """
    m = _RELATIVE.match(text)
    if m:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return now - int(float(m.group(1)) * _UNIT[m.group(2)] * 1000)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"since: {text!r} is neither a duration (30m, 2h, 7d) nor an ISO date "
            "(2026-01-31 or 2026-01-31T08:00)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def recipients(volume: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    """Who hears of a volume's events: its ``notifiedEmails`` then the global
    ``notifiedEmails`` (a comma-separated string, as damas-core stores it, or a list),
    each address once, blanks left out.

    >>> recipients({"notifiedEmails": "a@x.org, b@x.org"}, {"notifiedEmails": ["b@x.org", "c@y.org"]})
    ['a@x.org', 'b@x.org', 'c@y.org']
    """
    out: list[str] = []
    for value in (volume.get("notifiedEmails"), params.get("notifiedEmails")):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            continue
        for item in items:
            address = item.strip() if isinstance(item, str) else ""
            if address and "@" in address and address not in out:
                out.append(address)
    return out


# -- what an agent's cycle tells ------------------------------------------------------------

#: how many ids an ``errors`` or ``conflict`` event names (its ``count`` says how many in all)
MAX_IDS = 10
#: the agent's memory of its last cycle, in its state directory
MEMORY_FILE = "activity.json"
_BRAKE_MARK = "more than maxDelete"  # in the message of deletions.brake


def cycle_events(
    previous: Mapping[str, Any], report: Any, files: Mapping[str, Any]
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """The events a cycle's ``report`` (an :class:`.agent.Report`) makes against what
    the ``previous`` cycles left, and what to remember for the next one.

    A file is failing at the report's site while its element in ``files`` (the agent's
    view, after the cycle) holds ``syncError_<site>``; ``errors`` names the files newly
    failing, ``errors_fixed`` says none is failing any more; ``brake`` comes when a
    deletion brake stops a cycle (once, until it lets go); ``conflict`` names the files
    this cycle kept both copies of.

    >>> from types import SimpleNamespace as R
    >>> files = {"/a": {"syncError_t": 23}, "/b": {}}
    >>> r = R(site="t", failed={"/a": 23, "/b": 23}, scan_errors=[], conflicts=[])
    >>> events, memory = cycle_events({}, r, files)
    >>> events, memory["failing"]
    ([('errors', {'count': 1, 'failing': 1, 'ids': ['/a'], 'codes': {'23': 1}})], ['/a'])
    >>> files["/a"] = {}
    >>> cycle_events(memory, R(site="t", failed={}, scan_errors=[], conflicts=[]), files)[0]
    [('errors_fixed', {'count': 1})]
    """
    key = f"syncError_{report.site}"
    before = set(previous.get("failing") or ())
    now_failing: dict[str, Any] = {}
    for i in before | set(report.failed):
        element = files.get(i)
        if element is not None and element.get(key) is not None:
            now_failing[i] = element[key]
    events: list[tuple[str, dict[str, Any]]] = []
    new = sorted(set(now_failing) - before)
    if new:
        codes: dict[str, int] = {}
        for i in new:
            codes[str(now_failing[i])] = codes.get(str(now_failing[i]), 0) + 1
        events.append(
            ("errors", {"count": len(new), "failing": len(now_failing), "ids": new[:MAX_IDS],
                        "codes": codes})
        )  # fmt: skip
    elif before and not now_failing:
        events.append(("errors_fixed", {"count": len(before)}))
    brake = next((m for m in report.scan_errors if _BRAKE_MARK in m), None)
    if brake is not None and brake != previous.get("brake"):
        events.append(("brake", {"message": brake}))
    if report.conflicts:
        ids = sorted(report.conflicts)
        events.append(("conflict", {"count": len(ids), "ids": ids[:MAX_IDS]}))
    return events, {"failing": sorted(now_failing), "brake": brake}


def after_cycle(
    tracker: TrackerAPI,
    volume_id: str,
    report: Any,
    files: Mapping[str, Any],
    state_dir: str | os.PathLike[str],
) -> list[dict[str, Any]]:
    """Record the events of one cycle (:func:`cycle_events`) under ``volume_id`` and
    remember the cycle in ``state_dir`` (so that a restarted agent does not record them
    again); returns the events recorded. A failure is logged, never raised: the next
    cycle compares with the last cycle remembered and records what is still new."""
    try:
        state = StateDir(state_dir)
        previous = state.read(MEMORY_FILE) or {}
        events, memory = cycle_events(previous, report, files)
        recorded = [record(tracker, volume_id, name, detail) for name, detail in events]
        if memory != previous:
            state.write(MEMORY_FILE, memory)
        return recorded
    except Exception as e:  # the cycle itself went through
        _log.warning("%s: cannot record the cycle's activity: %s", volume_id, e)
        return []


__all__ = [
    "EVENTS",
    "MAX_IDS",
    "SEVERITY",
    "after_cycle",
    "cycle_events",
    "event_element",
    "is_event",
    "log",
    "parse_since",
    "recipients",
    "record",
    "worst",
]
