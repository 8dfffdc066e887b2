"""The agent of one site: scan, plan, transfer, record; in a loop or once.

``Agent(tracker, volume_id).run_once()`` does one full cycle and returns a
:class:`Report`; ``run()`` repeats it every ``sleepBetweenScans`` seconds until
SIGTERM/SIGINT (or :meth:`Agent.stop`), keeping the volume's ``agentStatus``,
``agentStartTime``, ``agentVersion`` and ``lastConnection*`` keys current.
``tracker`` is an embedded ``Tracker`` or a client connection signed in as an
admin: the agent sets ``time``, ``origin`` and the per-site keys.

The agent's own volume is read on this machine (its ``url`` path); other volumes
are reached through their url (``file://`` directly, ``ssh://`` through ssh).

>>> import damas_core, tempfile, pathlib
>>> t = damas_core.open("memory://")
>>> root = tempfile.mkdtemp() + "/"
>>> _ = pathlib.Path(root, "a.txt").write_text("hi")
>>> _ = t.create({"_id": "v_paris", "name": "paris", "url": "file://" + root})
>>> Agent(t, "v_paris", settle=0).run_once().published
['/a.txt']
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from damas_core.elements import id_of
from damas_core.errors import BadRequest
from damas_core.query.ast import Eq
from damas_core.query.printer import to_text

from . import deletions
from . import rsync as rs
from .last_scan import LastScan
from .planner import Plan, Task, may_have_work, plan
from .record import (
    CONFLICT,
    COPIED,
    FAILED,
    LEFT,
    MOVED,
    STALE,
    TRASHED,
    Outcome,
    left_reason,
    record,
)
from .rsync_options import transfer_options
from .scanner import (
    ScanChanges,
    Scanner,
    history_of,
    look_matches,
    mtime_ms,
    now_ms,
    same_mtime,
)
from .site import LocalSite, Refused, Site, id_refusal
from .state import changed_here, site_keys
from .tracker_api import TrackerAPI
from .transferring import bucket_record
from .tree import Look
from .view import TrackerView
from .volumes import (
    DEFAULTS,
    checked_volume,
    endpoint_of,
    local_root,
    read_many,
    volume,
)

log = logging.getLogger(__name__)

try:
    from importlib.metadata import version as _pkg_version

    AGENT_VERSION = _pkg_version("damas-core")
except Exception:  # pragma: no cover - running from a source tree without metadata
    AGENT_VERSION = "0"

# writes per call: each is one transaction (one fsync on LMDB), so fewer is faster;
# 20000 files are about 5 MB of JSON, well under a server's request limit (50 MB)
_WRITE_BATCH = 20000
_FIRST_BATCH = 4000
# publish calls of a scan on their way at once: over HTTP the server writes one batch
# while the agent sends the next and decodes the answer of the one before
_IN_FLIGHT = 2
# "unmounted": the agent runs but its volume looks absent; others must not push to it
_ALIVE_STATES = ("starting", "scanning", "receiving", "emitting", "idle", "unmounted")


@dataclass
class Report:
    """What one cycle did. Lists hold file ids; ``failed`` maps ids to rsync exit codes."""

    site: str = ""
    scanned: int = 0
    published: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    trashed: list[str] = field(default_factory=list)  # copies moved to .damas-trash
    folded: list[str] = field(default_factory=list)  # per-file elements folded into packages
    moved: list[tuple[str, str]] = field(default_factory=list)  # renames applied: (old, new)
    received: list[str] = field(default_factory=list)
    emitted: list[str] = field(default_factory=list)
    failed: dict[str, int] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # unsafe ids never handed to rsync
    rsync_calls: int = 0
    files_read: int = 0  # file elements the view read from the change feed this cycle
    scan_errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


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


class Agent:
    """The sync agent of the volume ``volume_id``.

    Options: ``root`` (this site's directory, default the url's path), ``settle``
    (seconds a new file must stay still before it is published; default the
    volume's ``settleTime`` or 2), ``ssh_command`` (the ssh program and options
    used to reach ``ssh://`` volumes, e.g. ``["ssh", "-i", key]``, before the options
    built from the volume's ``ssh_*`` keys; its operator's, so never read from the
    tracker), ``rsync`` (the
    rsync program), ``progress`` (rich progress bars; default when stderr is a TTY),
    ``full_scan_every`` (seconds; see below), ``walker`` (how the volume is listed:
    ``"find"``, GNU find beside the agent so that the tracker writes of a scan overlap
    the listing, ``"scandir"``, or ``"auto"``, the default: find when GNU find is
    installed; see :func:`.tree.walk_parts`), ``state_dir`` (a directory of this
    agent's own: its view of the tracker is kept in ``<state_dir>/view``, and what its
    last scan saw of each file, for renames, in ``<state_dir>/scan``; default none,
    both then live as long as the process; :meth:`close` closes them).

    The agent reads the tracker through its :class:`.view.TrackerView`: every element
    it needs once, then what the change feed reports at each cycle, so an idle cycle
    reads nothing but an empty page of the feed. After a first full comparison, its
    scans compare the files whose size or mtime moved, appeared or went away, those
    whose element changed in the tracker, and those whose element did not match the
    copy here (:meth:`.Scanner.rescan`); every file is compared again at least every
    ``full_scan_every`` seconds (default 600).
    """

    def __init__(
        self,
        tracker: TrackerAPI,
        volume_id: str,
        *,
        root: str | None = None,
        settle: float | None = None,
        ssh_command: Sequence[str] | None = None,
        rsync: str = "rsync",
        progress: bool | None = None,
        full_scan_every: float = 600.0,
        walker: str = "auto",
        state_dir: str | None = None,
    ) -> None:
        self.tracker: TrackerAPI = tracker
        self.volume_id = volume_id
        vol = volume(tracker, volume_id)
        self.site: str = vol["name"]
        #: this site's files: every look and effect on them goes through it
        self.storage: Site = LocalSite(root or local_root(vol), walker=walker)
        self.root = self.storage.root
        settle = settle if settle is not None else vol.get("settleTime", 2.0)
        self.state_dir = state_dir
        self.view = TrackerView(tracker, os.path.join(state_dir, "view") if state_dir else None)
        self.scanner = Scanner(
            self.site,
            self.storage,
            settle=float(settle),
            full_every=float(full_scan_every),
            untracked=self.view.gone,
            last_scan=LastScan(os.path.join(state_dir, "scan") if state_dir else None),
        )
        self.ssh_command = list(ssh_command) if ssh_command else None
        self.rsync = rsync
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.start_time = now_ms()
        self._stop = threading.Event()
        self._candidate_ids: set[str] = set()
        self._candidates_key: tuple[Any, ...] | None = None

    def close(self) -> None:
        """Save the view and close what the state directory holds (the view, the last
        scan), so that another agent may open it in this process."""
        self.view.close()
        self.scanner.last_scan.close()

    # -- the loop ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to stop after the current step."""
        self._stop.set()

    def run(self, *, max_cycles: int | None = None) -> None:
        """Run cycles until stopped (SIGTERM/SIGINT or :meth:`stop`), then mark the volume stopped."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, lambda *_: self.stop())
        cycles = 0
        try:
            self._status("starting", agentStartTime=self.start_time, agentVersion=AGENT_VERSION)
            while not self._stop.is_set():
                try:
                    self.run_once()
                except Exception as e:
                    log.exception("sync cycle of %s failed", self.site)
                    self._status("error", stderr_scan=f"{type(e).__name__}: {e}"[:2000])
                cycles += 1
                if max_cycles is not None and cycles >= max_cycles:
                    break
                sleep = float(self._settings().get("sleepBetweenScans", 60))
                self._stop.wait(sleep)
        finally:
            self._status("stopped")
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # -- one cycle -------------------------------------------------------------------------

    def run_once(self) -> Report:
        """One cycle, as a pipeline: refresh the view, scan (and write what the scan
        found), plan, transfer, and record the outcomes. Returns what it did.

        The volume's status keys of each step are written with the next status (one
        write per phase: ``scanning``, ``receiving``, ``emitting``, ``idle``)."""
        refreshed = self.view.refresh()
        if refreshed.full:
            self.scanner.forget()  # what it remembered was compared with another view
        state = self.scanner.state
        for file_id in refreshed.unheld:
            look = state.looks.get(file_id) if state is not None else None
            if look is not None:  # deleted before the view took it in: untracked too
                self.view.untrack(file_id, {"file_size": look[0], "file_mtime": mtime_ms(look[1])})
        vol = checked_volume(self.view.volume(self.volume_id), self.volume_id)
        report = Report(site=self.site)
        report.files_read = sum(1 for i in refreshed.ids if i[:1] == "/")
        problem, pending = self.storage.presence(vol)
        if problem is not None:
            log.error("%s: %s", self.site, problem)
            report.scan_errors = [problem]
            self._status("unmounted", last_scan=now_ms(), exit_scan=1, stderr_scan=problem)
            return report
        transfers = not (
            vol.get("enableReception", True) is False and vol.get("enableEmission", True) is False
        )
        if vol.get("enableScans", True) and vol.get("enableDiscovery", True):
            self._status("scanning", **pending)
            pending = self._scan(vol, report, refreshed.ids, transfers=transfers)
        if not self._stop.is_set():
            pending.update(self._apply_deletions(report))
        if self._stop.is_set() or not transfers:
            self._status("idle", **pending)
            return report
        the_plan = self._plan(vol, report)
        by_name = {v["name"]: v for v in self.view.volumes()}
        params = self.view.parameters()
        for phase, tasks in (
            ("receiving", the_plan.receptions),
            ("emitting", the_plan.emissions),
        ):
            if not tasks or self._stop.is_set():
                continue
            self._status(phase, **pending)
            pending = self._transfer(the_plan, tasks, by_name, vol, params, report)
        self._status("idle", **pending)
        return report

    def _apply_deletions(self, report: Report) -> dict[str, Any]:
        """Apply the deletions recorded at other origins to this site's copies, when
        ``propagateDeletions`` is on (:mod:`.deletions`: quarantine and brakes); returns
        the volume keys that record it (``exit_delete``, ``stderr_delete``)."""
        settings = self._settings()
        files = self.view.files
        now = now_ms()
        storage = self.storage
        storage.purge(
            float(settings["trashRetention"]), datetime.fromtimestamp(now / 1000, UTC).date()
        )
        deleted = sorted(self.view.deleted)
        moves = deletions.to_move(files, self.site, settings, deleted)
        moved = self._guarded(
            ((a, partial(deletions.move, storage, a, b, files, self.site, now)) for a, b in moves),
            report,
        )
        moved = [o for o in moved if o.status == MOVED]
        report.moved.extend((o.file_id, str(o.incoming)) for o in moved)
        self._apply(record(moved, files))
        done = {o.file_id for o in moved}
        ids = [i for i in deletions.to_remove(files, self.site, settings, deleted) if i not in done]
        refused = deletions.brake(ids, files, self.site, settings)
        if refused is not None:
            log.error("%s: %s", self.site, refused)
            report.scan_errors.append(refused)
            return {"exit_delete": 1, "stderr_delete": refused}
        outcomes = self._guarded(
            (
                (i, partial(deletions.move_to_trash, storage, i, files[i], self.site, now))
                for i in ids
            ),
            report,
        )
        trashed = [o for o in outcomes if o.status == TRASHED]
        report.trashed.extend(o.file_id for o in trashed)
        self._apply(record(trashed, files))
        return {"exit_delete": 0, "stderr_delete": ""} if ids else {}

    def _guarded(
        self, steps: Iterable[tuple[str, Callable[[], Outcome]]], report: Report
    ) -> list[Outcome]:
        """The outcome of each step, ``(file id, step)``; a step the site's guard refuses
        (:class:`.site.Refused`: nothing was touched) is reported, not recorded."""
        out = []
        for file_id, step in steps:
            try:
                out.append(step())
            except Refused as e:
                log.error("%s: %s", self.site, e)
                report.refused[file_id] = str(e)
        return out

    def _candidates(self, vol: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The files the plan may give work (:func:`.planner.may_have_work`), kept from
        cycle to cycle: only the elements that changed since are tested again, unless
        the sites or the settings the test reads changed (then every file is)."""
        files = self.view.files
        names = tuple(v["name"] for v in self.view.volumes())
        params = self.view.parameters()
        settings = {**params, **{k: v for k, v in vol.items() if k in DEFAULTS}}
        key = (names, settings.get("syncEverywhere"))
        touched = self.view.take_touched()
        if key != self._candidates_key:
            self._candidates_key = key
            self._candidate_ids = set()
            touched = set(files)
        ids = self._candidate_ids
        for i in touched:
            el = files.get(i)
            if el is not None and may_have_work(el, self.site, names, settings):
                ids.add(i)
            else:
                ids.discard(i)
        return {i: files[i] for i in ids}

    def _plan(self, vol: Mapping[str, Any], report: Report) -> Plan:
        """This cycle's transfers, from the view as the scan left it (the files that may
        have work); the reasons files wait are recorded on them."""
        files, vols = self._candidates(vol), self.view.volumes()
        params = self.view.parameters()
        now = now_ms()
        the_plan = plan(
            files,
            self.site,
            vols,
            params,
            now=now,
            alive=self._alive(vols, params, now),
            lock_sites=self._lock_sites(files),
            exists=self._exists,
            volume=vol,
        )
        self._record_waiting(the_plan, files, report)
        return the_plan

    def _exists(self, file_id: str) -> bool:
        """True when a copy of ``file_id`` is here (an id the guard refuses has none)."""
        return self.storage.refusal(file_id) is None and self.storage.look(file_id) is not None

    # -- scan ----------------------------------------------------------------------------------

    def _scan(
        self, vol: Mapping[str, Any], report: Report, changed: set[str], *, transfers: bool
    ) -> dict[str, Any]:
        """Scan and write what changed; ``changed``: the ids whose element changed in
        the tracker since the last scan (compared again, see :meth:`.Scanner.rescan`).
        Returns the volume keys that record the scan (written with the next status);
        a scan that fails writes them at once, then raises."""
        started = time.monotonic()
        exit_code = 0
        scanner = self.scanner
        written = _ScanWrites(self.tracker, self.view, self.site, report, keep_published=transfers)
        files = self.view.files
        try:
            with written:
                changes = scanner.rescan(
                    vol,
                    lambda ids: {i: files[i] for i in ids if i in files},
                    second_look=True,
                    changed=changed,
                )
                if changes is None:
                    # find lists the tree while the tracker is read, and what the walk
                    # finds is written while it goes on
                    with _Progress(self.progress, None, f"scanning {self.site}") as shown:

                        def on_part(so_far: ScanChanges) -> None:
                            written.some(so_far)
                            shown.describe(
                                f"scanning {self.site}: {len(so_far.tree):,} files seen, "
                                f"{len(report.published):,} published"
                            )

                        changes = scanner.compare(vol, files, second_look=True, on_part=on_part)
                written.all(changes)
            report.scanned = changes.seen
            report.pending = changes.pending
            report.conflicts.extend(changes.conflicts)
            report.scan_errors = changes.errors
            scanner.remember(changes, report.published, written.updated)
            if changes.errors:
                exit_code = 1
        except Exception as e:
            scanner.forget()
            self._update_volume(
                last_scan=now_ms(),
                scan_duration=int((time.monotonic() - started) * 1000),
                exit_scan=2,
                stderr_scan=f"{type(e).__name__}: {e}"[:2000],
            )
            raise
        return {
            "last_scan": now_ms(),
            "scan_duration": int((time.monotonic() - started) * 1000),
            "exit_scan": exit_code,
            "stderr_scan": "\n".join(changes.errors)[:2000],
        }

    # -- plan inputs -----------------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        params = self.view.parameters()
        vol = self.view.volume(self.volume_id) or {}
        return {**params, **{k: v for k, v in vol.items() if k in params}}

    def _alive(self, vols: list[dict[str, Any]], params: Mapping[str, Any], now: int) -> list[str]:
        timeout_ms = float(params.get("agentTimeout", 300)) * 1000
        out = []
        for v in vols:
            last = v.get("lastConnection") or 0
            if v.get("agentStatus") in _ALIVE_STATES and now - last <= timeout_ms:
                out.append(v["name"])
        out.append(self.site)
        return out

    def _lock_sites(self, files: Mapping[str, Mapping[str, Any]]) -> dict[str, str | None]:
        holders = {el["lock"] for el in files.values() if isinstance(el.get("lock"), str)}
        users = read_many(self.tracker, [f"@{h.lstrip('@')}" for h in holders]) if holders else {}
        return {h: (users.get(f"@{h.lstrip('@')}") or {}).get("site") for h in holders}

    def _record_waiting(
        self, the_plan: Plan, files: Mapping[str, Mapping[str, Any]], report: Report
    ) -> None:
        patches = []
        for (file_id, site), reason in the_plan.waiting.items():
            if site == self.site:
                report.waiting[file_id] = reason
            el = files.get(file_id) or {}
            if el.get(site_keys(site).wait) != reason:
                patches.append({"_id": file_id, site_keys(site).wait: reason})
        # a reason that no longer holds is cleared
        key = site_keys(self.site).wait
        for file_id, el in files.items():
            if key in el and (file_id, self.site) not in the_plan.waiting:
                patches.append({"_id": file_id, key: None})
        if patches:
            self.view.put(self.tracker.update(patches))

    # -- transfer -------------------------------------------------------------------------

    def _rsync_options(
        self, own: Mapping[str, Any], other: Mapping[str, Any], params: Mapping[str, Any]
    ) -> dict[str, Any]:
        return transfer_options(params, own, other, rsync=self.rsync, ssh_program=self.ssh_command)

    def _side(self, name: str, vol: Mapping[str, Any]) -> tuple[rs.Endpoint, Site | None]:
        """The rsync side of the site ``name`` and, when its files are on this machine,
        its :class:`.site.Site` (whose guard then checks each path there)."""
        if name == self.site:
            return self.storage.endpoint(), self.storage
        endpoint = endpoint_of(vol)
        return endpoint, LocalSite(endpoint.root) if endpoint.is_local else None

    def _safe(self, ids: list[str], sites: Sequence[Site | None], report: Report) -> dict[str, str]:
        """The relpaths of those of ``ids`` every side's guard accepts (an ssh side:
        the id rule alone), by id; the others go to ``report.refused``."""
        kept: dict[str, str] = {}
        for file_id in ids:
            reason = id_refusal(file_id)
            if reason is None:
                kept[file_id] = file_id[1:]
            else:
                report.refused[file_id] = reason
        for site in sites:
            if site is not None and kept:
                accepted, refused = site.files_from(list(kept))
                report.refused.update(refused)
                kept = dict(accepted)
        return kept

    def _transfer(
        self,
        the_plan: Plan,
        tasks: list[Task],
        by_name: Mapping[str, Mapping[str, Any]],
        own: Mapping[str, Any],
        params: Mapping[str, Any],
        report: Report,
    ) -> dict[str, Any]:
        """Run the buckets of ``tasks`` (all receptions or all emissions), recording the
        outcomes of each bucket once it is done; returns the volume keys that record the
        transfer (``last_<kind>``, ``<kind>_duration`` in ms, ``exit_<kind>``,
        ``stderr_<kind>``), written with the next status."""
        kind = "reception" if tasks[0].target == self.site else "emission"
        started = time.monotonic()
        last_rc = 0
        stderr = []
        buckets = the_plan.buckets(tasks)
        progress = _Progress(self.progress, sum(len(b) for b in buckets), kind)
        with progress:
            for bucket in buckets:
                if self._stop.is_set():
                    break
                first = bucket[0]
                src_vol, dst_vol = by_name[first.source], by_name[first.target]
                other = dst_vol if first.source == self.site else src_vol
                try:
                    src = self._side(first.source, src_vol)
                    dst = self._side(first.target, dst_vol)
                    options = self._rsync_options(own, other, params)
                except BadRequest as e:
                    # a volume asks rsync or ssh for what the engine refuses: that
                    # bucket waits, the others go on, and the volume says why
                    log.error("%s: %s", self.site, e)
                    progress.advance(len(bucket))
                    last_rc = 1  # rsync's own code for a usage error
                    stderr.append(str(e))
                    continue
                rc, err, found = self._run_bucket(bucket, src, dst, options, report)
                _summarize(found, kind, report)
                self._apply(record(found, self.view.files))
                progress.advance(len(bucket))
                if rc:
                    last_rc = rc
                    stderr.append(err.strip())
        return {
            f"last_{kind}": now_ms(),
            f"{kind}_duration": int((time.monotonic() - started) * 1000),
            f"exit_{kind}": last_rc,
            f"stderr_{kind}": "\n".join(s for s in stderr if s)[-2000:],
        }

    def _run_bucket(
        self,
        bucket: list[Task],
        src_side: tuple[rs.Endpoint, Site | None],
        dst_side: tuple[rs.Endpoint, Site | None],
        options: Mapping[str, Any],
        report: Report,
    ) -> tuple[int, str, list[Outcome]]:
        """One rsync call for ``bucket`` (one source, target and priority), then a look
        at each copy; returns rsync's code and stderr, and each file's outcome. A local
        copy changed here since its baseline is not overwritten: the incoming copy is
        fetched beside it (:meth:`_keep_both`). The volume records the bucket as running
        (``transferring``, :mod:`.transferring`) before rsync starts: one write per
        bucket, removed by the next status."""
        (src, src_site), (dst, dst_site) = src_side, dst_side
        source, target = bucket[0].source, bucket[0].target
        files = self.view.files
        normal: list[tuple[str, str]] = []
        conflicts: list[tuple[str, str, Look]] = []
        safe = self._safe([t.file_id for t in bucket], (src_site, dst_site), report)
        for file_id, rel in safe.items():
            if target == self.site:
                local = self.storage.look(file_id)
                el = files[file_id]
                if (
                    local is not None
                    and not look_matches(local, el)
                    and changed_here(local[1], el, target)
                ):
                    conflicts.append((file_id, rel, local))
                    continue
            normal.append((file_id, rel))
        if normal or conflicts:
            ids = [i for i, _ in normal] + [i for i, _, _ in conflicts]
            self._update_volume(transferring=bucket_record(target, ids, now_ms()))
        checked = list(options["extra_args"])  # the options a copy is checked with
        extra = list(checked)
        if target != self.site:
            # a site whose agent is down only gets copies it lacks: nothing there is overwritten
            extra.append("--ignore-existing")
        rc, err = 0, ""
        outcomes: list[Outcome] = []
        if normal:
            rels = [r for _, r in normal]
            result = rs.transfer(src, dst, rels, **{**options, "extra_args": extra})
            report.rsync_calls += 1
            rc, err = result.returncode, result.stderr
            remote_diff: set[str] | None = set()
            if dst_site is None:
                # without --ignore-existing: a different copy left there is one that differs
                remote_diff = rs.differing(src, dst, rels, **{**options, "extra_args": checked})
            now = now_ms()
            for file_id, rel in normal:
                if dst_site is not None:
                    copy = dst_site.look(file_id)
                elif (
                    src_site is not None
                    and remote_diff is not None
                    and (rel.rstrip("/") not in remote_diff)
                ):
                    copy = src_site.look(file_id)  # rsync found the copy there the same
                else:
                    copy = None
                name = rel.rstrip("/")
                learned = delivered(
                    copy,
                    files[file_id],
                    partial(src_site.look, file_id) if src_site is not None else None,
                    reported=name in result.missing or name in result.vanished,
                )
                if learned is not None:
                    outcome = Outcome(file_id, source, target, COPIED, now, learned)
                elif rc:
                    outcome = Outcome(
                        file_id, source, target, FAILED, now, code=result.code_for(rel)
                    )
                elif target != self.site:
                    outcome = Outcome(file_id, source, target, LEFT, now)
                else:
                    outcome = Outcome(file_id, source, target, STALE, now)
                outcomes.append(outcome)
        for file_id, _rel, local in conflicts:
            outcomes.append(self._keep_both(file_id, local, source, src, options, report))
        return rc, err, outcomes

    def _keep_both(
        self,
        file_id: str,
        local: Look,
        source: str,
        src: rs.Endpoint,
        options: Mapping[str, Any],
        report: Report,
    ) -> Outcome:
        """Fetch the incoming copy under a conflict name next to ours (with the same
        rsync options as any copy), through the site (:meth:`.site.Site.keep_both`); its
        outcome is the conflict."""
        now = now_ms()
        incoming: str | None = conflict_name(file_id, source, now)
        assert incoming is not None

        def fetch(staging: rs.Endpoint, rel: str) -> bool:
            report.rsync_calls += 1
            return rs.transfer(src, staging, [rel], **options).returncode == 0

        try:
            if not self.storage.keep_both(file_id, incoming, fetch):
                incoming = None
        except Refused as e:
            report.refused[file_id] = str(e)
            incoming = None
        log.warning("conflict on %s at %s: both copies kept (%s)", file_id, self.site, incoming)
        return Outcome(file_id, source, self.site, CONFLICT, now, incoming=incoming, local=local)

    # -- writes ---------------------------------------------------------------------------

    def _apply(self, patches: list[dict[str, Any]]) -> None:
        """Write ``patches`` in batches; the view takes the tracker's answers."""
        for i in range(0, len(patches), _WRITE_BATCH):
            batch = patches[i : i + _WRITE_BATCH]
            self.view.put(self.tracker.update(batch))

    def _update_volume(self, **keys: Any) -> None:
        now = now_ms()
        keys.update(
            _id=self.volume_id,
            lastConnection=now,
            lastConnectionHost=socket.gethostname(),
            lastConnectionPid=os.getpid(),
        )
        self.view.put([self.tracker.update(keys)])

    def _status(self, status: str, **keys: Any) -> None:
        # a new status ends the bucket the volume recorded as running, if any
        self._update_volume(agentStatus=status, transferring=None, **keys)


