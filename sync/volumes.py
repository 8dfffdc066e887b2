"""Volumes (one per site), the global parameters, and the tracked files the engine reads.

A volume is an ordinary element with ``name`` (``^[a-z0-9_]{3,16}$``, the site name
used in per-site keys) and ``url`` (``file:///abs/path/`` or
``ssh://user@host[:port]/abs/path/``): the site's project root. Writes made through
this module are validated: the schema (``schemas/volume.json``), the url, and the
keys handed to rsync and ssh (:mod:`.rsync_options`). Who may write a volume or the
global parameters is decided by the core, below every operation (admins only), so
these functions work the same with the embedded tracker, a session or an HTTP client.

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> _ = create_volume(t, {"_id": "vol_paris", "name": "paris", "url": "file:///srv/paris/"})
>>> [v["name"] for v in volumes(t)]
['paris']
>>> endpoint_of(volumes(t)[0]).root
'/srv/paris/'
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from damas_core.schemas import validate

from damas_core.errors import BadRequest, NotFound
from damas_core.query.parser import parse
from damas_core.query.predicate import to_predicate

from .rsync import Endpoint
from .rsync_options import check_env, check_user_args, ssh_args
from .tracker_api import TrackerAPI

GLOBAL_ID = "rsyncGlobalParameters"
#: defaults of the global parameters when the element or a key is missing
DEFAULTS: dict[str, Any] = {
    "syncEverywhere": False,
    "syncAmountEmission": 1000,
    "syncAmountReception": 1000,
    "sleepBetweenScans": 60,
    "timeout": 600,
    "retryDelay": 30,
    "retryMaxDelay": 3600,
    "agentTimeout": 300,
    # deletions at the origin are applied at the other sites (docs/sync.md, "Deletions")
    "propagateDeletions": False,
    "trashRetention": 30,  # days a removed copy stays in .damas-trash
    "maxDelete": 50,  # % of a site's files one cycle may remove; more stops, removing none
}
_BATCH = 2000


def endpoint_of(volume: Mapping[str, Any]) -> Endpoint:
    """The rsync :class:`Endpoint` of a volume element, from its ``url`` and, for an
    ``ssh://`` url, its ``ssh_port`` (which must agree with a port in the url).

    >>> endpoint_of({"url": "ssh://me@host:2222/srv/p/"})
    Endpoint(root='/srv/p/', host='me@host', port=2222)
    >>> endpoint_of({"url": "ssh://me@host/srv/p/", "ssh_port": 2200}).port
    2200
    """
    url = volume.get("url")
    if not isinstance(url, str):
        raise BadRequest(f"sync error: volume {volume.get('_id')!r} has no url", key="url")
    parts = urlsplit(url)
    path = unquote(parts.path)
    if not path.startswith("/") or not path.endswith("/") or "\x00" in path:
        raise BadRequest(
            f"sync error: volume url {url!r}: the path must be absolute and end with '/'", key="url"
        )
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise BadRequest(f"sync error: volume url {url!r}: a file url has no host", key="url")
        return Endpoint(path)
    if parts.scheme == "ssh":
        user, host = parts.username, parts.hostname
        if not user or not host or user.startswith("-") or host.startswith("-"):
            raise BadRequest(
                f"sync error: volume url {url!r} needs ssh://user@host/path/", key="url"
            )
        try:
            url_port = parts.port
        except ValueError:
            raise BadRequest(f"sync error: volume url {url!r}: bad port", key="url") from None
        port = volume.get("ssh_port")
        if port is not None and (
            not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535
        ):
            raise BadRequest(
                f"sync error: ssh_port of volume {volume.get('_id')!r}: {port!r} is not a "
                "port number (1-65535)",
                id=volume.get("_id"),
                key="ssh_port",
            )
        if port is not None and url_port is not None and port != url_port:
            raise BadRequest(
                f"sync error: ssh_port of volume {volume.get('_id')!r} ({port}) differs from "
                f"the port of its url {url!r}",
                id=volume.get("_id"),
                key="ssh_port",
            )
        return Endpoint(path, host=f"{user}@{host}", port=port or url_port)
    raise BadRequest(f"sync error: volume url {url!r}: use file:// or ssh://", key="url")


def local_root(volume: Mapping[str, Any]) -> str:
    """The directory the volume's own agent scans: the path of its url on this machine."""
    return endpoint_of(volume).root


