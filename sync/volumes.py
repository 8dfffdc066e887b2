"""Volumes (one per site), the global parameters, and the tracked files the engine reads.

A volume is an ordinary element with ``name`` (``^[a-z0-9_]{3,16}$``, the site name
used in per-site keys) and ``url`` (``file:///abs/path/`` or
``ssh://user@host[:port]/abs/path/``): the site's project root. Writes made through
this module are validated against ``schemas/volume.json`` and only admins may set
``url``, ``rsync_args`` and ``rsync_env`` (the core enforces that rule on every
write path: :func:`damas_core.permissions.check_volume_keys`).

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> _ = create_volume(t, {"_id": "vol_paris", "name": "paris", "url": "file:///srv/paris/"})
>>> [v["name"] for v in volumes(t)]
['paris']
>>> endpoint_of(volumes(t)[0]).root
'/srv/paris/'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from damas_core.schemas import validate

from damas_core.errors import BadRequest, Forbidden, NotFound
from damas_core.query.parser import parse
from damas_core.query.predicate import to_predicate

from .rsync import Endpoint, check_user_args

GLOBAL_ID = "rsyncGlobalParameters"
#: keys of a volume only admins may write: they decide where data goes and what runs
ADMIN_KEYS = ("url", "rsync_args", "rsync_env")
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
}
_BATCH = 2000


def _is_admin(session: Any) -> bool:
    # the embedded Tracker and admin sessions have is_admin; a client exposes the user
    flag = getattr(session, "is_admin", None)
    if flag is not None:
        return bool(flag)
    user = getattr(session, "user", None) or {}
    return user.get("class") == "admin"


def endpoint_of(volume: Mapping[str, Any]) -> Endpoint:
    """The rsync :class:`Endpoint` of a volume element, from its ``url``.

    >>> endpoint_of({"url": "ssh://me@host:2222/srv/p/"})
    Endpoint(root='/srv/p/', host='me@host', port=2222)
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
        return Endpoint(path, host=f"{user}@{host}", port=parts.port)
    raise BadRequest(f"sync error: volume url {url!r}: use file:// or ssh://", key="url")


def local_root(volume: Mapping[str, Any]) -> str:
    """The directory the volume's own agent scans: the path of its url on this machine."""
    return endpoint_of(volume).root


#: the volume elements: a name and a file:// or ssh:// url, an id that is not a path
VOLUMES_QUERY = "url:/^(file|ssh):\\/\\// name:*"


def volumes(tracker: Any) -> list[dict[str, Any]]:
    """Every volume element (elements with a ``name`` and a ``file://``/``ssh://`` url).

    Sorted by name; ``[]`` when there is none.
    """
    return _volumes_of(tracker.search_elements(VOLUMES_QUERY))


def _volumes_of(found: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    out = [v for v in found if not v["_id"].startswith("/")]
    return sorted(out, key=lambda v: str(v.get("name")))


def volume(tracker: Any, volume_id: str) -> dict[str, Any]:
    """The volume element ``volume_id``, checked; :class:`NotFound` when missing."""
    element = tracker.read(volume_id)
    if element is None:
        raise NotFound(f"sync error: no volume {volume_id!r}", id=volume_id)
    validate("volume", element)
    endpoint_of(element)
    return element


def global_parameters(tracker: Any) -> dict[str, Any]:
    """The ``rsyncGlobalParameters`` element merged over :data:`DEFAULTS`."""
    element = tracker.read(GLOBAL_ID) or {}
    return {**DEFAULTS, **{k: v for k, v in element.items() if v is not None}}


def check_volume_write(session: Any, element: Mapping[str, Any], *, partial: bool) -> None:
    """Raise unless ``session`` may write ``element`` to a volume (schema + admin keys)."""
    validate("volume", dict(element), partial=partial)
    for key in ADMIN_KEYS:
        if key in element and not _is_admin(session):
            raise Forbidden(
                f"sync error: only admins may set {key!r} on a volume",
                id=element.get("_id"),
                key=key,
            )
    if element.get("url") is not None:
        endpoint_of(element)
    if element.get("rsync_args") is not None:
        check_user_args(element["rsync_args"], where=f"volume {element.get('_id')!r}")


def create_volume(session: Any, element: Mapping[str, Any]) -> dict[str, Any] | None:
    """Create a volume element after validating it; ``None`` when the id exists."""
    check_volume_write(session, element, partial=False)
    return session.create(dict(element))


def update_volume(session: Any, element: Mapping[str, Any]) -> dict[str, Any] | None:
    """Update keys of a volume after validating them (``None`` removes a key)."""
    check_volume_write(session, element, partial=True)
    return session.update(dict(element))


def set_global_parameters(session: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """Create or update ``rsyncGlobalParameters`` with ``values`` (validated, admins only)."""
    element = {**values, "_id": GLOBAL_ID}
    validate("rsyncGlobalParameters", element, partial=True)
    if not _is_admin(session):
        raise Forbidden("sync error: only admins may change rsyncGlobalParameters", id=GLOBAL_ID)
    if element.get("rsync_args") is not None:
        check_user_args(element["rsync_args"], where=GLOBAL_ID)
    if session.read(GLOBAL_ID) is None:
        return session.create(element)
    return session.update(element)


def read_many(tracker: Any, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{id: element}`` for ``ids``, read in batches (missing ids are left out)."""
    return {e["_id"]: e for e in _read_all(tracker, list(ids)) if e is not None}


def _read_all(tracker: Any, ids: list[str]) -> list[dict[str, Any] | None]:
    out: list[dict[str, Any] | None] = []
    for i in range(0, len(ids), _BATCH):
        out.extend(tracker.read(ids[i : i + _BATCH]))
    return out


#: the file elements: tracked files, not their history children (ids start with ``/``)
FILES_QUERY = "origin:* -#parent:*"
_matches_files_query = to_predicate(parse(FILES_QUERY))
_matches_volumes_query = to_predicate(parse(VOLUMES_QUERY))


def tracked_files(tracker: Any) -> dict[str, dict[str, Any]]:
    """Every file element (id starting with ``/``, not a history child), by id.

    One request: ``tracker.search_elements`` with :data:`FILES_QUERY`.
    """
    return {e["_id"]: e for e in tracker.search_elements(FILES_QUERY) if e["_id"].startswith("/")}


def tracker_view(tracker: Any) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
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


def read_files(tracker: Any, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{id: element}`` for those of ``ids`` that :func:`tracked_files` would hold."""
    found = read_many(tracker, ids).items()
    return {i: e for i, e in found if i.startswith("/") and _matches_files_query(e)}


__all__ = [
    "ADMIN_KEYS",
    "DEFAULTS",
    "FILES_QUERY",
    "GLOBAL_ID",
    "VOLUMES_QUERY",
    "check_volume_write",
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
