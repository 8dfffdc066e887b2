"""Rows kept between pages (damas_core.sync.row_cache, damas_core.dashboard.cells.FileRows):
a kept row is shown only while what it was made of is unchanged, whoever changed it."""

from __future__ import annotations

import copy
import re
import threading

import pytest
from damas_core.backends.base import Patch
from damas_core.sync.row_cache import RowCache
from damas_core.sync.status import Filters, page, row_of
from damas_core.sync.volumes import set_global_parameters, update_volume

from damas_core.dashboard.cells import FileRows

T = 1_700_000_000_000
FILE = {"_id": "/a.exr", "origin": "paris", "time": T, "file_size": 5, "sync_tokyo": True}


def _cells(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-site="([^"]+)" data-state="([^"]+)"', html))


def test_a_kept_row_is_given_while_its_element_is_equal():
    rows = RowCache()
    sites, params = ("paris", "tokyo"), {}
    first = rows(dict(FILE), sites, params, {})
    assert first == row_of(FILE, sites, params)
    assert rows(copy.deepcopy(FILE), sites, params, {}) is first  # equal: the same row
    copied = rows({**FILE, "synced_tokyo": T}, sites, params, {})
    assert copied["states"]["tokyo"] == {"state": "ok"} and first["states"]["tokyo"] == {
        "state": "queued"
    }
    assert rows(dict(FILE), ("tokyo",), params, {})["states"].keys() == {"tokyo"}


def test_other_parameters_make_every_row_again():
    rows = RowCache()
    element = {"_id": "/a.exr", "origin": "paris", "time": T}
    assert rows(element, ("lyon",), {}, {})["states"]["lyon"]["state"] == "unwanted"
    everywhere = {"syncEverywhere": True}
    assert rows(element, ("lyon",), everywhere, {})["states"]["lyon"]["state"] == "queued"
    everywhere["syncEverywhere"] = False  # the same mapping, changed: compared again
    assert rows(element, ("lyon",), dict(everywhere), {})["states"]["lyon"]["state"] == "unwanted"


def test_a_file_in_flight_is_made_each_time_and_not_kept():
    rows = RowCache()
    moving = {"tokyo": frozenset({"/a.exr"})}
    assert rows(dict(FILE), ("tokyo",), {}, moving)["states"]["tokyo"] == {
        "state": "queued",
        "detail": "transferring",
    }
    assert len(rows) == 0
    assert rows(dict(FILE), ("tokyo",), {}, {})["states"]["tokyo"] == {"state": "queued"}
    # in flight to a site not shown: the row shown is kept as usual
    assert rows(dict(FILE), ("paris",), {}, moving)["states"]["paris"] == {"state": "ok"}


def test_a_cache_keeps_at_most_its_size_the_oldest_made_going_first():
    rows = RowCache(size=2)
    for i in range(5):
        rows({**FILE, "_id": f"/f{i}"}, ("tokyo",), {}, {})
    assert len(rows) == 2
    assert rows({**FILE, "_id": "/f4"}, ("tokyo",), {}, {})["_id"] == "/f4"
    with pytest.raises(ValueError):
        RowCache(size=0)


def test_large_elements_keep_fewer_rows_within_the_budget():
    rows = RowCache(budget=10_000)
    big = {**FILE, "comment": "x" * 4000}  # about 4 kB of JSON each
    for i in range(5):
        assert rows({**big, "_id": f"/f{i}"}, ("tokyo",), {}, {})["_id"] == f"/f{i}"
    assert len(rows) == 2
    huge = {**FILE, "comment": "x" * 20_000}  # over the whole budget: made, not kept
    assert rows(huge, ("tokyo",), {}, {}) == row_of(huge, ("tokyo",), {})
    assert len(rows) == 2


def test_rows_made_from_many_threads_are_each_the_row_of_their_element():
    rows, sites, errors = RowCache(size=50), ("paris", "tokyo"), []

    def work(n: int) -> None:
        for i in range(400):
            element = {**FILE, "_id": f"/f{i % 70}", "file_size": (i * n) % 3}
            if (i + n) % 4 == 0:
                element["synced_tokyo"] = T
            if rows(element, sites, {}, {}) != row_of(element, sites, {}):
                errors.append(element)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(rows) <= 50


def test_markup_follows_the_row_the_base_and_the_sites_stderr():
    markup = FileRows()
    row = row_of({**FILE, "syncError_tokyo": 23}, ("tokyo",), {})
    html = markup([row], ["tokyo"], {"tokyo": "no space"}, "/dash")
    assert "rsync exit code 23: no space" in html and 'href="/dash/file?id=%2Fa.exr"' in html
    assert markup([copy.deepcopy(row)], ["tokyo"], {"tokyo": "no space"}, "/dash") == html
    assert "disk full" in markup([row], ["tokyo"], {"tokyo": "disk full"}, "/dash")
    assert 'href="/other/file?id=' in markup([row], ["tokyo"], {"tokyo": "no space"}, "/other")
    locked = {**row, "lock": "bo"}
    assert "<bdi>bo</bdi>" in markup([locked], ["tokyo"], {"tokyo": "no space"}, "/dash")
    assert "<bdi>bo</bdi>" not in markup([row], ["tokyo"], {"tokyo": "no space"}, "/dash")


def test_the_page_shows_a_write_that_bypassed_every_operation(tracker, browser):
    """A write straight to the storage, below every operation, is on the next page: a
    kept row is checked against the element read for the page, not told of changes."""
    tracker.publish({**FILE, "comment": "c"})
    b = browser("ula")
    assert _cells(b.get("/").get_data(as_text=True))["tokyo"] == "queued"
    element = tracker.read("/a.exr")
    tracker.storage.patch_many([Patch("/a.exr", set={"synced_tokyo": element["time"]})])
    assert _cells(b.get("/").get_data(as_text=True))["tokyo"] == "ok"
    # the global parameters and a volume's stderr: each page follows them too
    set_global_parameters(tracker, {"syncEverywhere": False})
    update_volume(tracker, {"_id": "vol_tokyo", "stderr_reception": "disk <full>"})
    tracker.update({"_id": "/a.exr", "syncError_tokyo": 11, "synced_tokyo": None})
    html = b.get("/").get_data(as_text=True)
    assert _cells(html)["tokyo"] == "error" and "disk &lt;full&gt;" in html


def test_pages_in_id_order_and_their_rows_agree_with_rows_made_afresh(tracker):
    tracker.publish([{**FILE, "_id": f"/s/{i:03}", "comment": "c"} for i in range(30)])
    rows = RowCache()
    for _ in range(2):
        kept = page(tracker, Filters(limit=7, after="/s/010"), make_row=rows)
        fresh = page(tracker, Filters(limit=7, after="/s/010"))
        assert kept == fresh and kept["files"][0]["_id"] == "/s/011"
        tracker.update([{"_id": "/s/012", "synced_tokyo": T}])
