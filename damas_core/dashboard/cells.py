"""A file's state at a site as the dashboard shows it: an icon, words, and for an error
what failed; as HTML (a cell of the files × sites table) and as the JSON of live updates.

The cells are made here rather than by a template macro: a page of 100 files shows 300
of them, and a Jinja2 macro call per cell was most of the page's time (``make bench``,
dashboard: 5.8 ms of a 5.8 ms page at 1M files, where the store's read of the page takes
0.2 ms). Every value from the store is escaped (:func:`markupsafe.escape`, as Jinja2's
autoescape does); a state's name, its icon and the markup are this module's own.

>>> st = {"state": "error", "code": 23}
>>> print(cell("/a<b>", "lyon", st, "no space"))  # doctest: +NORMALIZE_WHITESPACE
<td class="cell s-error" data-file="/a&lt;b&gt;" data-site="lyon" data-state="error"><details><summary><span class="icon" aria-hidden="true">✖</span> <span class="word">error (23)</span></summary><span class="more">rsync exit code 23: no space</span></details></td>
>>> parts(st, "no space")
{'state': 'error', 'text': 'error (23)', 'icon': '✖', 'more': 'rsync exit code 23: no space'}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from markupsafe import Markup, escape

from damas_core.sync.status import describe

#: the icon of each file state and agent state: a state never shows as a colour alone
ICONS = {
    "ok": "✔", "outdated": "◐", "error": "✖", "queued": "↻", "waiting": "⏸",
    "conflict": "⚠", "unwanted": "–", "on": "▶", "idle": "●", "stopped": "■",
    "unmounted": "⏏", "down": "✖",
}  # fmt: skip


def icon(state: str) -> str:
    """The icon of a file or agent state (``?`` for another word)."""
    return ICONS.get(state, "?")


def more(st: Mapping[str, Any], stderr: str = "") -> str:
    """What an error cell says when opened: rsync's exit code and the site's last stderr."""
    return f"rsync exit code {st['code']}" + (f": {stderr}" if stderr else "")


def parts(st: Mapping[str, Any], stderr: str = "") -> dict[str, Any]:
    """A cell as data: ``state``, ``text`` (:func:`.describe`), ``icon`` and, for an
    error, ``more`` (:func:`more`); what a live update puts in the page."""
    out = {"state": st["state"], "text": describe(st), "icon": icon(st["state"])}
    if st["state"] == "error":
        out["more"] = more(st, stderr)
    return out


def cell(file_id: str, site: str, st: Mapping[str, Any], stderr: str = "") -> Markup:
    """The ``<td>`` of one file at one site (``stderr``: the site's last stderr, shown
    with an error)."""
    return Markup(_cell(escape(file_id), escape(site), st, stderr))


def row_cells(row: Mapping[str, Any], sites: Iterable[str], stderr: Mapping[str, str]) -> Markup:
    """The cells of a row (:func:`.status.row_of`) at ``sites``, in that order
    (``stderr``: each site's last stderr)."""
    file_id = escape(row["_id"])
    states = row["states"]
    return Markup("".join(_cell(file_id, escape(s), states[s], stderr.get(s, "")) for s in sites))


def _cell(file_id: Markup, site: Markup, st: Mapping[str, Any], stderr: str) -> str:
    state = st["state"]  # one of STATES: a word of ours, nothing to escape
    shown = (
        f'<span class="icon" aria-hidden="true">{ICONS[state]}</span> '
        f'<span class="word">{escape(describe(st))}</span>'
    )
    if state == "error":
        shown = (
            f'<details><summary>{shown}</summary><span class="more">{escape(more(st, stderr))}'
            "</span></details>"
        )
    return (
        f'<td class="cell s-{state}" data-file="{file_id}" data-site="{site}" '
        f'data-state="{state}">{shown}</td>'
    )


__all__ = ["ICONS", "cell", "icon", "more", "parts", "row_cells"]