def _summarize(outcomes: list[Outcome], kind: str, report: Report) -> None:
    """Add ``outcomes`` to the report: copies, failures, waits and conflicts."""
    copied = report.received if kind == "reception" else report.emitted
    for o in outcomes:
        if o.status == COPIED:
            copied.append(o.file_id)
        elif o.status == FAILED:
            report.failed[o.file_id] = o.code
        elif o.status == LEFT:
            report.waiting[o.file_id] = left_reason(o.target)
        elif o.status == CONFLICT:
            report.conflicts.append(o.file_id)


def delivered(
    copy: Look | None,
    element: Mapping[str, Any],
    source: Callable[[], Look | None] | None = None,
    *,
    reported: bool = False,
) -> dict[str, Any] | None:
    """What a transfer's record learns from the copy at the destination, or ``None``
    when that copy is not the element's version: there is none, or its size or mtime
    is not the one the element records.

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
        return {} if look_matches(copy, element) else None
    if (
        reported
        or (has_size and size != copy[0])
        or (has_mtime and not same_mtime(copy[1], mtime))
        or (source is not None and source() != copy)
    ):
        return None
    learned: dict[str, Any] = {}
    if not has_size:
        learned["file_size"] = copy[0]
    if not has_mtime:
        learned["file_mtime"] = mtime_ms(copy[1])
    return learned


class _ScanWrites:
    """Writes a scan's changes in calls of :data:`_WRITE_BATCH` files, as they come.

    Publish calls go out on threads of their own while the scan goes on (the walk, the
    comparison, the next batch): at most :data:`_IN_FLIGHT` on their way, their answers
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
        self._pool = ThreadPoolExecutor(_IN_FLIGHT, thread_name_prefix=f"publish-{site}")
        self._sent: deque[Future[list[Any]]] = deque()  # the publish calls on their way

    def __enter__(self) -> _ScanWrites:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)  # a failed scan drops the answers: the feed has them

    def some(self, changes: ScanChanges) -> None:
        """Write the full batches among the changes not written yet (the first one as
        soon as :data:`_FIRST_BATCH` files wait: the tracker starts while find lists)."""
        self._write(changes, _WRITE_BATCH if self.published or self.patched else _FIRST_BATCH)

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
        for i in range(0, len(moved), _WRITE_BATCH):
            self.tracker.update(moved[i : i + _WRITE_BATCH])
        ids = [i for folded in fold.values() for i in folded]
        for i in range(0, len(ids), _WRITE_BATCH):
            self.tracker.delete(ids[i : i + _WRITE_BATCH])
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
            batch = changes.publish[self.published : self.published + _WRITE_BATCH]
            self.published += len(batch)
            # in id order (a walk lists names in no order): the store writes each
            # B-tree page once instead of coming back to it
            batch.sort(key=id_of)
            self._take_published(_IN_FLIGHT - 1)
            self._sent.append(self._pool.submit(self.tracker.publish, batch))
        if len(changes.update) - self.patched >= least:
            self._take_published()  # the updates go out after every publish before them
        while len(changes.update) - self.patched >= least:
            batch = changes.update[self.patched : self.patched + _WRITE_BATCH]
            self.patched += len(batch)
            history = []
            for patch, el in zip(batch, self.tracker.update(batch)):
                self.updated[patch["_id"]] = el
                if el is None:
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


class _Progress:
    """A rich progress bar on a terminal, nothing otherwise (``total`` ``None``: work
    of unknown size, shown by what :meth:`describe` says)."""

    def __init__(self, enabled: bool, total: int | None, what: str) -> None:
        self.enabled = enabled and (total is None or total > 0)
        self.total = total
        self.what = what
        self._progress: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import Progress, TextColumn

            # the description is text, never read as rich markup
            plain = TextColumn("{task.description}", markup=False, style="progress.description")
            self._progress = Progress(plain, *Progress.get_default_columns()[1:], transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self.what, total=self.total)
        return self

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def describe(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


__all__ = ["AGENT_VERSION", "Agent", "Report", "conflict_name", "delivered"]
