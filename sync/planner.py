"""What a site's agent transfers next: a pure function of the file elements.

:func:`plan` takes the tracked files, the volumes and the global parameters and
returns the receptions (files this site should hold and lacks or holds outdated,
with the site to copy them from) and the emissions (files this site wrote, pushed
to sites whose agents are not running). Nothing is read or written here, so the
order and the filtering are easy to test.

Order: fresh files by ``sync_priority`` (highest first), then files that failed
before, once their back-off (``retryDelay`` doubled per failure in a row, at most
``retryMaxDelay``, counted from ``syncLastAttempt_<site>``) has passed; at most
``syncAmountReception`` receptions and ``syncAmountEmission`` emissions per cycle.

>>> files = {"/a": {"_id": "/a", "origin": "paris", "time": 5, "sync_tokyo": True}}
>>> vols = [{"name": "paris", "url": "file:///p/"}, {"name": "tokyo", "url": "file:///t/"}]
>>> [(t.file_id, t.source) for t in plan(files, "tokyo", vols, {}).receptions]
[('/a', 'paris')]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .state import site_keys, writer_of
from .volumes import DEFAULTS

Element = Mapping[str, Any]


@dataclass(frozen=True)
class Task:
    """One file to copy from ``source`` to ``target`` (site names)."""

    file_id: str
    source: str
    target: str
    priority: int = 0
    retry: bool = False  # it failed before


@dataclass
class Plan:
    """A cycle's work: receptions, emissions, and files that wait (with the reason)."""

    receptions: list[Task] = field(default_factory=list)
    emissions: list[Task] = field(default_factory=list)
    waiting: dict[tuple[str, str], str] = field(default_factory=dict)  # (id, site) -> reason

    def buckets(self, tasks: Iterable[Task]) -> list[list[Task]]:
        """Tasks grouped into rsync calls: one per (source, target, priority), in plan order."""
        groups: dict[tuple[str, str, int], list[Task]] = {}
        for t in tasks:
            groups.setdefault((t.source, t.target, t.priority), []).append(t)
        return list(groups.values())


def wanted(
    element: Element, site: str, params: Mapping[str, Any], writer: str | None = None
) -> bool:
    """True when ``site`` should hold the file (``writer``: the element's
    :func:`.writer_of`, when the caller has it already).

    ``sync_<site>`` (true/false) decides first, then the file's ``syncEverywhere``,
    then the global one; the file's origin always keeps its own file, and a file
    deleted at its origin is wanted nowhere.

    >>> wanted({"_id": "/a", "origin": "p", "sync_t": False}, "t", {"syncEverywhere": True})
    False
    >>> wanted({"_id": "/a", "origin": "p"}, "t", {"syncEverywhere": True})
    True
    """
    if element.get("deleted"):
        return False
    explicit = element.get(site_keys(site).wanted)
    if isinstance(explicit, bool):
        return explicit
    if element.get("origin") == site or (writer or writer_of(element)) == site:
        return True
    everywhere = element.get("syncEverywhere")
    if isinstance(everywhere, bool):
        return everywhere
    return bool(params.get("syncEverywhere", DEFAULTS["syncEverywhere"]))


def holders(element: Element, sites: Iterable[str], writer: str | None = None) -> list[str]:
    """Sites holding the current version, the writer first (``writer``: the element's
    :func:`.writer_of`, when the caller has it already).

    >>> holders({"origin": "p", "time": 5, "synced_t": 5, "synced_x": 1}, ["p", "t", "x"])
    ['p', 't']
    """
    return _holders(
        element, [(s, site_keys(s).synced) for s in sites], writer or writer_of(element)
    )


def _holders(element: Element, synced_keys: list[tuple[str, str]], writer: str | None) -> list[str]:
    # holders() with each site's synced_<site> key spelled once per plan, not per file
    out = [writer] if writer else []
    t = element.get("time") or 0
    for s, key in synced_keys:
        synced = element.get(key)
        if s != writer and isinstance(synced, int | float) and synced >= t:
            out.append(s)
    return out


def backoff_ms(failures: int, params: Mapping[str, Any]) -> int:
    """Milliseconds to wait after ``failures`` failed attempts in a row.

    >>> backoff_ms(1, {"retryDelay": 30, "retryMaxDelay": 3600}), backoff_ms(3, {"retryDelay": 30})
    (30000, 120000)
    """
    base = float(params.get("retryDelay", DEFAULTS["retryDelay"]))
    top = float(params.get("retryMaxDelay", DEFAULTS["retryMaxDelay"]))
    return int(min(base * 2 ** max(failures - 1, 0), top) * 1000)


def retry_state(element: Element, site: str, params: Mapping[str, Any], now: int) -> bool | None:
    """None: never failed; False: failed, back-off running; True: failed, may retry."""
    keys = site_keys(site)
    if element.get(keys.error) is None:
        return None
    last = element.get(keys.attempt) or 0
    failures = element.get(keys.failures) or 1
    return now - last >= backoff_ms(failures, params)


def ordered(tasks: list[Task], limit: int) -> list[Task]:
    """The first ``limit`` of ``tasks``: those never failed first, then by priority
    (highest first) and id."""
    tasks.sort(key=lambda t: (t.retry, -t.priority, t.file_id))
    return tasks[:limit]


