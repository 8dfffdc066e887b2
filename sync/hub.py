"""Storages driven by a hub: their agents, run at the hub, and the relay through it.

A storage runs nothing of ours (sshd and rsync, see :mod:`.ssh_site`). Its volume
names the hub's own volume in ``hub``; at the hub, a :class:`StorageAgent` per storage
(run by :class:`.hub_run.Hub`) does what an agent does at its site, over ssh:

- it **connects** first (:meth:`.SshSite.probe`) and records the connection on the
  storage's volume (``lastConnectionAttempt``, ``lastConnectionSuccess``,
  ``lastConnectionStatusChange``, ``connectionStatus``, ``error``,
  ``stderr_connection``; an activity event at each change). While the storage is not
  ``ok`` nothing else is attempted; it is probed again with back-off, and once back
  the per-file back-off of the ssh failures (255) is cleared;
- it **scans** the storage with one streamed listing (the one :class:`.scanner.Scanner`, through the SshSite: GNU
  find over ssh, else ``rsync --list-only``), publishing and updating its files as a
  local scan does (include/exclude rules, the settle gate, deletions and renames
  recorded). The listing's precision is recorded as ``mtimePrecision`` (ns);
- it **relays** through the hub's volume, the local side of every transfer: *up*,
  files the storage holds that the hub lacks and the hub or another of its storages
  wants (storage -> hub, recorded ``synced_<hub>``); *down*, files the storage should
  hold that the hub holds (hub -> storage, recorded ``synced_<storage>`` once rsync
  finds the copy there the same). The hub's copies are real copies; a copy pulled
  from a storage whose listing is in seconds takes the element's mtime exactly, so
  that no precision difference ever looks like a change.

The hub volume's own agent is a :class:`HubAgent`: an ordinary agent that leaves the
pulls from its storages to their agents.

>>> StorageAgent.__mro__[1].__name__
'Agent'
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

from damas_core.errors import BadRequest

from . import activity, copies
from . import rsync as rs
from .agent import Agent
from .planner import Plan, Task, holders, ordered, retry_state, wanted
from .record import CONFLICT, COPIED, FAILED, Outcome, record
from .report import Report, summarize
from .rsync_options import transfer_options
from .scanner import now_ms
from .site import LocalSite
from .ssh_site import OK, SSH_FAILED, STDERR_MAX, Connection, SshSite, shared_connection
from .state import changed_here, look_matches, site_keys, writer_of
from .tree import Look
from .volumes import checked_volume, local_root

log = logging.getLogger(__name__)

#: the connection keys a storage's agent writes on its volume
CONNECTION_KEYS = (
    "lastConnectionAttempt",
    "lastConnectionSuccess",
    "lastConnectionStatusChange",
    "connectionStatus",
    "error",
    "stderr_connection",
)
#: what is off on a storage that allows only rsync (rrsync): no shell, no find, no df
RSYNC_ONLY_OFF = ("deletions", "renames", "quarantine", "conflicts", "capacity")
#: the capacity keys (``df -P`` over ssh, ``statvfs`` locally)
CAPACITY_KEYS = ("bytesTotal", "bytesUsed", "bytesRemaining")


class StorageAgent(Agent):
    """The agent of the storage ``volume_id``, run at the hub whose volume is
    ``hub_volume_id`` (see the module). ``ssh_command``: the hub's ssh program and
    options (the hub's key, say); the volume's ``ssh_*`` keys are added to it."""

    def __init__(
        self,
        tracker: Any,
        volume_id: str,
        hub_volume_id: str,
        *,
        ssh_command: Sequence[str] | None = None,
        rsync: str = "rsync",
        settle: float | None = None,
        full_scan_every: float = 600.0,
        state_dir: str | None = None,
        probe_base: float = 1.0,
        probe_cap: float = 300.0,
    ) -> None:
        vol = tracker.read(volume_id)
        # one connection per storage, shared by the listing, the checks and rsync
        base = state_dir or tempfile.mkdtemp(prefix="damas-hub-")
        shared, made = shared_connection(base)
        self._control_dir = made if state_dir else base  # removed by close()
        ssh_command = [*(ssh_command or ["ssh"]), *shared]
        remote = SshSite(vol or {}, ssh_command=ssh_command, rsync=rsync)
        super().__init__(
            tracker,
            volume_id,
            site=remote,  # nothing of the storage is on this machine
            settle=settle,
            ssh_command=ssh_command,
            rsync=rsync,
            progress=False,
            full_scan_every=full_scan_every,
            walker="scandir",
            state_dir=state_dir,
        )
        self.hub_volume_id = hub_volume_id
        self.remote = remote
        self.connection: Connection | None = None
        self.probe_base, self.probe_cap = probe_base, probe_cap
        self._probe_failures = 0
        self._next_probe = 0.0

    def close(self) -> None:
        """Close the view and the last scan, and end the shared ssh connection."""
        try:
            super().close()
        finally:
            self.remote.close()
            if self._control_dir is not None:
                shutil.rmtree(self._control_dir, ignore_errors=True)

    # -- one cycle ---------------------------------------------------------------------------

    def run_once(self) -> Report:
        """One cycle: connect (and record it), scan the storage over ssh, relay through
        the hub (up, then down); returns what it did."""
        refreshed = self.view.refresh()
        if refreshed.full:
            self.scanner.forget()
        vol = checked_volume(self.view.volume(self.volume_id), self.volume_id)
        hub = checked_volume(self.view.volume(self.hub_volume_id), self.hub_volume_id)
        self.remote.volume = vol
        report = Report(site=self.site)
        report.files_read = sum(1 for i in refreshed.ids if i[:1] == "/")
        conn, pending = self._connect(vol)
        if conn is None or conn.status != OK:
            why = "waiting to probe again" if conn is None else f"{conn.status}: {conn.stderr}"
            report.scan_errors = [f"{self.site}: not connected ({why.strip()})"]
            self._status("idle", **pending)
            return report
        transfers = not (
            vol.get("enableReception", True) is False and vol.get("enableEmission", True) is False
        )
        if vol.get("enableScans", True) and vol.get("enableDiscovery", True):
            pending = self._scan(vol, report, refreshed.ids, transfers=transfers, pending=pending)
            pending["mtimePrecision"] = self.remote.precision_ns
        if self.remote.kind == "find" and not self._stop.is_set():
            # deletions and renames at other origins, through the remote guard
            pending.update(self._apply_deletions(report))
        if transfers and not self._stop.is_set():
            pending.update(self._relay(vol, hub, report))
        self._status("idle", **pending)
        return report

    # -- the connection ----------------------------------------------------------------------

    def _connect(self, vol: Mapping[str, Any]) -> tuple[Connection | None, dict[str, Any]]:
        """Probe the storage (unless its back-off runs) and the volume keys recording it."""
        waiting = self.connection is not None and self.connection.status != OK
        if waiting and time.monotonic() < self._next_probe:
            return None, {}
        conn = self.remote.probe()
        now = now_ms()
        keys: dict[str, Any] = {
            "lastConnectionAttempt": now,
            "connectionStatus": conn.status,
            "error": conn.code,
            "stderr_connection": conn.stderr[-STDERR_MAX:],
        }
        before = vol.get("connectionStatus")
        if conn.status == OK:
            keys["lastConnectionSuccess"] = now
            keys["storageKind"] = conn.kind
            # what the engine cannot do on a storage that allows only rsync
            keys["featuresOff"] = [] if conn.kind == "find" else list(RSYNC_ONLY_OFF)
            self.remote.kind = vol.get("ssh_listing") or conn.kind
            self._probe_failures = 0
            capacity = self.remote.capacity()
            if capacity is not None:
                keys.update(capacity)
        else:
            self._probe_failures += 1
            wait = min(self.probe_base * 2 ** (self._probe_failures - 1), self.probe_cap)
            self._next_probe = time.monotonic() + wait
            log.warning(
                "%s: %s (exit %d): %s; probing again in %.0f s",
                self.site,
                conn.status,
                conn.code,
                conn.stderr.strip()[-300:],
                wait,
            )
        if before != conn.status:
            keys["lastConnectionStatusChange"] = now
            detail = {"status": conn.status, "code": conn.code, "stderr": conn.stderr[-500:]}
            if conn.status == OK and before is not None:
                activity.record(self.tracker, self.volume_id, "reachable", detail)
                self._clear_ssh_failures()
            elif conn.status != OK and before in (None, OK):
                activity.record(self.tracker, self.volume_id, "unreachable", detail)
        self.connection = conn
        return conn, keys

    def _clear_ssh_failures(self) -> None:
        """Clear the per-file back-off of the copies that failed because the storage
        could not be reached (255), to and from it: they go at the next transfer."""
        hub = self._hub_site()
        patches = []
        for file_id, el in self.view.files.items():
            for site in (self.site, hub):
                keys = site_keys(site)
                if el.get(keys.error) == SSH_FAILED:
                    patches.append({"_id": file_id, keys.error: None, keys.failures: None})
        self._apply(patches)

    def _hub_site(self) -> str:
        hub = self.view.volume(self.hub_volume_id) or {}
        return str(hub.get("name", ""))

    # -- the relay ---------------------------------------------------------------------------

    def relay_plan(self, vol: Mapping[str, Any], hub: Mapping[str, Any]) -> Plan:
        """This cycle's relay: ``receptions`` are the downs (hub -> storage), ``emissions``
        the ups (storage -> hub), each highest ``sync_priority`` first, failed ones after
        their back-off, at most the volume's batch sizes."""
        site, hub_site = self.site, hub["name"]
        vols = self.view.volumes()
        siblings = [
            v["name"] for v in vols if v.get("hub") == self.hub_volume_id and v["name"] != site
        ]
        names = [v["name"] for v in vols]
        params = self.view.parameters()
        settings = {**params, **{k: v for k, v in vol.items() if k in params}}
        now = now_ms()
        result = Plan()
        down: list[Task] = []
        up: list[Task] = []
        for file_id, el in self._candidates(vol).items():
            if file_id[:1] != "/" or el.get("deleted"):
                continue
            writer = writer_of(el)
            have = holders(el, names, writer)
            priority = el.get("sync_priority")
            priority = (
                priority if isinstance(priority, int) and not isinstance(priority, bool) else 0
            )
            if site in have:
                lacking = [s for s in siblings if s not in have and wanted(el, s, settings)]
                if (
                    hub_site not in have
                    and (wanted(el, hub_site, settings) or lacking)
                    and not el.get(site_keys(hub_site).conflict)
                ):
                    retry = retry_state(el, hub_site, settings, now)
                    if retry is not False:
                        up.append(Task(file_id, site, hub_site, priority, bool(retry)))
            elif wanted(el, site, settings) and not self._conflict_kept(file_id, el):
                if hub_site not in have:
                    continue  # it comes up to the hub first
                retry = retry_state(el, site, settings, now)
                if retry is not False:
                    down.append(Task(file_id, hub_site, site, priority, bool(retry)))
        result.emissions = ordered(up, int(settings.get("syncAmountEmission", 1000)))
        result.receptions = ordered(down, int(settings.get("syncAmountReception", 1000)))
        return result

    def _conflict_kept(self, file_id: str, el: Mapping[str, Any]) -> bool:
        """True when a conflict of ``el`` at this storage waits for a decision: both
        copies kept there (``incoming``), or any other on a storage that allows only
        rsync (the other copy stays at the hub). A conflict its scan found, the other
        copy not fetched yet, is relayed when this cycle's listing saw the storage's
        copy: the relay then keeps both (:meth:`_keep_both`)."""
        conflict = el.get(site_keys(self.site).conflict)
        if not conflict:
            return False
        state = self.scanner.state
        return (
            self.remote.kind != "find"
            or not isinstance(conflict, dict)
            or bool(conflict.get("incoming"))
            or state is None
            or file_id not in state.looks
        )

    def _relay(
        self, vol: Mapping[str, Any], hub: Mapping[str, Any], report: Report
    ) -> dict[str, Any]:
        """Run the relay plan, bucket by bucket; the volume keys recording it."""
        the_plan = self.relay_plan(vol, hub)
        hub_root = local_root(hub)
        out: dict[str, Any] = {}
        params = self.view.parameters()
        for kind, tasks, upward in (
            ("emission", the_plan.emissions, True),
            ("reception", the_plan.receptions, False),
        ):
            if not tasks or self._stop.is_set():
                continue
            self._status("emitting" if upward else "receiving")
            started = time.monotonic()
            last_rc, stderr = 0, []
            for bucket in the_plan.buckets(tasks):
                if self._stop.is_set():
                    break
                try:
                    options = transfer_options(
                        params, hub, vol, rsync=self.rsync, ssh_program=self.ssh_command
                    )
                except BadRequest as e:
                    log.error("%s: %s", self.site, e)
                    last_rc = 1
                    stderr.append(str(e))
                    break
                rc, err, outcomes = self._relay_bucket(bucket, hub_root, upward, options, report)
                summarize(outcomes, kind, report)
                self._apply(record(outcomes, self.view.files))
                if rc:
                    last_rc = rc
                    stderr.append(err.strip())
            out.update(
                {
                    f"last_{kind}": now_ms(),
                    f"{kind}_duration": int((time.monotonic() - started) * 1000),
                    f"exit_{kind}": last_rc,
                    f"stderr_{kind}": "\n".join(s for s in stderr if s)[-2000:],
                }
            )
        return out

    def _relay_bucket(
        self,
        bucket: list[Task],
        hub_root: str,
        upward: bool,
        options: Mapping[str, Any],
        report: Report,
    ) -> tuple[int, str, list[Outcome]]:
        """One rsync call between the storage and the hub's volume, then each copy
        checked: the hub's copy by a look here, the storage's by rsync itself."""
        files = self.view.files
        hub_site = bucket[0].target if upward else bucket[0].source
        hub_files = LocalSite(hub_root)  # the one guard, at the hub's side
        accepted, refused = hub_files.files_from([t.file_id for t in bucket])
        report.refused.update(refused)
        kept = dict(accepted)
        todo: list[tuple[str, str]] = []
        conflicts: list[Outcome] = []
        state = self.scanner.state
        seen = state.looks if state is not None else {}
        at_hub = hub_files.looks(kept) if upward else {}
        for file_id, rel in kept.items():
            there = seen.get(file_id)
            el = files[file_id]
            if (
                not upward
                and there is not None
                and not look_matches(there, el, self.remote.precision_ns)
                and changed_here(there[1], el, self.site)
            ):
                # the storage's copy changed there since its last sync: never overwritten
                conflicts.append(
                    self._keep_both(file_id, there, hub_site, hub_files, options, report)
                )
                continue
            if upward:
                here = at_hub[file_id]
                if (
                    here is not None
                    and not look_matches(here, el)
                    and changed_here(here[1], el, hub_site)
                ):
                    # the hub's copy changed there: the hub's scan records it first
                    report.waiting[file_id] = f"the copy at {hub_site} changed"
                    continue
            todo.append((file_id, rel))
        if not todo:
            return 0, "", conflicts
        remote = self.remote.endpoint()
        local = hub_files.endpoint()
        src, dst = (remote, local) if upward else (local, remote)
        rels = [r for _, r in todo]
        options = {**options, "exact_mtimes": self.remote.kind != "rsync"}
        result = rs.transfer(src, dst, rels, **options)
        report.rsync_calls += 1
        now = now_ms()
        precision = self.remote.precision_ns
        # rsync exiting 0 delivered every file (this agent overwrites: no
        # --ignore-existing); after a failure, a dry run tells which copies made it
        differ: set[str] | None = set()
        if not upward and result.returncode:
            differ = rs.differing(src, dst, rels, **options)
            report.rsync_calls += 1
        outcomes = conflicts
        copies = hub_files.looks(i for i, _ in todo)
        for file_id, rel in todo:
            el = files[file_id]
            copy = copies[file_id]
            if upward:
                good = look_matches(copy, el, precision)
                if good and copy is not None and not look_matches(copy, el):
                    # the storage's time is to the second: the hub's copy takes the
                    # element's, so that no precision difference is ever a change
                    hub_files.set_mtime(file_id, int(el["file_mtime"]) * 1_000_000)
            else:
                good = (
                    differ is not None
                    and rel.rstrip("/") not in differ
                    and look_matches(copy, el)
                    and not result.missing
                )
            if good:
                outcomes.append(Outcome(file_id, bucket[0].source, bucket[0].target, COPIED, now))
            else:
                code = result.code_for(rel) if result.returncode else rs.RC_MISSING
                outcomes.append(
                    Outcome(file_id, bucket[0].source, bucket[0].target, FAILED, now, code=code)
                )
        return result.returncode, result.stderr, outcomes

    def _keep_both(
        self,
        file_id: str,
        there: Look,
        hub_site: str,
        hub_files: LocalSite,
        options: Mapping[str, Any],
        report: Report,
    ) -> Outcome:
        """The conflict of a down-copy whose copy at the storage changed there since
        its last sync (``there``: its look). On a storage with a shell both copies are
        kept there, as at a site with its own agent (:func:`.copies.keep_both`: the
        hub's copy fetched under a conflict name beside the storage's); on one that
        allows only rsync the other copy stays at the hub."""
        if self.remote.kind == "find":
            hub_side = copies.Side(hub_site, hub_files.endpoint(), hub_files)
            return copies.keep_both(
                file_id, there, hub_side, options, self.remote, here=self.site, report=report
            )
        log.warning("conflict on %s at %s: the other copy stays at the hub", file_id, self.site)
        return Outcome(file_id, hub_site, self.site, CONFLICT, now_ms(), local=there)


class HubAgent(Agent):
    """The agent of the hub's own volume: an ordinary agent, except that the files its
    storages hold come up through their agents (:class:`StorageAgent`), not its own
    receptions."""

    def _plan(self, vol: Mapping[str, Any], report: Report) -> Plan:
        the_plan = super()._plan(vol, report)
        driven = {v["name"] for v in self.view.volumes() if v.get("hub") == self.volume_id}
        the_plan.receptions = [t for t in the_plan.receptions if t.source not in driven]
        the_plan.emissions = [t for t in the_plan.emissions if t.target not in driven]
        return the_plan


__all__ = [
    "CAPACITY_KEYS",
    "CONNECTION_KEYS",
    "HubAgent",
    "StorageAgent",
]
