"""The writes of a scan: its publishes and updates sent as the walk goes on.

:class:`ScanWrites` takes the :class:`.scanner.ScanChanges` of a scan as they grow and
writes them in batches, publish calls on threads of their own.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from damas_core.elements import id_of
from damas_core.query.ast import Eq
from damas_core.query.printer import to_text

from .report import Report
from .scanner import ScanChanges, history_of
from .state import site_keys
from .tracker_api import TrackerAPI
from .view import TrackerView

log = logging.getLogger(__name__)

# writes per call: each is one transaction (one fsync on LMDB), so fewer is faster;
# 20000 files are about 5 MB of JSON, well under a server's request limit (50 MB)
WRITE_BATCH = 20000
FIRST_BATCH = 4000
# publish calls of a scan on their way at once: over HTTP the server writes one batch
# while the agent sends the next and decodes the answer of the one before
IN_FLIGHT = 2


class ScanWrites:
    """Writes a scan's changes in calls of :data:`WRITE_BATCH` files, as they come.

    Publish calls go out on threads of their own while the scan goes on (the walk, the
    comparison, the next batch): at most :data:`IN_FLIGHT` on their way, their answers
    taken in the order they were sent. Over HTTP the server works on one batch while
    the agent decodes the answer before it and makes the next. The updates go out
    after every publish before them. Use it as a context manager: leaving it waits for
    the calls on their way, so nothing is written for the scan after it, even when it
    failed.
    """

    def __init__(
        self,
        tracker: TrackerAPI,
        view: TrackerView,
        site: str,
        report: Report,
        *,
        keep_published: bool = True,
    ) -> None:
        """``keep_published``: put what publish returns into the view at once, for the
        rest of the cycle (its plan); without it the next refresh brings it, as every
        write, and a first scan does not pack each new element twice (a fifth of a
        scan-only first scan, cProfile)."""
        self.tracker = tracker
        self.keep_published = keep_published
        self.view = view
        self.site = site
        self.modified_key = site_keys(site).modified
        self.report = report
        self.published = 0  # how many of the changes' publish and update lists are done
        self.patched = 0
        self.updated: dict[str, dict[str, Any] | None] = {}
        self._pool = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix=f"publish-{site}")
        self._sent: deque[Future[list[Any]]] = deque()  # the publish calls on their way

    def __enter__(self) -> ScanWrites:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)  # a failed scan drops the answers: the feed has them

    def some(self, changes: ScanChanges) -> None:
        """Write the full batches among the changes not written yet (the first one as
        soon as :data:`FIRST_BATCH` files wait: the tracker starts while find lists)."""
        self._write(changes, WRITE_BATCH if self.published or self.patched else FIRST_BATCH)

    def all(self, changes: ScanChanges) -> None:
        """Write every change not written yet, then fold the per-file elements of
        packages into them (:attr:`.ScanChanges.fold`)."""
        self._write(changes, 1)
        self._take_published()
        self._fold(changes.fold)

    def _fold(self, fold: dict[str, list[str]]) -> None:
        """Delete the per-file elements inside each package (tracked twice otherwise),
        recorded by a history child of the package naming them; only into a package
        the tracker holds (it was just published, or already was). Their history
        children move to the package (``#parent``: the package, ``folded_from``: the
        file's id), so that the files' history stays found under the package."""
        files = self.view.files
        fold = {p: ids for p, ids in fold.items() if p in files}
        if not fold:
            return
        moved = [
            {"_id": child["_id"], "#parent": package, "folded_from": file_id}
            for package, folded in fold.items()
            for file_id in folded
            for child in self.tracker.search_elements(to_text(Eq(("#parent",), file_id)))
        ]
        # before the files go: a child is never left without a parent
        for i in range(0, len(moved), WRITE_BATCH):
            self.tracker.update(moved[i : i + WRITE_BATCH])
        ids = [i for folded in fold.values() for i in folded]
        for i in range(0, len(ids), WRITE_BATCH):
            self.tracker.delete(ids[i : i + WRITE_BATCH])
        for i in ids:
            self.view.put_gone(i)
        self.report.folded.extend(ids)
        self.tracker.comment(
            [
                {
                    "#parent": package,
                    "comment": f"folded {len(folded)} files into the package at {self.site}",
                    "folded": folded,
                }
                for package, folded in fold.items()
            ]
        )

    def _take_published(self, leave: int = 0) -> None:
        """Take in the answers of the publish calls on their way, oldest first, until
        ``leave`` remain (an error of a call is raised here)."""
        while len(self._sent) > leave:
            done = [el for el in self._sent.popleft().result() if el is not None]
            self.report.published.extend(map(id_of, done))
            if self.keep_published:
                self.view.put(done)
            else:  # the packages only (folds need them): the feed brings the rest
                self.view.put(el for el in done if el["_id"][-1] == "/")

    def _write(self, changes: ScanChanges, least: int) -> None:
        report, view = self.report, self.view
        while len(changes.publish) - self.published >= least:
            batch = changes.publish[self.published : self.published + WRITE_BATCH]
            self.published += len(batch)
            # in id order (a walk lists names in no order): the store writes each
            # B-tree page once instead of coming back to it
            batch.sort(key=id_of)
            self._take_published(IN_FLIGHT - 1)
            self._sent.append(self._pool.submit(self.tracker.publish, batch))
        if len(changes.update) - self.patched >= least:
            self._take_published()  # the updates go out after every publish before them
        base = changes.base
        while len(changes.update) - self.patched >= least:
            batch = changes.update[self.patched : self.patched + WRITE_BATCH]
            self.patched += len(batch)
            history = []
            # a new version or a deletion is written only over the version it was made
            # against (ScanChanges.base)
            expect = [{"time": base[p["_id"]]} if p["_id"] in base else None for p in batch]
            written = self.tracker.update(batch, expect=expect if any(expect) else None)
            for patch, el, expected in zip(batch, written, expect):
                self.updated[patch["_id"]] = el
                if el is None:
                    if expected is not None:
                        # compared again at the next scan, with the version written there
                        report.waiting[patch["_id"]] = "another version was written meanwhile"
                        log.info(
                            "%s: %s: another version was written meanwhile: compared again",
                            self.site,
                            patch["_id"],
                        )
                    continue
                view.put([el])
                child = history_of(patch, self.site)
                if child is not None:
                    history.append(child)
                if patch.get("deleted"):
                    report.deleted.append(el["_id"])
                elif self.modified_key in patch:
                    report.modified.append(el["_id"])
            if history:
                # after the versions they describe: a child never names a version that
                # was not written
                self.tracker.comment(history)


__all__ = ["FIRST_BATCH", "IN_FLIGHT", "WRITE_BATCH", "ScanWrites"]