#: the volume elements: a name and a file:// or ssh:// url, an id that is not a path
VOLUMES_QUERY = "url:/^(file|ssh):\\/\\// name:*"


def volumes(tracker: TrackerAPI) -> list[dict[str, Any]]:
    """Every volume element (elements with a ``name`` and a ``file://``/``ssh://`` url).

    Sorted by name; ``[]`` when there is none.
    """
    return _volumes_of(tracker.search_elements(VOLUMES_QUERY))


def _volumes_of(found: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    out = [v for v in found if not v["_id"].startswith("/")]
    return sorted(out, key=lambda v: str(v.get("name")))


def volume(tracker: TrackerAPI, volume_id: str) -> dict[str, Any]:
    """The volume element ``volume_id``, checked; :class:`NotFound` when missing."""
    return checked_volume(tracker.read(volume_id), volume_id)


def checked_volume(element: dict[str, Any] | None, volume_id: str) -> dict[str, Any]:
    """``element`` (the volume ``volume_id`` as read) once its schema and url pass;
    :class:`NotFound` when it is ``None``."""
    if element is None:
        raise NotFound(f"sync error: no volume {volume_id!r}", id=volume_id)
    validate("volume", element)
    endpoint_of(element)
    return element


def global_parameters(tracker: TrackerAPI) -> dict[str, Any]:
    """The ``rsyncGlobalParameters`` element merged over :data:`DEFAULTS`."""
    element = tracker.read(GLOBAL_ID) or {}
    return {**DEFAULTS, **{k: v for k, v in element.items() if v is not None}}


def check_volume(element: Mapping[str, Any], *, partial: bool = False) -> None:
    """Raise :class:`BadRequest` naming the key unless ``element`` is a valid volume:
    its schema, its url (and ``ssh_port``), and what it hands to rsync and ssh
    (``rsync_args``, ``rsync_env``, ``ssh_*``: :mod:`.rsync_options`). With
    ``partial`` it is an update: required keys may be missing, ``None`` removes a key.

    >>> check_volume({"_id": "v1", "name": "paris", "url": "file:///p/",
    ...               "rsync_args": "", "rsync_env": ""})
    >>> check_volume({"_id": "v1", "rsync_args": "--delete"}, partial=True)
    Traceback (most recent call last):
    ...
    damas_core.errors.BadRequest: sync error: rsync_args of volume 'v1': '--delete' is not an option the sync engine allows (see docs/sync.md)
    """
    validate("volume", dict(element), partial=partial)
    where = f"volume {element.get('_id')!r}"
    if element.get("url") is not None:
        endpoint_of(element)
    hub = element.get("hub")
    if hub is not None and not partial:
        if hub == element.get("_id"):
            raise BadRequest(f"sync error: {where} names itself as its hub", key="hub")
        if not str(element.get("url", "")).startswith("ssh://"):
            raise BadRequest(
                f"sync error: {where} has a hub ({hub!r}): its url must be ssh://user@host/path/ "
                "(a storage driven by a hub is reached only over ssh)",
                id=element.get("_id"),
                key="hub",
            )
    check_user_args(element.get("rsync_args"), where=where)
    check_env(element.get("rsync_env"), where=where)
    ssh_args(element)


def create_volume(session: TrackerAPI, element: Mapping[str, Any]) -> dict[str, Any] | None:
    """Create a volume element after :func:`check_volume`; ``None`` when the id exists."""
    check_volume(element)
    return session.create(dict(element))


def update_volume(session: TrackerAPI, element: Mapping[str, Any]) -> dict[str, Any] | None:
    """Update keys of a volume (``None`` removes a key) once the volume as it will be
    after the update passes :func:`check_volume`; ``None`` when there is no such
    element. A change of an ``enable…`` switch records who made it (``switchedBy``,
    ``switchedAt``), which the activity log's ``disabled``/``enabled`` events name."""
    before = session.read(element["_id"]) if isinstance(element.get("_id"), str) else None
    if before is None:
        check_volume(element, partial=True)
    else:
        after = {**before, **element}
        check_volume({k: v for k, v in after.items() if v is not None})
    element = dict(element)
    if before is not None and any(
        k.startswith("enable") and before.get(k, True) is not (v is not False)
        for k, v in element.items()
    ):  # who switched, for the activity log (damas notify records disabled/enabled)
        element["switchedBy"] = getattr(session, "username", None)
        element["switchedAt"] = int(time.time() * 1000)
    return session.update(element)


def set_global_parameters(session: TrackerAPI, values: Mapping[str, Any]) -> dict[str, Any]:
    """Create or update ``rsyncGlobalParameters`` with ``values`` after validating them
    (the schema; ``rsync_args`` through :func:`.rsync_options.check_user_args`)."""
    element = {**values, "_id": GLOBAL_ID}
    validate("rsyncGlobalParameters", element, partial=True)
    check_user_args(element.get("rsync_args"), where=GLOBAL_ID)
    if session.read(GLOBAL_ID) is None:
        return session.create(element)
    return session.update(element)


def read_many(tracker: TrackerAPI, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{id: element}`` for ``ids``, read in batches (missing ids are left out)."""
    return {e["_id"]: e for e in _read_all(tracker, list(ids)) if e is not None}


def _read_all(tracker: TrackerAPI, ids: list[str]) -> list[dict[str, Any] | None]:
    out: list[dict[str, Any] | None] = []
    for i in range(0, len(ids), _BATCH):
        out.extend(tracker.read(ids[i : i + _BATCH]))
    return out


#: the file elements: tracked files, not their history children (ids start with ``/``)
FILES_QUERY = "origin:* -#parent:*"
_matches_files_query = to_predicate(parse(FILES_QUERY))
_matches_volumes_query = to_predicate(parse(VOLUMES_QUERY))


def tracked_files(tracker: TrackerAPI) -> dict[str, dict[str, Any]]:
    """Every file element (id starting with ``/``, not a history child), by id.

    One request: ``tracker.search_elements`` with :data:`FILES_QUERY`.
    """
    return {e["_id"]: e for e in tracker.search_elements(FILES_QUERY) if e["_id"].startswith("/")}


def tracker_view(tracker: TrackerAPI) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """:func:`tracked_files` and :func:`volumes` in one request: a store without an
    index for them is read once instead of twice (an agent needs both every cycle).

    >>> import damas_core
    >>> t = damas_core.open("memory://")
    >>> _ = create_volume(t, {"_id": "v1", "name": "paris", "url": "file:///srv/paris/"})
    >>> _ = t.publish({"_id": "/a.txt", "origin": "paris", "comment": "new"})
    >>> files, vols = tracker_view(t)
    >>> list(files), [v["_id"] for v in vols]
    (['/a.txt'], ['v1'])
    """
    found = tracker.search_elements(f"({FILES_QUERY}) OR ({VOLUMES_QUERY})")
    # FILES_QUERY, spelled out: "origin" present, "#parent" absent
    files = {
        e["_id"]: e for e in found if e["_id"][0] == "/" and "origin" in e and "#parent" not in e
    }
    others = (v for v in found if v["_id"][0] != "/" and _matches_volumes_query(v))
    return files, _volumes_of(others)


def read_files(tracker: TrackerAPI, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{id: element}`` for those of ``ids`` that :func:`tracked_files` would hold."""
    found = read_many(tracker, ids).items()
    return {i: e for i, e in found if i.startswith("/") and _matches_files_query(e)}


__all__ = [
    "DEFAULTS",
    "FILES_QUERY",
    "GLOBAL_ID",
    "VOLUMES_QUERY",
    "check_volume",
    "checked_volume",
    "create_volume",
    "endpoint_of",
    "global_parameters",
    "local_root",
    "read_files",
    "read_many",
    "tracked_files",
    "tracker_view",
    "update_volume",
    "volume",
    "volumes",
]
