"""The transfer bucket an agent is running, as its volume records it (``transferring``).

While rsync copies a bucket, the agent's volume holds one record of it, written once
when the bucket starts (:func:`bucket_record`) and removed with the agent's next
status: ``{"site": the target site, "since": ms, "count": files in the bucket, "ids":
the bucket's ids, sorted, at most MAX_IDS}``. A bucket of more files lists its first
:data:`MAX_IDS` (rsync copies a list in about that order); the others show as queued.
:func:`in_flight` reads the records back for the status matrix, which shows a queued
file among them as transferring.

>>> record = bucket_record("tokyo", ["/b", "/a"], 1000)
>>> record
{'site': 'tokyo', 'since': 1000, 'count': 2, 'ids': ['/a', '/b']}
>>> in_flight([{"_id": "vol_paris", "transferring": record}]) == {"tokyo": {"/a", "/b"}}
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: the volume key of the running bucket
KEY = "transferring"
#: the most ids a record lists: the volume stays small (about 50 kB at most) however
#: large the bucket (``syncAmountReception`` may be any size)
MAX_IDS = 500


def bucket_record(site: str, ids: Iterable[str], now: int) -> dict[str, Any]:
    """The record of a bucket of ``ids`` going to ``site``, started at ``now`` (ms)."""
    ordered = sorted(set(ids))
    return {"site": site, "since": now, "count": len(ordered), "ids": ordered[:MAX_IDS]}


def in_flight(volumes: Iterable[Mapping[str, Any]]) -> dict[str, frozenset[str]]:
    """Site → the ids of the files in a bucket running to it, from the records of
    ``volumes`` (those whose agent runs: the caller leaves out the others). A record
    that is not one (a hand-made value) is ignored, and no record is read past
    :data:`MAX_IDS` ids."""
    out: dict[str, set[str]] = {}
    for v in volumes:
        record = v.get(KEY)
        if not isinstance(record, dict):
            continue
        site, ids = record.get("site"), record.get("ids")
        if isinstance(site, str) and isinstance(ids, list):
            out.setdefault(site, set()).update(i for i in ids[:MAX_IDS] if isinstance(i, str))
    return {site: frozenset(ids) for site, ids in out.items()}


__all__ = ["KEY", "MAX_IDS", "bucket_record", "in_flight"]
