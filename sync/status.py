"""Where each file stands at each site: the files x sites matrix and per-site completion.

States: ``ok`` (holds the current version), ``outdated`` (holds an older one:
``synced_<site>`` < ``time``), ``error`` (the last attempt failed; ``code`` is
rsync's exit code, or ``"conflict"``), ``queued`` (wanted, not there yet) and
``not wanted``.

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> _ = t.create([{"_id": "v1", "name": "paris", "url": "file:///p/"}])
>>> _ = t.publish({"_id": "/a", "origin": "paris", "comment": "c", "file_size": 3})
>>> status(t)["files"][0]["states"]["paris"]
{'state': 'ok'}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .planner import wanted
from .scanner import holds_current
from .volumes import global_parameters, read_many, tracker_view, volumes

STATES = ("ok", "outdated", "error", "queued", "not wanted")


def state_of(element: dict[str, Any], site: str, params: dict[str, Any]) -> dict[str, Any]:
    """The state of one file at one site, as ``{"state": ..., "code"?: ...}``."""
    if element.get(f"conflict_{site}"):
        return {"state": "error", "code": "conflict"}
    if not wanted(element, site, params):
        return {"state": "not wanted"}
    if holds_current(element, site):
        return {"state": "ok"}
    if element.get(f"syncError_{site}") is not None:
        return {"state": "error", "code": element[f"syncError_{site}"]}
    if element.get(f"synced_{site}") is not None:
        return {"state": "outdated"}
    out = {"state": "queued"}
    if element.get(f"syncWait_{site}"):
        out["waiting"] = element[f"syncWait_{site}"]
    return out


def status(tracker: Any, ids: Iterable[str] | None = None) -> dict[str, Any]:
    """The status matrix as JSON-ready data.

    ``{"sites": [...], "files": [{"_id", "file_size", "states": {site: state}}],
    "completion": {site: {"files_ok", "files_wanted", "bytes_ok", "bytes_wanted"}}}``;
    ``ids`` limits it to those files (unknown ids are left out).
    """
    if ids is None:
        files, vols = tracker_view(tracker)
    else:
        files, vols = read_many(tracker, list(ids)), volumes(tracker)
    params = global_parameters(tracker)
    sites = [v["name"] for v in vols]
    completion = {
        s: {"files_ok": 0, "files_wanted": 0, "bytes_ok": 0, "bytes_wanted": 0} for s in sites
    }
    rows = []
    for file_id in sorted(files):
        el = files[file_id]
        if el.get("deleted"):
            rows.append(
                {
                    "_id": file_id,
                    "file_size": el.get("file_size"),
                    "deleted": True,
                    "states": {s: {"state": "not wanted"} for s in sites},
                }
            )
            continue
        size = el.get("file_size") if isinstance(el.get("file_size"), int) else 0
        states = {}
        for s in sites:
            st = state_of(el, s, params)
            states[s] = st
            if st["state"] != "not wanted":
                c = completion[s]
                c["files_wanted"] += 1
                c["bytes_wanted"] += size
                if st["state"] == "ok":
                    c["files_ok"] += 1
                    c["bytes_ok"] += size
        rows.append({"_id": file_id, "file_size": el.get("file_size"), "states": states})
    return {"sites": sites, "files": rows, "completion": completion}


_COLORS = {
    "ok": "green",
    "outdated": "yellow",
    "error": "red",
    "queued": "cyan",
    "not wanted": "grey50",
}


def render(data: dict[str, Any]) -> Any:
    """A rich renderable (table plus completion) of :func:`status` data."""
    from rich.console import Group
    from rich.table import Table

    table = Table(title="files x sites")
    table.add_column("file", overflow="fold")
    for s in data["sites"]:
        table.add_column(s)
    for row in data["files"]:
        cells = []
        for s in data["sites"]:
            st = row["states"][s]
            text = st["state"] + (f" ({st['code']})" if "code" in st else "")
            cells.append(f"[{_COLORS[st['state']]}]{text}[/]")
        table.add_row(row["_id"] + (" [dim](deleted)[/]" if row.get("deleted") else ""), *cells)
    done = Table(title="completion")
    for col in ("site", "files", "bytes"):
        done.add_column(col)
    for s, c in data["completion"].items():
        pf = 100 * c["files_ok"] / c["files_wanted"] if c["files_wanted"] else 100.0
        pb = 100 * c["bytes_ok"] / c["bytes_wanted"] if c["bytes_wanted"] else 100.0
        done.add_row(
            s,
            f"{c['files_ok']}/{c['files_wanted']} ({pf:.0f}%)",
            f"{c['bytes_ok']}/{c['bytes_wanted']} ({pb:.0f}%)",
        )
    return Group(table, done)


__all__ = ["STATES", "render", "state_of", "status"]
