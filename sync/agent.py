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
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

from damas_core.errors import BadRequest

from . import copies, deletions, scan_writes
from .copies import Side, conflict_name, delivered
from .eta import Moved
from .last_scan import LastScan
from .planner import Plan, Task, may_have_work, plan
from .progress import Progress
from .record import (
    MOVED,
    TRASHED,
    Outcome,
    record,
)
from .report import Report, summarize
from .rsync_options import transfer_options
from .scan_writes import ScanWrites
from .scanner import (
    ScanChanges,
    Scanner,
    mtime_ms,
    now_ms,
)
from .site import Refused, Site, local_site
from .state import site_keys
from .state_dir import store_dir
from .tracker_api import TrackerAPI
from .transferring import bucket_record
from .view import TrackerView
from .volumes import (
    DEFAULTS,
    checked_volume,
    read_many,
    volume,
)

log = logging.getLogger(__name__)

try:
    from importlib.metadata import version as _pkg_version

    AGENT_VERSION = _pkg_version("damas-core")
except Exception:  # pragma: no cover - running from a source tree without metadata
    AGENT_VERSION = "0"

# "unmounted": the agent runs but its volume looks absent; others must not push to it
_ALIVE_STATES = ("starting", "scanning", "receiving", "emitting", "idle", "unmounted")


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
    both then live as long as the process; :meth:`close` closes them; it must be the
    agent's own: :mod:`.state_dir`), ``site`` (the :class:`.site.Site` of the volume's
    files, for a caller that reaches them its own way; default
    :func:`.site.local_site`, which refuses a volume driven by a hub and an ``ssh://``
    volume of another host unless ``root`` is given).

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
        site: Site | None = None,
    ) -> None:
        self.tracker: TrackerAPI = tracker
        self.volume_id = volume_id
        vol = volume(tracker, volume_id)
        self.site: str = vol["name"]
        #: this site's files: every look and effect on them goes through it
        self.storage: Site = site or local_site(vol, root=root, walker=walker)
        self.root = self.storage.root
        settle = settle if settle is not None else vol.get("settleTime", 2.0)
        self.state_dir = state_dir
        self.view = TrackerView(tracker, store_dir(state_dir, "view") if state_dir else None)
        self.scanner = Scanner(
            self.site,
            self.storage,
            settle=float(settle),
            full_every=float(full_scan_every),
            untracked=self.view.gone,
            last_scan=LastScan(store_dir(state_dir, "scan") if state_dir else None),
        )
        self.ssh_command = list(ssh_command) if ssh_command else None
        self.rsync = rsync
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.start_time = now_ms()
        self._stop = threading.Event()
        self._candidate_ids: set[str] = set()
        self._candidates_key: tuple[Any, ...] | None = None
        self._announced = False  # the holder keys written (_update_volume)
        self._purged: date | None = None  # the day the quarantine was last purged

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
        pending.update(self._measures(vol))
        transfers = not (
            vol.get("enableReception", True) is False and vol.get("enableEmission", True) is False
        )
        if vol.get("enableScans", True) and vol.get("enableDiscovery", True):
            pending = self._scan(vol, report, refreshed.ids, transfers=transfers, pending=pending)
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

    def _measures(self, vol: Mapping[str, Any]) -> dict[str, Any]:
        """The volume keys that describe the site's storage, written with the next
        status: its capacity (``bytesTotal``, ``bytesUsed``, ``bytesRemaining``: each
        cycle) and its listing's ``mtimePrecision`` (ns; when it changes)."""
        keys: dict[str, Any] = dict(self.storage.capacity() or {})
        if vol.get("mtimePrecision") != self.storage.precision_ns:
            keys["mtimePrecision"] = self.storage.precision_ns
        return keys

    def _apply_deletions(self, report: Report) -> dict[str, Any]:
        """Apply the deletions recorded at other origins to this site's copies, when
        ``propagateDeletions`` is on (:mod:`.deletions`: quarantine and brakes); returns
        the volume keys that record it (``exit_delete``, ``stderr_delete``)."""
        settings = self._settings()
        files = self.view.files
        now = now_ms()
        storage = self.storage
        today = datetime.fromtimestamp(now / 1000, UTC).date()
        if self._purged != today:
            # quarantine is kept in day folders: once a day is enough (over ssh, each
            # purge is a round trip)
            storage.purge(float(settings["trashRetention"]), today)
            self._purged = today
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
        try:
            return self.storage.look(file_id) is not None
        except Refused:
            return False

    # -- scan ----------------------------------------------------------------------------------

    def _scan(
        self,
        vol: Mapping[str, Any],
        report: Report,
        changed: set[str],
        *,
        transfers: bool,
        pending: dict[str, Any],
    ) -> dict[str, Any]:
        """Scan and write what changed; ``changed``: the ids whose element changed in
        the tracker since the last scan (compared again, see :meth:`.Scanner.rescan`).
        Returns the volume keys that record the scan, with ``pending`` (the volume keys
        of the cycle so far), to write with the next status: the volume says
        ``scanning`` (with ``pending``) only for a scan that compares every file or
        has something to write, not for each quick rescan of an idle cycle. A scan that
        fails writes its keys at once, then raises."""
        started = time.monotonic()
        exit_code = 0
        scanner = self.scanner
        written = ScanWrites(self.tracker, self.view, self.site, report, keep_published=transfers)
        files = self.view.files
        said: dict[str, Any] = dict(pending)  # the keys not written yet

        def scanning() -> None:
            self._status("scanning", **said)
            said.clear()

        try:
            with written:
                changes = scanner.rescan(
                    vol,
                    lambda ids: {i: files[i] for i in ids if i in files},
                    second_look=True,
                    changed=changed,
                )
                if changes is None:
                    scanning()
                    # find lists the tree while the tracker is read, and what the walk
                    # finds is written while it goes on
                    with Progress(self.progress, None, f"scanning {self.site}") as shown:

                        def on_part(so_far: ScanChanges) -> None:
                            written.some(so_far)
                            shown.describe(
                                f"scanning {self.site}: {len(so_far.tree):,} files seen, "
                                f"{len(report.published):,} published"
                            )

                        changes = scanner.compare(vol, files, second_look=True, on_part=on_part)
                elif changes or changes.fold:
                    scanning()
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
                **said,
                last_scan=now_ms(),
                scan_duration=int((time.monotonic() - started) * 1000),
                exit_scan=2,
                stderr_scan=f"{type(e).__name__}: {e}"[:2000],
            )
            raise
        return {
            **said,
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
        progress = Progress(self.progress, sum(len(b) for b in buckets), kind)
        moved = Moved()  # bytes and seconds of the buckets: the site's throughput (.eta)
        with progress:
            for bucket in buckets:
                if self._stop.is_set():
                    break
                first = bucket[0]
                src_vol, dst_vol = by_name[first.source], by_name[first.target]
                other = dst_vol if first.source == self.site else src_vol
                try:
                    src = copies.side_of(first.source, src_vol, self.storage, self.site)
                    dst = copies.side_of(first.target, dst_vol, self.storage, self.site)
                    options = self._rsync_options(own, other, params)
                except BadRequest as e:
                    # a volume asks rsync or ssh for what the engine refuses: that
                    # bucket waits, the others go on, and the volume says why
                    log.error("%s: %s", self.site, e)
                    progress.advance(len(bucket))
                    last_rc = 1  # rsync's own code for a usage error
                    stderr.append(str(e))
                    continue
                bucket_started = time.monotonic()
                rc, err, found = self._run_bucket(bucket, src, dst, options, report)
                moved.add(found, self.view.files, time.monotonic() - bucket_started)
                summarize(found, kind, report)
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
            **moved.keys(kind, own),
        }

    def _run_bucket(
        self,
        bucket: list[Task],
        src: Side,
        dst: Side,
        options: Mapping[str, Any],
        report: Report,
    ) -> tuple[int, str, list[Outcome]]:
        """One bucket (one source, target and priority), as :mod:`.copies` runs it: the
        paths every side's guard accepts, the conflicts set apart (a copy here changed
        since its baseline is never overwritten: both are kept), one rsync call and a
        look at each copy; returns rsync's code and stderr, and each file's outcome. The
        volume records the bucket as running (``transferring``, :mod:`.transferring`)
        before rsync starts: one write per bucket, removed by the next status."""
        files = self.view.files
        safe = copies.safe_paths([t.file_id for t in bucket], (src, dst), report.refused)
        if dst.name == self.site:
            normal, conflicts = copies.split_conflicts(safe, files, self.storage, self.site)
        else:
            normal, conflicts = list(safe.items()), []
        if normal or conflicts:
            ids = [i for i, _ in normal] + [i for i, _, _ in conflicts]
            self._update_volume(transferring=bucket_record(dst.name, ids, now_ms()))
        rc, err, outcomes = copies.copy(
            normal, src, dst, options, files, here=self.site, report=report
        )
        for file_id, _rel, local in conflicts:
            outcomes.append(
                copies.keep_both(
                    file_id, local, src, options, self.storage, here=self.site, report=report
                )
            )
        return rc, err, outcomes

    # -- writes ---------------------------------------------------------------------------

    def _apply(self, patches: list[dict[str, Any]]) -> None:
        """Write ``patches`` in batches; the view takes the tracker's answers."""
        for i in range(0, len(patches), scan_writes.WRITE_BATCH):
            batch = patches[i : i + scan_writes.WRITE_BATCH]
            self.view.put(self.tracker.update(batch))

    def _update_volume(self, **keys: Any) -> None:
        keys.update(_id=self.volume_id, lastConnection=now_ms())
        if not self._announced:
            # Who holds the volume is written once: a later status write naming this
            # process again would undo a takeover written meanwhile, and the agent
            # taken over would never see it (sync.service checks the holder keys).
            keys.update(lastConnectionHost=socket.gethostname(), lastConnectionPid=os.getpid())
        self.view.put([self.tracker.update(keys)])
        self._announced = True

    def _status(self, status: str, **keys: Any) -> None:
        # a new status ends the bucket the volume recorded as running, if any
        self._update_volume(agentStatus=status, transferring=None, **keys)


# conflict_name and delivered live in .copies, Report in .report: named here as before
__all__ = ["AGENT_VERSION", "Agent", "Report", "conflict_name", "delivered"]
