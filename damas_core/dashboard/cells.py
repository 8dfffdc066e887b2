"""The files × sites table's rows and cells: a file's state at a site as an icon, words
and, for an error, what failed; as HTML and as the JSON of live updates.

The rows are made here rather than by the template: a page of 100 files shows 300
cells, and Jinja2 spent about 55 µs a row on them with a macro per cell (5.8 ms of a
5.8 ms page of 1M files, where the store's read of the page takes 0.2 ms); made here,
about 7 µs, and a row kept by :class:`FileRows` while its file is unchanged costs a
lookup (``make bench``, dashboard). Every value from the store is escaped
(:func:`markupsafe.escape`, as Jinja2's autoescape does); a state's name, its icon and
the markup are this module's own, the icons as character references (the page stays
ASCII: :func:`ascii_html`).

>>> st = {"state": "error", "code": 23}
>>> print(cell("/a<b>", "lyon", st, "no space"))  # doctest: +NORMALIZE_WHITESPACE
<td class="cell s-error" data-file="/a&lt;b&gt;" data-site="lyon" data-state="error"><details><summary><span class="icon" aria-hidden="true">&#10006;</span> <span class="word">error (23)</span></summary><span class="more">rsync exit code 23: no space</span></details></td>
>>> parts(st, "no space")
{'state': 'error', 'text': 'error (23)', 'icon': '✖', 'more': 'rsync exit code 23: no space'}

A queued file that an agent is copying now has the detail ``transferring``
(:func:`damas_core.sync.status.state_of`): its cell keeps ``data-state="queued"`` and
its colour, and shows the detail's icon and word, with ``data-detail``:

>>> print(cell("/a", "lyon", {"state": "queued", "detail": "transferring"}))
<td class="cell s-queued" data-file="/a" data-site="lyon" data-state="queued" data-detail="transferring"><span class="icon" aria-hidden="true">&#8644;</span> <span class="word">transferring</span></td>
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from damas_core.sync.row_cache import DEFAULT_BUDGET, DEFAULT_SIZE, ENTRY_COST, Kept
from damas_core.sync.status import ICONS, describe, human_size

#: the details a file state may have (:func:`damas_core.sync.status.state_of`), each
#: with its icon and its ``data-detail`` hook
DETAILS = frozenset({"transferring"})


def ascii_html(text: str) -> str:
    """``text`` (escaped already, or this module's own) with every character beyond
    ASCII as a character reference.

    >>> ascii_html("✔ 1.0 KiB")
    '&#10004; 1.0 KiB'
    """
    return text.encode("ascii", "xmlcharrefreplace").decode("ascii")


#: the icons as HTML character references. A page of ASCII text is encoded in a copy,
#: where one character beyond ASCII makes Python encode every character of it: 2 µs
#: instead of 110 µs for the 86 kB of a page of 100 files (``str.encode``, measured
#: on the development machine)
_HTML_ICONS = {k: ascii_html(v) for k, v in ICONS.items()}
_LOCK = ascii_html("🔒")


def icon(state: str) -> str:
    """The icon of a file or agent state (``?`` for another word)."""
    return ICONS.get(state, "?")


def when(ms: Any) -> str:
    """A time in milliseconds as the pages show it (UTC); ``""`` when it is not one.

    >>> when(1_700_000_000_000), when(None)
    ('2023-11-14 22:13:20 UTC', '')
    """
    if isinstance(ms, bool) or not isinstance(ms, int | float):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + " UTC"


def more(st: Mapping[str, Any], stderr: str = "") -> str:
    """What an error cell says when opened: rsync's exit code and the site's last stderr."""
    return f"rsync exit code {st['code']}" + (f": {stderr}" if stderr else "")


def parts(st: Mapping[str, Any], stderr: str = "") -> dict[str, Any]:
    """A cell as data: ``state``, ``text`` (:func:`.describe`), ``icon``, ``detail``
    when the state has one (:data:`DETAILS`) and, for an error, ``more``
    (:func:`more`); what a live update puts in the page."""
    detail = _detail(st)
    out = {"state": st["state"], "text": describe(st), "icon": icon(detail or st["state"])}
    if detail is not None:
        out["detail"] = detail
    if st["state"] == "error":
        out["more"] = more(st, stderr)
    return out


def cell(file_id: str, site: str, st: Mapping[str, Any], stderr: str = "") -> Markup:
    """The ``<td>`` of one file at one site (``stderr``: the site's last stderr, shown
    with an error)."""
    return Markup(_cell(escape(file_id), escape(site), st, stderr))


class FileRows:
    """The ``<tr>`` of rows (:func:`.status.row_of`), each row's kept while it is equal
    to the one it was made of, in a :class:`~damas_core.sync.row_cache.Kept` of
    ``size`` rows and ``budget`` bytes (thread-safe). Made again, the 100 rows of a page
    take about 0.7 ms; kept, a few µs (``make bench``, dashboard)."""

    def __init__(self, size: int = DEFAULT_SIZE, budget: int = DEFAULT_BUDGET) -> None:
        self._kept = Kept(size, budget)

    def __call__(
        self,
        rows: Iterable[Mapping[str, Any]],
        sites: Iterable[str],
        stderr: Mapping[str, str],
        base: str,
    ) -> Markup:
        """Each row's ``<tr>``: the file (a link to its page below ``base``), its size,
        time and lock, then its cells at ``sites`` in that order (``stderr``: each
        site's last stderr)."""
        columns = tuple((escape(s), s, stderr.get(s, "")) for s in sites)
        link = f"{escape(base)}/file?id="
        kept = self._kept
        out = []
        for row in rows:
            key = (row["_id"], columns, link)
            found = kept.get(key)
            if found is not None and (found[0] is row or found[0] == row):
                out.append(found[1])
                continue
            html = _row(row, columns, link)
            out.append(html)
            kept.put(key, (row, html), len(html) + ENTRY_COST)
        return Markup("".join(out))


def _row(row: Mapping[str, Any], columns: Iterable[tuple[Markup, str, str]], link: str) -> str:
    file_id = escape(row["_id"])
    lock = row["lock"]
    states = row["states"]
    deleted = ' <span class="tag">deleted</span>' if row["deleted"] else ""
    held = f'<span aria-hidden="true">{_LOCK}</span> <bdi>{escape(lock)}</bdi>' if lock else ""
    # the size and the time are this module's own text (digits and units): not escaped
    return (
        f'  <tr data-file="{file_id}">\n'
        f'    <th scope="row" class="name"><a href="{link}{_query_value(row["_id"])}">'
        f"<bdi>{file_id}</bdi></a>{deleted}</th>\n"
        f'    <td class="num">{ascii_html(human_size(row["file_size"]))}</td>\n'
        f'    <td class="when"><time>{when(row["time"])}</time></td>\n'
        f'    <td class="lock" data-lock="{escape(lock) if lock else ""}">{held}</td>\n'
        + "".join(_cell(file_id, site, states[s], err) for site, s, err in columns)
        + "  </tr>\n"
    )


def _query_value(text: Any) -> str:
    """``quote(text, safe="")``, sooner: ``quote`` returns at once a text with nothing to
    encode but a slash, as most paths are (0.5 µs instead of 1.7 µs: a sixth of a row's
    time)."""
    return quote(str(text), safe="/").replace("/", "%2F")


def _detail(st: Mapping[str, Any]) -> str | None:
    detail = st.get("detail")
    return detail if detail in DETAILS else None


def _cell(file_id: Markup, site: Markup, st: Mapping[str, Any], stderr: str) -> str:
    state = st["state"]  # one of STATES: a word of ours, nothing to escape
    text = describe(st)
    detail = _detail(st)  # one of DETAILS, ours too
    return (
        f'<td class="cell s-{state}" data-file="{file_id}" data-site="{site}" '
        f'data-state="{state}"'
        + (f' data-detail="{detail}">' if detail else ">")
        + _shown(detail or state, text, more(st, stderr) if state == "error" else None)
        + "</td>"
    )


@lru_cache(maxsize=1024)
def _shown(shown_as: str, text: str, opened: str | None) -> str:
    """A cell's content: few differ on a page (a state or its detail, its words, an
    error's message), so each is escaped and put together once (a cell in 0.8 µs
    instead of 1.4 µs)."""
    shown = (
        f'<span class="icon" aria-hidden="true">{_HTML_ICONS[shown_as]}</span> '
        f'<span class="word">{escape(text)}</span>'
    )
    if opened is None:
        return shown
    return (
        f'<details><summary>{shown}</summary><span class="more">{escape(opened)}</span></details>'
    )


__all__ = ["DETAILS", "FileRows", "ascii_html", "cell", "icon", "more", "parts", "when"]
