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

from collections.abc import Iterable, Mapping
from typing import Any

from .tracker_api import TrackerAPI

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
) -> list[dict[str, Any]]:
    """The events under ``volume_ids`` (every volume's when ``None``), oldest first,
    those at or after ``since`` (ms) only when given."""
    terms = ["event:*"]
    if since is not None:
        terms.append(f"time>={int(since)}")
    ids = list(volume_ids) if volume_ids is not None else None
    if ids is not None:
        if not ids:
            return []
        parents = " OR ".join(f'"#parent":{_quoted(v)}' for v in ids)
        terms.append(f"({parents})")
    else:
        terms.append('"#parent":*')
    return tracker.search_elements(" ".join(terms), sort="time", limit=limit)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


__all__ = ["EVENTS", "SEVERITY", "event_element", "log", "record"]
