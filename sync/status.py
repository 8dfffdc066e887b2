"""Where each file stands at each site: states, pages of files, completion, site health.

The dashboard and ``damas sync status`` both read this module, so they always agree.

States of one file at one site (:data:`STATES`):

- ``ok``: the site holds the current version;
- ``outdated``: it holds an older one (``synced_<site>`` < ``time``);
- ``error``: the last copy failed (``code``: rsync's exit code, 23 = file not found);
- ``queued``: wanted there, not there yet, nothing in the way; ``detail``
  ``transferring`` when it is in the bucket an agent is copying to that site now
  (:func:`in_flight`);
- ``waiting``: wanted there but held back (``reason``: a lock, a different copy there,
  no site holding the current version), as the site's agent recorded in ``syncWait_<site>``;
- ``conflict``: both copies were kept (``conflict_<site>``), waiting for a decision;
- ``unwanted``: not wanted there; ``present`` says a copy is there anyway.

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> _ = t.create([{"_id": "v1", "name": "paris", "url": "file:///p/"},
...               {"_id": "v2", "name": "tokyo", "url": "file:///t/"}])
>>> _ = t.publish({"_id": "/a", "origin": "paris", "comment": "c", "file_size": 3,
...                "sync_tokyo": True})
>>> p = page(t, Filters())
>>> [(r["_id"], r["states"]["paris"]["state"], r["states"]["tokyo"]["state"]) for r in p["files"]]
[('/a', 'ok', 'queued')]
>>> human_size(1536)
'1.5 KiB'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import re2

from damas_core.errors import BadRequest
from damas_core.query.ast import And, Cmp, Node, Regex
from damas_core.query.parser import parse
from damas_core.query.predicate import to_predicate

from . import transferring
from .eta import duration, etas
from .planner import wanted
from .state import holds_current, site_keys, writer_of
from .volumes import (
    FILES_QUERY,
    GLOBAL_ID,
    VOLUMES_QUERY,
    global_parameters,
    read_many,
    volumes,
)

STATES = ("ok", "outdated", "error", "queued", "waiting", "conflict", "unwanted")
#: what an agent's ``agentStatus`` shows as, when its heartbeat is fresh
AGENT_STATES = ("on", "idle", "stopped", "unmounted", "down")
SORTS = ("_id", "-_id", "time", "-time", "file_size", "-file_size")
MAX_LIMIT = 1000
_BUSY = ("starting", "scanning", "receiving", "emitting")
_FILES_NODE = parse(FILES_QUERY)
_BATCH = 500
_NOTHING_IN_FLIGHT: Mapping[str, Container[str]] = MappingProxyType({})


def state_of(
    element: Mapping[str, Any],
    site: str,
    params: Mapping[str, Any],
    writer: str | None = None,
    *,
    moving: bool = False,
) -> dict[str, Any]:
    """The state of one file at one site: ``{"state": ..., "code"|"reason"|"present"|"detail"?:
    ...}`` (``writer``: the element's :func:`.writer_of`, when the caller has it already;
    ``moving``: the file is in a bucket running to ``site``, :func:`in_flight`, so a
    queued file is ``{"state": "queued", "detail": "transferring"}``).

    >>> state_of({"_id": "/a", "origin": "p", "time": 5}, "p", {})
    {'state': 'ok'}
    >>> state_of({"_id": "/a", "origin": "p", "time": 5, "syncWait_t": "locked by bo"}, "t",
    ...          {"syncEverywhere": True})
    {'state': 'waiting', 'reason': 'locked by bo'}
    >>> state_of({"_id": "/a", "origin": "p", "time": 5}, "t", {"syncEverywhere": True},
    ...          moving=True)
    {'state': 'queued', 'detail': 'transferring'}
    """
    keys = site_keys(site)
    writer = writer or writer_of(element)
    conflict = element.get(keys.conflict)
    if conflict:
        out: dict[str, Any] = {"state": "conflict"}
        if isinstance(conflict, dict) and isinstance(conflict.get("incoming"), str):
            out["incoming"] = conflict["incoming"]
        return out
    if not wanted(element, site, params, writer):
        out = {"state": "unwanted"}
        if not element.get("deleted") and (element.get(keys.synced) is not None or writer == site):
            out["present"] = True
        return out
    if holds_current(element, site, writer):
        return {"state": "ok"}
    if element.get(keys.error) is not None:
        return {"state": "error", "code": element[keys.error]}
    reason = element.get(keys.wait)
    if reason:
        return {"state": "waiting", "reason": str(reason)}
    if element.get(keys.synced) is not None:
        return {"state": "outdated"}
    if moving:
        return {"state": "queued", "detail": "transferring"}
    return {"state": "queued"}


def row_of(
    element: Mapping[str, Any],
    sites: Iterable[str],
    params: Mapping[str, Any],
    moving: Mapping[str, Container[str]] = _NOTHING_IN_FLIGHT,
) -> dict[str, Any]:
    """One file's row: ``_id``, ``file_size``, ``time``, ``lock``, ``deleted`` and
    ``states`` (site → :func:`state_of`); ``moving``: :func:`in_flight`."""
    writer = writer_of(element)
    file_id = element["_id"]
    states = {s: state_of(element, s, params, writer) for s in sites}
    for s, ids in moving.items():  # usually none: a site holding one is computed again
        if s in states and file_id in ids:
            states[s] = state_of(element, s, params, writer, moving=True)
    return {
        "_id": file_id,
        "file_size": element.get("file_size"),
        "time": element.get("time"),
        "lock": element.get("lock"),
        "deleted": bool(element.get("deleted")),
        "states": states,
    }


def in_flight(
    vols: Iterable[Mapping[str, Any]], params: Mapping[str, Any], now_ms: int | None = None
) -> dict[str, frozenset[str]]:
    """Site → the ids of the files in a transfer bucket running to it, as the volumes
    record them (:mod:`.transferring`). Only an agent that is on counts
    (:func:`agent_state`): one stopped, idle, or without a heartbeat for
    ``agentTimeout`` seconds runs no bucket, whatever its volume still says.

    >>> vol = {"agentStatus": "receiving", "lastConnection": 10**9,
    ...        "transferring": {"site": "tokyo", "since": 10**9, "count": 1, "ids": ["/a"]}}
    >>> in_flight([vol], {"agentTimeout": 300}, 10**9 + 1000)
    {'tokyo': frozenset({'/a'})}
    >>> in_flight([vol], {"agentTimeout": 300}, 10**9 + 301_000)  # its heartbeat is stale
    {}
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return transferring.in_flight(v for v in vols if agent_state(v, params, now) == "on")


