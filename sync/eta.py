"""How fast a site receives, and when it will hold what it should: throughput and ETAs.

Each agent measures the buckets it copies (bytes of the files copied, seconds rsync
took) and records on its volume, with the status that ends the transfer phase:

- ``rate_<kind>``: bytes per second of that phase's buckets, recorded only when a
  phase copied something (an idle phase leaves the last measure);
- ``bytes_<kind>_total``: every byte the agent copied in that direction, ever
  (``kind``: ``reception`` or ``emission``).

A site's ETA is what it still lacks (files and bytes wanted there and not held there
in their current version: :func:`.status.completion`'s ``files_wanted - files_ok``)
over the rate it receives at: its own agent's ``rate_reception``, else the emission
rates of the other sites' agents (a site without an agent is filled by them).

>>> remaining({"files_ok": 1, "files_wanted": 4, "bytes_ok": 10, "bytes_wanted": 1010})
(3, 1000)
>>> site_eta({"files_ok": 1, "files_wanted": 4, "bytes_ok": 10, "bytes_wanted": 1010},
...          {"name": "tokyo", "rate_reception": 100.0}, [])
{'files': 3, 'bytes': 1000, 'rate': 100.0, 'eta_seconds': 10.0}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .record import COPIED

KINDS = ("reception", "emission")


class Moved:
    """What one transfer phase copied: bytes and the seconds its buckets took.

    >>> m = Moved()
    >>> m.add([], {}, 2.0)
    >>> m.keys("reception", {})
    {}
    """

    def __init__(self) -> None:
        self.bytes = 0
        self.seconds = 0.0

    def add(self, outcomes: Iterable[Any], files: Mapping[str, Any], seconds: float) -> None:
        """Count one bucket: its copied files' sizes and its duration (a bucket that
        copied nothing does not count: its time says nothing of the rate)."""
        copied = 0
        for o in outcomes:
            if o.status != COPIED:
                continue
            size = (o.learned or {}).get("file_size")
            if size is None:
                size = (files.get(o.file_id) or {}).get("file_size")
            if isinstance(size, int) and not isinstance(size, bool):
                copied += size
        if copied:
            self.bytes += copied
            self.seconds += seconds

    def keys(self, kind: str, volume: Mapping[str, Any]) -> dict[str, Any]:
        """The volume keys recording this phase (none when it copied nothing)."""
        if not self.bytes:
            return {}
        total = volume.get(f"bytes_{kind}_total")
        total = total if isinstance(total, int) and not isinstance(total, bool) else 0
        return {
            f"rate_{kind}": round(self.bytes / max(self.seconds, 1e-3), 1),
            f"bytes_{kind}_total": total + self.bytes,
        }


def remaining(counts: Mapping[str, Any]) -> tuple[int, int]:
    """Files and bytes a site still lacks, from its completion counts."""
    return (
        max(0, counts["files_wanted"] - counts["files_ok"]),
        max(0, counts["bytes_wanted"] - counts["bytes_ok"]),
    )


def _rate(volume: Mapping[str, Any], key: str) -> float | None:
    value = volume.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def site_eta(
    counts: Mapping[str, Any], volume: Mapping[str, Any], others: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """``{"files", "bytes", "rate", "eta_seconds"}`` of one site (see the module):
    ``rate`` (bytes/s) and ``eta_seconds`` are ``None`` when nothing measured one; the
    ETA is 0 when nothing is missing."""
    files, size = remaining(counts)
    rate = _rate(volume, "rate_reception")
    if rate is None:
        rates = [r for r in (_rate(v, "rate_emission") for v in others) if r is not None]
        rate = sum(rates) if rates else None
    if not size and not files:
        eta: float | None = 0.0
    elif rate is None:
        eta = None
    else:
        eta = round(size / rate, 1)
    return {"files": files, "bytes": size, "rate": rate, "eta_seconds": eta}


def etas(
    completion: Mapping[str, Mapping[str, Any]], vols: Iterable[Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """:func:`site_eta` of each site of ``completion`` (site name → counts)."""
    listed = list(vols)
    by_name = {v.get("name"): v for v in listed}
    return {
        site: site_eta(counts, by_name.get(site, {}), [v for v in listed if v.get("name") != site])
        for site, counts in completion.items()
    }


def duration(seconds: Any) -> str:
    """An ETA for people.

    >>> duration(None), duration(0), duration(95), duration(7300), duration(200000)
    ('—', 'done', '1 min 35 s', '2 h 01 min', '2 d 7 h')
    """
    if seconds is None:
        return "—"
    s = int(seconds)
    if s <= 0:
        return "done"
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


__all__ = ["KINDS", "Moved", "duration", "etas", "remaining", "site_eta"]