def may_have_work(
    element: Element, site: str, names: Iterable[str], settings: Mapping[str, Any]
) -> bool:
    """True when :func:`plan` may give ``element`` work at ``site``: a reception (the
    site lacks the current version and wants it), an emission (the site wrote it and a
    site of ``names`` lacks it and wants it), or a wait reason to record or clear.
    ``settings`` as :func:`plan` merges them. Whether the other agents run, locks and
    batch sizes are left to the plan: this is a superset of the files it gives work,
    so an agent plans only over these, kept up to date as elements change.

    >>> el = {"_id": "/a", "origin": "paris", "time": 5, "synced_tokyo": 5}
    >>> may_have_work(el, "tokyo", ["paris", "tokyo"], {}), may_have_work(el, "lyon", ["paris", "lyon"], {"syncEverywhere": True})
    (False, True)
    """
    keys = site_keys(site)
    if keys.wait in element:
        return True
    if element.get("deleted"):
        return False
    writer = writer_of(element)
    synced = element.get(keys.synced)
    t = element.get("time") or 0
    held = writer == site or (isinstance(synced, int | float) and synced >= t)
    if not held:
        return wanted(element, site, settings, writer)
    if writer != site:
        return False
    for target in names:
        if target == site:
            continue
        got = element.get(site_keys(target).synced)
        if not (isinstance(got, int | float) and got >= t) and wanted(element, target, settings):
            return True
    return False


def plan(
    files: Mapping[str, Element],
    site: str,
    volumes: Iterable[Element],
    params: Mapping[str, Any],
    *,
    now: int = 0,
    alive: Iterable[str] | None = None,
    lock_sites: Mapping[str, str | None] | None = None,
    exists: Callable[[str], bool] | None = None,
    volume: Element | None = None,
) -> Plan:
    """The receptions and emissions of ``site`` for this cycle.

    ``alive``: sites whose agents run (emission only targets the others; ``None``
    means all alive, so no emission). ``lock_sites``: lock holder -> the site where
    they work (``None``: unknown, the lock then holds every site). ``exists(id)``:
    whether this site has a copy (a lock only prevents overwriting a copy).
    ``volume`` (this site's volume) overrides the batch sizes of ``params``.
    """
    vols = {v["name"]: v for v in volumes if v.get("name")}
    names = list(vols)
    settings = {**DEFAULTS, **params, **{k: v for k, v in (volume or {}).items() if k in DEFAULTS}}
    alive_set = set(names) if alive is None else set(alive)
    lock_sites = lock_sites or {}
    result = Plan()
    receive: list[Task] = []
    emit: list[Task] = []
    reception_on = (volume or {}).get("enableReception", True)
    emission_on = (volume or {}).get("enableEmission", True)

    synced_key, conflict_key = site_keys(site).synced, site_keys(site).conflict
    synced_keys = [(s, site_keys(s).synced) for s in names]
    for file_id, el in files.items():
        if not file_id.startswith("/") or el.get("deleted"):
            continue
        writer = writer_of(el)
        synced = el.get(synced_key)
        # holds_current, for an element not deleted
        held = writer == site or (
            isinstance(synced, int | float) and synced >= (el.get("time") or 0)
        )
        receives = reception_on and not held and wanted(el, site, settings, writer)
        emits = emission_on and writer == site and not el.get(conflict_key)
        if not (receives or emits):
            continue  # the usual case: held here, written elsewhere
        priority = el.get("sync_priority")
        priority = priority if isinstance(priority, int) and not isinstance(priority, bool) else 0
        have = _holders(el, synced_keys, writer)
        # reception: this site lacks the current version
        if receives:
            sources = [s for s in have if s != site and s in vols]
            reason = None
            conflict = el.get(conflict_key)
            if isinstance(conflict, dict) and conflict.get("incoming"):
                reason = "conflict: both copies kept, waiting for a decision"
            elif not sources:
                reason = "no site holds the current version"
            else:
                lock = el.get("lock")
                if lock and (exists is None or exists(file_id)):
                    where = lock_sites.get(lock)
                    if where is None or where == site:
                        reason = f"locked by {lock}"
            if reason:
                result.waiting[(file_id, site)] = reason
            else:
                retry = retry_state(el, site, settings, now)
                if retry is not False:
                    # a local source first (cheapest), the writer before other holders
                    source = sources[0]
                    if len(sources) > 1:
                        source = min(sources, key=lambda s: not vols[s]["url"].startswith("file:"))
                    receive.append(Task(file_id, source, site, priority, bool(retry)))
        # emission: push what this site wrote to wanted sites whose agents are down
        if emits:
            for target in names:
                if target == site or target in alive_set or target in have:
                    continue
                if not wanted(el, target, settings) or el.get(site_keys(target).conflict):
                    continue
                if el.get("lock") and lock_sites.get(el["lock"]) in (None, target):
                    result.waiting[(file_id, target)] = f"locked by {el['lock']}"
                    continue
                retry = retry_state(el, target, settings, now)
                if retry is not False:
                    emit.append(Task(file_id, site, target, priority, bool(retry)))

    result.receptions = ordered(receive, int(settings["syncAmountReception"]))
    result.emissions = ordered(emit, int(settings["syncAmountEmission"]))
    return result


__all__ = [
    "Plan",
    "Task",
    "backoff_ms",
    "holders",
    "may_have_work",
    "ordered",
    "plan",
    "retry_state",
    "wanted",
]
