"""The transfer step of a cycle: one bucket's paths, its rsync call, and what each copy
turned out to be.

A bucket (one source, one target, one priority: :meth:`.planner.Plan.buckets`) goes
through, in order: :func:`safe_paths` (every side's guard: an id that is not
canonical, or that leaves a local side's root, is refused and reported),
:func:`split_conflicts` (a copy changed here since its baseline is never
overwritten), :func:`copy` (one rsync call, then a look at each copy, giving each
file's :class:`.record.Outcome`) and :func:`keep_both` for the conflicts. The agent
records the outcomes (:func:`.record.record`).

>>> conflict_name("/shots/a.exr", "tokyo", 0)
'/shots/a.conflict-tokyo-19700101T000000Z.exr'
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from . import rsync as rs
from .record import CONFLICT, COPIED, FAILED, LEFT, STALE, Outcome
from .report import Report
from .scanner import now_ms
from .site import LocalSite, Refused, Site, id_refusal
from .state import changed_here, look_matches, mtime_ms, same_mtime
from .tree import Look
from .volumes import endpoint_of

log = logging.getLogger("damas_core.sync.agent")


@dataclass(frozen=True)
class Side:
    """One side of a bucket: the site's name, its rsync endpoint and, when its files
    are on this machine, its :class:`.site.Site` (whose guard checks each path there
    and through which each copy is looked at)."""

    name: str
    endpoint: rs.Endpoint
    site: Site | None


def side_of(name: str, volume: Mapping[str, Any], storage: Site, here: str) -> Side:
    """The :class:`Side` of the site ``name``: the agent's own ``storage`` when ``name``
    is ``here``, else from its volume's url (:class:`BadRequest` for a bad one).

    >>> side_of("lyon", {"url": "file:///srv/lyon/"}, LocalSite("/srv/paris"), "paris").site.root
    '/srv/lyon/'
    """
    if name == here:
        return Side(name, storage.endpoint(), storage)
    endpoint = endpoint_of(volume)
    return Side(name, endpoint, LocalSite(endpoint.root) if endpoint.is_local else None)


def safe_paths(ids: list[str], sides: Sequence[Side], refused: dict[str, str]) -> dict[str, str]:
    """The relpaths, by id, of those of ``ids`` every side's guard accepts (a side
    whose files are not here: the id rule alone); the others go to ``refused`` with
    the reason.

    >>> refused = {}
    >>> safe_paths(["/a b", "/x/../y"], [], refused), list(refused)
    ({'/a b': 'a b'}, ['/x/../y'])
    """
    kept: dict[str, str] = {}
    for file_id in ids:
        reason = id_refusal(file_id)
        if reason is None:
            kept[file_id] = file_id[1:]
        else:
            refused[file_id] = reason
    for side in sides:
        if side.site is not None and kept:
            accepted, refused_here = side.site.files_from(list(kept))
            refused.update(refused_here)
            kept = dict(accepted)
    return kept


def split_conflicts(
    safe: Mapping[str, str], files: Mapping[str, Mapping[str, Any]], storage: Site, here: str
) -> tuple[list[tuple[str, str]], list[tuple[str, str, Look]]]:
    """The paths of a bucket received ``here``, split: ``(file id, relpath)`` to copy,
    and ``(file id, relpath, look)`` of the copies changed here since their baseline
    (:func:`.state.changed_here`), which are never overwritten (:func:`keep_both`)."""
    precision = storage.precision_ns
    normal: list[tuple[str, str]] = []
    conflicts: list[tuple[str, str, Look]] = []
    for file_id, rel in safe.items():
        local = storage.look(file_id)
        el = files[file_id]
        if (
            local is not None
            and not look_matches(local, el, precision)
            and changed_here(local[1], el, here, precision)
        ):
            conflicts.append((file_id, rel, local))
        else:
            normal.append((file_id, rel))
    return normal, conflicts


def copy(
    normal: list[tuple[str, str]],
    src: Side,
    dst: Side,
    options: Mapping[str, Any],
    files: Mapping[str, Mapping[str, Any]],
    *,
    here: str,
    report: Report,
) -> tuple[int, str, list[Outcome]]:
    """One rsync call copying ``normal`` (``(file id, relpath)``) from ``src`` to
    ``dst``, then a look at each copy; returns rsync's code and stderr and each file's
    outcome. A copy to another site than ``here`` only adds what is missing there
    (``--ignore-existing``: its agent may be down), and is checked as it is."""
    if not normal:
        return 0, "", []
    checked = list(options["extra_args"])  # the options a copy is checked with
    extra = list(checked)
    if dst.name != here:
        # a site whose agent is down only gets copies it lacks: nothing there is overwritten
        extra.append("--ignore-existing")
    rels = [r for _, r in normal]
    result = rs.transfer(src.endpoint, dst.endpoint, rels, **{**options, "extra_args": extra})
    report.rsync_calls += 1
    rc = result.returncode
    remote_diff: set[str] | None = set()
    if dst.site is None:
        # without --ignore-existing: a different copy left there is one that differs
        remote_diff = rs.differing(
            src.endpoint, dst.endpoint, rels, **{**options, "extra_args": checked}
        )
    now = now_ms()
    outcomes = []
    there = dst.site.looks(i for i, _ in normal) if dst.site is not None else {}
    for file_id, rel in normal:
        name = rel.rstrip("/")
        if dst.site is not None:
            seen = there[file_id]
        elif src.site is not None and remote_diff is not None and name not in remote_diff:
            seen = src.site.look(file_id)  # rsync found the copy there the same
        else:
            seen = None
        learned = delivered(
            seen,
            files[file_id],
            partial(src.site.look, file_id) if src.site is not None else None,
            reported=name in result.missing or name in result.vanished,
            precision=dst.site.precision_ns if dst.site is not None else 1,
        )
        if learned is not None:
            outcome = Outcome(file_id, src.name, dst.name, COPIED, now, learned)
        elif rc:
            outcome = Outcome(file_id, src.name, dst.name, FAILED, now, code=result.code_for(rel))
        elif dst.name != here:
            outcome = Outcome(file_id, src.name, dst.name, LEFT, now)
        else:
            outcome = Outcome(file_id, src.name, dst.name, STALE, now)
        outcomes.append(outcome)
    return rc, result.stderr, outcomes


def keep_both(
    file_id: str,
    local: Look,
    src: Side,
    options: Mapping[str, Any],
    storage: Site,
    *,
    here: str,
    report: Report,
) -> Outcome:
    """Fetch the incoming copy of ``file_id`` under a conflict name next to ours (with
    the same rsync options as any copy), through the site
    (:meth:`.site.Site.keep_both`); its outcome is the conflict."""
    now = now_ms()
    incoming: str | None = conflict_name(file_id, src.name, now)
    assert incoming is not None

    def fetch(staging: rs.Endpoint, rel: str) -> bool:
        report.rsync_calls += 1
        return rs.transfer(src.endpoint, staging, [rel], **options).returncode == 0

    try:
        if not storage.keep_both(file_id, incoming, fetch):
            incoming = None
    except Refused as e:
        report.refused[file_id] = str(e)
        incoming = None
    log.warning("conflict on %s at %s: both copies kept (%s)", file_id, here, incoming)
    return Outcome(file_id, src.name, here, CONFLICT, now, incoming=incoming, local=local)


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")


def conflict_name(file_id: str, site: str, ms: int) -> str:
    """The id the incoming copy of a conflicting file is kept under.

    >>> conflict_name("/shots/a.exr", "tokyo", 0)
    '/shots/a.conflict-tokyo-19700101T000000Z.exr'
    >>> conflict_name("/seq/", "tokyo", 0)
    '/seq.conflict-tokyo-19700101T000000Z/'
    """
    mark = f".conflict-{site}-{_stamp(ms)}"
    if file_id.endswith("/"):
        return file_id[:-1] + mark + "/"
    head, _, name = file_id.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension (or a dotfile)
        return f"{head}/{name}{mark}"
    return f"{head}/{stem}{mark}{dot}{ext}"


def delivered(
    copy: Look | None,
    element: Mapping[str, Any],
    source: Callable[[], Look | None] | None = None,
    *,
    reported: bool = False,
    precision: int = 1,
) -> dict[str, Any] | None:
    """What a transfer's record learns from the copy at the destination (listed at
    ``precision`` ns), or ``None`` when that copy is not the element's version: there
    is none, or its size or mtime is not the one the element records.

    An element that records its ``file_size`` and ``file_mtime`` (ms) gets nothing new
    (``{}``). One published by hand without them learns those of the copy, which must
    then be the source's (``source()`` gives its look, when it is on this machine) and
    a path rsync did not report missing or vanished (``reported``).

    >>> copy = (2, 1_567_529_676_000_123_000)
    >>> el = {"file_size": 2, "file_mtime": 1_567_529_676_000}
    >>> delivered(copy, el), delivered(None, el), delivered((3, copy[1]), el)
    ({}, None, None)
    >>> delivered(copy, {"comment": "by hand"}, lambda: copy)
    {'file_size': 2, 'file_mtime': 1567529676000}
    >>> delivered(None, {"comment": "by hand"}) is None  # no copy: nothing is claimed
    True
    """
    if copy is None:
        return None
    size, mtime = element.get("file_size"), element.get("file_mtime")
    has_size = size.__class__ is int
    has_mtime = mtime.__class__ in (int, float)
    if has_size and has_mtime:
        return {} if look_matches(copy, element, precision) else None
    if (
        reported
        or (has_size and size != copy[0])
        or (has_mtime and not same_mtime(copy[1], mtime, precision))
        or (source is not None and source() != copy)
    ):
        return None
    learned: dict[str, Any] = {}
    if not has_size:
        learned["file_size"] = copy[0]
    if not has_mtime:
        learned["file_mtime"] = mtime_ms(copy[1])
    return learned


__all__ = [
    "Side",
    "conflict_name",
    "copy",
    "delivered",
    "keep_both",
    "safe_paths",
    "side_of",
    "split_conflicts",
]