# -- filters and pages --------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What a page of files shows.

    ``query`` is in the search language (``*``: every file); ``prefix`` keeps the files
    under a folder (``/shots/``); ``states`` keeps files in one of those states at one of
    the shown sites; ``sites`` limits the columns (empty: every site); ``skip`` counts
    files of the filtered stream before the page, ``limit`` the rows of a page.
    ``after`` is the id a view in ``_id`` order without a state filter goes on after,
    as :func:`page` gives it in ``next``: such a page costs the same at any depth.
    """

    query: str = "*"
    prefix: str = ""
    states: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    sort: str = "_id"
    skip: int = 0
    limit: int = 100
    after: str = ""

    @property
    def by_id(self) -> bool:
        """True for a view in ``_id`` order without a state filter: it pages by ``after``."""
        return self.sort == "_id" and not self.states

    def __post_init__(self) -> None:
        for s in self.states:
            if s not in STATES:
                raise BadRequest(
                    f"status error: unknown state {s!r}; use one of {', '.join(STATES)}",
                    key="state",
                )
        if self.sort not in SORTS:
            raise BadRequest(
                f"status error: sort by one of {', '.join(SORTS)}, not {self.sort!r}", key="sort"
            )
        if self.prefix and not self.prefix.startswith("/"):
            raise BadRequest(
                f"status error: a folder prefix starts with '/', not {self.prefix!r}", key="prefix"
            )
        if not isinstance(self.after, str):
            raise BadRequest("status error: after is a file's id", key="after")
        if self.after and not self.by_id:
            raise BadRequest(
                "status error: after goes with the sort _id and no state filter; use skip",
                key="after",
            )
        for name, value, top in (("skip", self.skip, None), ("limit", self.limit, MAX_LIMIT)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise BadRequest(f"status error: {name} must be a whole number >= 0", key=name)
            if top is not None and not 0 < value <= top:
                raise BadRequest(f"status error: {name} must be between 1 and {top}", key=name)


def files_node(query: str = "*", prefix: str = "", after: str = "") -> Node:
    """The query of the tracked files matching ``query`` under ``prefix`` (and with an
    id after ``after``, when given).

    A parse error of ``query`` is :class:`BadRequest` with its ``position`` in ``query``.
    """
    parts: list[Node] = [_FILES_NODE, parse(query.strip() or "*")]
    if prefix:
        parts.append(Regex(("_id",), "^" + re2.escape(prefix), ""))
    if after:
        parts.append(Cmp(("_id",), ">", after))
    return And(tuple(parts))


def page(
    tracker: Any,
    filters: Filters,
    sites: SitesCache | None = None,
    counts: Any = None,
    make_row: Callable[..., dict[str, Any]] = row_of,
) -> dict[str, Any]:
    """A page of files with their states.

    ``{"sites": every site, "shown": the sites shown, "volumes": the volume elements,
    "files": rows (:func:`row_of`), "skip", "limit", "next"}``; ``next`` is
    ``{"after": id}`` or ``{"skip": n}`` (the :class:`Filters` field that gives the next
    page), or ``None`` on the last page.

    The cost: a page is one search of ``limit + 1`` elements. In ``_id`` order, a store
    such as LMDB reads only the page's (with ``prefix``, from the folder's first key;
    with ``after``, from the key after it); other queries may read the whole store; a
    state filter reads the filtered stream in batches until the page is full.

    ``sites`` (a :class:`SitesCache`) saves reading the volumes again. ``counts`` (a
    :class:`~damas_core.sync.completion.CompletionCache` following the same ``sites``)
    answers a state filter on the query ``*`` in ``_id`` order from the states it keeps,
    reading only the page's files. ``make_row`` makes each row, as :func:`row_of` does
    (a :class:`~damas_core.sync.row_cache.RowCache` keeps them between pages).
    """
    vols, params = (
        sites.get() if sites is not None else (volumes(tracker), global_parameters(tracker))
    )
    names = [v["name"] for v in vols]
    shown = [s for s in names if s in filters.sites] if filters.sites else names
    moving = in_flight(vols, params)
    columns = tuple(shown)

    def row(element: Mapping[str, Any]) -> dict[str, Any]:
        return make_row(element, columns, params, moving)

    rows: list[dict[str, Any]] = []
    after: dict[str, Any] | None = None
    if filters.by_id:
        node = files_node(filters.query, filters.prefix, filters.after)
        found = tracker.search_elements(node, "_id", filters.skip, filters.limit + 1)
        rows = [row(e) for e in found[: filters.limit]]
        if len(found) > filters.limit:
            after = {"after": found[filters.limit - 1]["_id"]}
    elif (
        filters.states
        and counts is not None
        and filters.sort == "_id"
        and filters.query.strip() in ("", "*")
    ):
        ids, at = counts.in_states(
            filters.prefix or "/", filters.states, shown, filters.skip, filters.limit
        )
        found = read_many(tracker, ids)
        keep = set(filters.states)
        for i in ids:
            if _is_file(found.get(i)):
                made = row(found[i])
                if any(st["state"] in keep for st in made["states"].values()):
                    rows.append(made)  # (unless it changed since the counts were brought up)
        after = None if at is None else {"skip": at}
    elif not filters.states:  # another sort
        node = files_node(filters.query, filters.prefix)
        found = tracker.search_elements(node, filters.sort, filters.skip, filters.limit + 1)
        rows = [row(e) for e in found[: filters.limit]]
        if len(found) > filters.limit:
            after = {"skip": filters.skip + filters.limit}
    else:
        node = files_node(filters.query, filters.prefix)
        wanted_states = set(filters.states)
        at = filters.skip
        while after is None:
            batch = tracker.search_elements(node, filters.sort, at, _BATCH)
            for i, e in enumerate(batch):
                made = row(e)
                if any(st["state"] in wanted_states for st in made["states"].values()):
                    if len(rows) == filters.limit:
                        after = {"skip": at + i}
                        break
                    rows.append(made)
            if len(batch) < _BATCH:
                break
            at += len(batch)
    return {
        "sites": names,
        "shown": shown,
        "volumes": vols,
        "files": rows,
        "skip": filters.skip,
        "limit": filters.limit,
        "next": after,
    }


def _is_file(element: Mapping[str, Any] | None) -> bool:
    # FILES_QUERY, spelled out: a path with an origin, not a history child
    return (
        element is not None
        and element["_id"].startswith("/")
        and "origin" in element
        and "#parent" not in element
    )


def rows_for(tracker: Any, ids: Iterable[str], sites: SitesCache | None = None) -> dict[str, Any]:
    """``{id: row}`` for those of ``ids`` that are tracked files (a live update's cells)."""
    vols, params = (
        sites.get() if sites is not None else (volumes(tracker), global_parameters(tracker))
    )
    names = [v["name"] for v in vols]
    moving = in_flight(vols, params)
    return {
        i: row_of(e, names, params, moving)
        for i, e in read_many(tracker, ids).items()
        if i.startswith("/") and "origin" in e and "#parent" not in e
    }


# -- the sites, kept current through the change feed --------------------------------------


class SitesCache:
    """The volumes and the global parameters of a tracker, read again only when the
    change feed shows a write to one of them or to an element that became one.

    Finding the volumes is a search of the whole store; a page of files is a search
    too, so without this a page would cost two (measured: 7.6 s instead of 4.5 s for
    the first page of a 1M-file LMDB store). Checking the feed costs one read per
    change since the last page. ``rsync_env`` is left out: no page shows it.

    >>> import damas_core
    >>> t = damas_core.open("memory://")
    >>> cache = SitesCache(t)
    >>> cache.get()[0]
    []
    >>> _ = t.create({"_id": "v1", "name": "paris", "url": "file:///p/"})
    >>> [v["name"] for v in cache.get()[0]]
    ['paris']
    """

    def __init__(self, tracker: Any, *, batch: int = 1000, rounds: int = 20) -> None:
        self.tracker = tracker
        self.batch = batch
        self.rounds = rounds
        self._lock = threading.Lock()
        self._seq: int | None = None
        self._sites: tuple[list[dict[str, Any]], dict[str, Any]] = ([], {})

    def get(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """``(volumes, global parameters)``, as :func:`.volumes` and
        :func:`.global_parameters` give them now."""
        with self._lock:
            if self._seq is None or self._stale():
                self._seq = self.tracker.storage.last_seq()  # before reading: nothing missed
                vols = [
                    {k: v for k, v in e.items() if k != "rsync_env"} for e in volumes(self.tracker)
                ]
                self._sites = (vols, global_parameters(self.tracker))
            return self._sites

    def _stale(self) -> bool:
        """True when a volume or the global parameters may have changed since the last
        read; otherwise the position moves on. The feed is read in pages of ``batch``,
        at most ``rounds`` of them: past that, reading the volumes again is cheaper."""
        assert self._seq is not None
        seq = self._seq
        if self.tracker.storage.last_seq() == seq:
            return False  # nothing written since: no change to read
        known = {v["_id"] for v in self._sites[0]} | {GLOBAL_ID}
        for _ in range(self.rounds):
            got = self.tracker.changes(seq, self.batch)
            if got.get("reset"):
                return True
            others = []
            for c in got["changes"]:
                if c["_id"] in known:
                    return True
                if not c["_id"].startswith("/") and not c["deleted"]:
                    others.append(c["_id"])
            # an element that is not a file may have become a volume
            if others and any(e is not None and _is_volume(e) for e in self.tracker.read(others)):
                return True
            seq = got["last_seq"]
            if len(got["changes"]) < self.batch:
                self._seq = seq
                return False
        return True


_is_volume = to_predicate(parse(VOLUMES_QUERY))


# -- completion and folders ---------------------------------------------------------------


def _empty_counts() -> dict[str, Any]:
    return {"files_ok": 0, "files_wanted": 0, "bytes_ok": 0, "bytes_wanted": 0,
            "states": dict.fromkeys(STATES, 0), "state_bytes": dict.fromkeys(STATES, 0)}  # fmt: skip


def count_into(counts: dict[str, Any], row: Mapping[str, Any], site: str) -> None:
    """Add one row's state at ``site`` to ``counts`` (see :func:`completion`)."""
    st = row["states"][site]["state"]
    size = row["file_size"] if isinstance(row["file_size"], int) else 0
    counts["states"][st] += 1
    counts["state_bytes"][st] += size
    if st == "unwanted":
        return
    counts["files_wanted"] += 1
    counts["bytes_wanted"] += size
    if st == "ok":
        counts["files_ok"] += 1
        counts["bytes_ok"] += size


def completion(rows: Iterable[Mapping[str, Any]], sites: Iterable[str]) -> dict[str, Any]:
    """Per site: ``files_ok``/``files_wanted``, ``bytes_ok``/``bytes_wanted``, the
    number of files in each state (``states``) and their bytes (``state_bytes``).
    Deleted files count nowhere."""
    names = list(sites)
    out = {s: _empty_counts() for s in names}
    for row in rows:
        if row.get("deleted"):
            continue
        for s in names:
            count_into(out[s], row, s)
    return out


def percent(done: int, total: int) -> float:
    """``done`` of ``total`` in percent; 100 when nothing is wanted.

    >>> percent(1, 3), percent(0, 0)
    (33.3, 100.0)
    """
    return round(100 * done / total, 1) if total else 100.0


def folder_prefix(prefix: str) -> str:
    """A folder as :func:`folders` takes it: starting with ``/``, ending with one.

    >>> folder_prefix("/shots")
    '/shots/'
    """
    if not prefix.startswith("/"):
        raise BadRequest(f"status error: a folder starts with '/', not {prefix!r}", key="prefix")
    return prefix if prefix.endswith("/") else prefix + "/"


def folders(
    tracker: Any, prefix: str = "/", query: str = "*", sites: SitesCache | None = None
) -> dict[str, Any]:
    """The folders and files directly under ``prefix``, each folder with its completion.

    ``{"prefix", "sites", "folders": [{"path", "files", "bytes", "completion"}],
    "files": number of files directly in ``prefix``}``. It reads every file under
    ``prefix`` once (``sites``: a :class:`SitesCache`, as for :func:`page`).
    """
    prefix = folder_prefix(prefix)
    vols, params = (
        sites.get() if sites is not None else (volumes(tracker), global_parameters(tracker))
    )
    names = [v["name"] for v in vols]
    found: dict[str, dict[str, Any]] = {}
    direct = 0
    for e in tracker.search_elements(files_node(query, prefix)):
        rest = e["_id"][len(prefix) :]
        head, slash, tail = rest.partition("/")
        if not slash or not tail:  # a file here, or a folder package (its id ends with /)
            direct += 1
            continue
        path = prefix + head + "/"
        entry = found.setdefault(
            path,
            {
                "path": path,
                "files": 0,
                "bytes": 0,
                "completion": {s: _empty_counts() for s in names},
            },
        )
        if e.get("deleted"):
            continue
        row = row_of(e, names, params)
        entry["files"] += 1
        entry["bytes"] += e["file_size"] if isinstance(e.get("file_size"), int) else 0
        for s in names:
            count_into(entry["completion"][s], row, s)
    return {
        "prefix": prefix,
        "sites": names,
        "folders": [found[k] for k in sorted(found)],
        "files": direct,
    }


# -- sites --------------------------------------------------------------------------------


def agent_state(
    volume: Mapping[str, Any], params: Mapping[str, Any], now_ms: int | None = None
) -> str:
    """One of :data:`AGENT_STATES`: ``on`` (working), ``idle``, ``stopped``, ``unmounted``,
    or ``down`` (no agent, an error, or no heartbeat within ``agentTimeout`` seconds).

    >>> agent_state({"agentStatus": "stopped"}, {})
    'stopped'
    >>> agent_state({"agentStatus": "idle", "lastConnection": 0}, {"agentTimeout": 300}, 10**9)
    'down'
    """
    status = volume.get("agentStatus")
    if status == "stopped":
        return "stopped"
    now = int(time.time() * 1000) if now_ms is None else now_ms
    timeout = float(params.get("agentTimeout", 300)) * 1000
    last = volume.get("lastConnection")
    fresh = isinstance(last, int | float) and now - last <= timeout
    if not fresh or status not in (*_BUSY, "idle", "unmounted"):
        return "down"
    if status == "unmounted":
        return "unmounted"
    return "idle" if status == "idle" else "on"


#: the volume keys a site's health shows, as the agent records them
HEALTH_KEYS = (
    "agentStatus", "lastConnection", "lastConnectionHost", "agentVersion",
    "last_scan", "scan_duration", "exit_scan", "stderr_scan",
    "last_reception", "reception_duration", "exit_reception", "stderr_reception",
    "last_emission", "emission_duration", "exit_emission", "stderr_emission",
    "enableScans", "enableReception", "enableEmission", "syncAmountReception",
    "syncAmountEmission",
    # a storage driven by a hub: its hub, connection, what it allows; every volume's
    # capacity and transfer rates
    "hub", "connectionStatus", "lastConnectionAttempt", "lastConnectionSuccess",
    "lastConnectionStatusChange", "error", "stderr_connection", "storageKind",
    "featuresOff", "bytesTotal", "bytesUsed", "bytesRemaining",
    "rate_reception", "rate_emission", "bytes_reception_total", "bytes_emission_total",
)  # fmt: skip


def site_health(
    volume: Mapping[str, Any], params: Mapping[str, Any], now_ms: int | None = None
) -> dict[str, Any]:
    """A volume's health: ``_id``, ``name``, ``state`` (:func:`agent_state`) and the
    :data:`HEALTH_KEYS` it has."""
    out = {
        "_id": volume["_id"],
        "name": volume.get("name"),
        "state": agent_state(volume, params, now_ms),
    }
    out.update({k: volume[k] for k in HEALTH_KEYS if k in volume})
    return out


def sites(tracker: Any) -> list[dict[str, Any]]:
    """:func:`site_health` of every volume, by name."""
    params = global_parameters(tracker)
    return [site_health(v, params) for v in volumes(tracker)]


# -- the whole matrix (the command line) --------------------------------------------------


def status(
    tracker: Any,
    ids: Iterable[str] | None = None,
    *,
    prefix: str = "",
    states: Iterable[str] = (),
    sites: Iterable[str] = (),
    query: str = "*",
) -> dict[str, Any]:
    """The whole status as JSON-ready data: every matching file, completion, sites.

    ``{"sites": shown site names, "files": rows (:func:`row_of`), "completion": per site
    (over the files matching ``ids``/``prefix``/``query``, whatever ``states``), "eta":
    per site, what it lacks, its rate and its ETA (:func:`.eta.etas`),
    "volumes": :func:`site_health` of the shown sites}``. ``ids`` limits it to those files
    (unknown ids are left out); ``states`` keeps rows in one of them at a shown site.
    """
    filters = Filters(query=query, prefix=prefix, states=tuple(states), sites=tuple(sites))
    vols = volumes(tracker)
    params = global_parameters(tracker)
    unknown = [s for s in filters.sites if s not in {v["name"] for v in vols}]
    if unknown:
        raise BadRequest(f"status error: no site named {unknown[0]!r}", key="site")
    shown_vols = [v for v in vols if not filters.sites or v["name"] in filters.sites]
    names = [v["name"] for v in shown_vols]
    if ids is None:
        elements = tracker.search_elements(files_node(query, prefix))
    else:
        found = read_many(tracker, [i for i in ids if i.startswith(prefix)])
        elements = [e for _, e in sorted(found.items()) if "origin" in e and "#parent" not in e]
    moving = in_flight(vols, params)
    rows = [row_of(e, names, params, moving) for e in elements]
    done = completion(rows, names)
    if filters.states:
        keep = set(filters.states)
        rows = [r for r in rows if any(st["state"] in keep for st in r["states"].values())]
    return {
        "sites": names,
        "files": rows,
        "completion": done,
        "eta": etas(done, vols),
        "volumes": [site_health(v, params) for v in shown_vols],
    }


# -- text ---------------------------------------------------------------------------------


def human_size(n: Any) -> str:
    """A byte count for people (binary units); ``"—"`` when unknown.

    >>> human_size(0), human_size(1023), human_size(5 * 1024**3)
    ('0 B', '1023 B', '5.0 GiB')
    """
    if isinstance(n, bool) or not isinstance(n, int | float):
        return "—"
    if abs(n) < 1024:
        return f"{int(n)} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if abs(round(size, 1)) < 1024:  # 1024² - 1 bytes is 1.0 MiB, not 1024.0 KiB
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} PiB"


def describe(st: Mapping[str, Any]) -> str:
    """A state in words: ``error (23)``, ``waiting: locked by bo``, ``unwanted (a copy is
    there)``, ``transferring`` (its ``detail``, for a queued file being copied).

    >>> describe({"state": "error", "code": 23})
    'error (23)'
    >>> describe({"state": "queued", "detail": "transferring"})
    'transferring'
    """
    text = str(st.get("detail") or st["state"])
    if "code" in st:
        text += f" ({st['code']})"
    if st.get("reason"):
        text += f": {st['reason']}"
    if st.get("present"):
        text += " (a copy is there)"
    return text


_COLORS = {
    "ok": "green", "outdated": "yellow", "error": "red", "queued": "blue",
    "waiting": "magenta", "conflict": "bright_red", "unwanted": "grey50",
}  # fmt: skip
#: the icon of each file state, state detail and agent state: a state never shows as a
#: colour alone (the dashboard and the command line show the same)
ICONS = {
    "ok": "✔", "outdated": "◐", "error": "✖", "queued": "↻", "waiting": "⏸",
    "conflict": "⚠", "unwanted": "–", "transferring": "⇄", "on": "▶", "idle": "●",
    "stopped": "■", "unmounted": "⏏", "down": "✖",
}  # fmt: skip


def icon_of(st: Mapping[str, Any]) -> str:
    """The icon of a state (:func:`state_of`): its ``detail``'s when it has one.

    >>> icon_of({"state": "queued"}), icon_of({"state": "queued", "detail": "transferring"})
    ('↻', '⇄')
    """
    return ICONS[st.get("detail") or st["state"]]


def _when(ms: Any) -> str:
    if not isinstance(ms, int | float) or isinstance(ms, bool):
        return "—"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


def render(data: dict[str, Any], *, limit: int | None = None) -> Any:
    """A rich renderable of :func:`status` data: the files (at most ``limit`` rows), the
    completion per site and the sites panel. Every user string is shown as text, never
    read as rich markup."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    table = Table(title="files x sites")
    table.add_column("file", overflow="fold")
    table.add_column("size", justify="right")
    table.add_column("lock")
    for s in data["sites"]:
        table.add_column(Text(s))
    rows = data["files"] if limit is None else data["files"][:limit]
    for row in rows:
        name = Text(row["_id"])
        if row.get("deleted"):
            name.append(" (deleted)", style="dim")
        cells = [
            Text(f"{icon_of(st)} {describe(st)}", style=_COLORS[st["state"]])
            for st in (row["states"][s] for s in data["sites"])
        ]
        table.add_row(
            name, human_size(row.get("file_size")), Text(str(row.get("lock") or "")), *cells
        )
    parts.append(table)
    if limit is not None and len(data["files"]) > limit:
        parts.append(
            Text(
                f"… {len(data['files']) - limit} more files (narrow with --prefix, --state, --site)"
            )
        )
    done = Table(title="completion")
    for col in ("site", "files", "bytes", "errors", "waiting", "to copy", "rate", "ETA"):
        done.add_column(col)
    for s, c in data["completion"].items():
        left = data.get("eta", {}).get(s) or {}
        rate = left.get("rate")
        done.add_row(
            Text(s),
            f"{c['files_ok']}/{c['files_wanted']} ({percent(c['files_ok'], c['files_wanted']):.0f}%)",
            f"{human_size(c['bytes_ok'])}/{human_size(c['bytes_wanted'])} "
            f"({percent(c['bytes_ok'], c['bytes_wanted']):.0f}%)",
            str(c["states"]["error"]),
            str(c["states"]["waiting"]),
            f"{left.get('files', 0)} files, {human_size(left.get('bytes', 0))}",
            "—" if rate is None else f"{human_size(rate)}/s",
            duration(left.get("eta_seconds")),
        )
    parts.append(done)
    panel = Table(title="sites")
    for col in ("site", "agent", "connection", "capacity", "last scan", "reception"):
        panel.add_column(col, overflow="fold")
    for col in ("emission", "stderr"):
        panel.add_column(col, overflow="fold")
    for v in data.get("volumes", []):
        stderr = " ".join(
            str(v.get(k) or "")
            for k in ("stderr_connection", "stderr_scan", "stderr_reception", "stderr_emission")
        ).strip()
        # a storage driven by a hub: the hub runs its agent and records its connection
        agent = f"{v['state']} (hub {v['hub']})" if v.get("hub") else str(v["state"])
        connection = "—"
        if v.get("hub"):
            connection = (
                f"{v.get('connectionStatus') or 'not tried'}, last ok "
                f"{_when(v.get('lastConnectionSuccess'))}"
            )
        capacity = "—"
        if isinstance(v.get("bytesTotal"), int) and v["bytesTotal"]:
            used = v.get("bytesUsed") or 0
            capacity = (
                f"{human_size(used)}/{human_size(v['bytesTotal'])} "
                f"({percent(used, v['bytesTotal']):.0f}%)"
            )
        panel.add_row(
            Text(str(v["name"])),
            Text(agent),
            Text(connection),
            Text(capacity),
            _when(v.get("last_scan")),
            # the exit codes are volume keys: text, whatever they hold
            Text(f"{_when(v.get('last_reception'))} exit {v.get('exit_reception', '—')}"),
            Text(f"{_when(v.get('last_emission'))} exit {v.get('exit_emission', '—')}"),
            Text(stderr[:300]),
        )
    parts.append(panel)
    return Group(*parts)


__all__ = [
    "AGENT_STATES",
    "HEALTH_KEYS",
    "ICONS",
    "MAX_LIMIT",
    "SORTS",
    "STATES",
    "Filters",
    "SitesCache",
    "agent_state",
    "completion",
    "count_into",
    "describe",
    "files_node",
    "folder_prefix",
    "folders",
    "human_size",
    "icon_of",
    "in_flight",
    "page",
    "percent",
    "render",
    "row_of",
    "rows_for",
    "site_health",
    "sites",
    "state_of",
    "status",
]
