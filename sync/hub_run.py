"""``damas hub run``: the hub volume's agent and one agent per storage, in parallel.

:class:`Hub` runs, at the hub, the agent of the hub's own volume
(:class:`.hub.HubAgent`) and one :class:`.hub.StorageAgent` per storage whose ``hub``
names that volume, each with its own tracker connection, state directory
(``<state_dir>/agents/<volume id>``: beside the hub's key and the notifier's
``notify/``, which no volume id can then name), back-off and log prefix
(``hub:<site>``). A slow or offline storage delays nobody else. Storages added,
removed, disabled (scans, reception and emission all off) or pointed at another hub
are picked up from the change feed without a restart.

Each storage's agent is a **process** of its own (``processes=True``, what
``damas hub run`` does when the tracker is a server or a store other processes can
open): listing and comparing a storage of 100 000 files is Python work, and storages
scanned side by side in one process would share one interpreter lock. The hub's own
agent runs in the hub's process. A storage's process that dies is started again
(after 1, 2, 4… seconds while it keeps dying); one that meets credentials it cannot
use ends with exit 77 and stops the whole hub; one whose hub process is gone
(killed) stops by itself. With ``processes=False`` (an
in-memory store, TinyDB) they are threads.

:meth:`Hub.run_once` runs one cycle of each agent (storages first, in parallel, then
the hub's own) and returns their reports. :meth:`Hub.run` runs until :meth:`Hub.stop`
(SIGTERM/SIGINT in the command); a cycle failing for the tracker's sake is retried
with back-off as :class:`.service.Service` does, and a refusal of the credentials
stops the whole hub (:attr:`Hub.fatal`).

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> _ = t.create({"_id": "vol_hub", "name": "hub", "url": "file:///srv/hub/"})
>>> _ = t.create({"_id": "vol_s1", "name": "s1", "url": "ssh://u@s1/p/", "hub": "vol_hub"})
>>> sorted(storages_of(t, "vol_hub"))
['vol_s1']
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from damas_core.errors import Forbidden, Unauthorized

from . import activity
from .agent import AGENT_VERSION, Agent
from .hub import HubAgent, StorageAgent
from .report import Report
from .service import EXIT_CREDENTIALS, Backoff, Connection, ServiceError
from .tracker_api import TrackerAPI
from .volumes import global_parameters, volumes

log = logging.getLogger(__name__)

#: how long the hub waits on the change feed between looks at its storages (seconds)
FEED_WAIT = 5.0
#: how a storage's process is started: a fresh interpreter (the hub runs threads)
_PROCESSES = multiprocessing.get_context("spawn")


def disabled(volume: dict[str, Any]) -> bool:
    """True when a storage's scans, reception and emission are all off."""
    return all(
        volume.get(k, True) is False for k in ("enableScans", "enableReception", "enableEmission")
    )


def storages_of(tracker: TrackerAPI, hub_volume_id: str) -> dict[str, dict[str, Any]]:
    """The storage volumes whose ``hub`` is ``hub_volume_id`` and that are not
    :func:`disabled`, by id."""
    return {
        v["_id"]: v for v in volumes(tracker) if v.get("hub") == hub_volume_id and not disabled(v)
    }


@dataclass
class Opened:
    """A tracker an agent works with, and the :class:`.service.Connection` it came from
    (``None`` for an embedded store)."""

    tracker: TrackerAPI
    connection: Connection | None = None


class StoreOpener:
    """Opens the store ``url`` (embedded), once per process: the agents of one process
    share it, another process opens its own. ``tracker``: the store this process has
    opened already."""

    def __init__(self, url: str, tracker: TrackerAPI | None = None) -> None:
        self.url = url
        self._tracker = tracker

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "_tracker": None}  # another process opens its own

    def __call__(self) -> Opened:
        if self._tracker is None:
            import damas_core

            self._tracker = damas_core.open(self.url)
        return Opened(self._tracker)


@dataclass(frozen=True)
class ServerOpener:
    """Signs in to the server ``where`` with ``credentials``: each call a connection of
    its own (a long-poll or a cycle of one agent never holds another's)."""

    where: str
    credentials: Any

    def __call__(self) -> Opened:
        connection = Connection(self.where, self.credentials)
        connection.ensure()
        return Opened(connection.client, connection)


@dataclass(frozen=True)
class HubConfig:
    """What each agent of the hub ``hub_volume_id`` is made with (see :class:`Hub`);
    handed to the storages' processes."""

    open_tracker: Callable[[], Opened]
    hub_volume_id: str
    state_dir: str
    ssh_command: tuple[str, ...] = ("ssh",)
    key: str | None = None
    rsync: str = "rsync"
    settle: float | None = None
    backoff_max: float = 300.0
    #: run in each storage's process before anything else (its logging)
    setup: Callable[[], None] | None = field(default=None, compare=False)

    def ssh_for(self, volume: dict[str, Any]) -> list[str]:
        """The ssh command reaching ``volume``: the hub's, with the hub's key unless
        the volume names its own identity file."""
        out = list(self.ssh_command)
        if self.key and not volume.get("ssh_identity_file"):
            out += ["-i", self.key, "-o", "IdentitiesOnly=yes"]
        return out

    def make_agent(self, tracker: TrackerAPI, volume_id: str) -> Agent:
        state = os.path.join(self.state_dir, "agents", volume_id.replace("/", "_"))
        os.makedirs(state, mode=0o700, exist_ok=True)
        if volume_id == self.hub_volume_id:
            return HubAgent(
                tracker,
                volume_id,
                settle=self.settle,
                ssh_command=list(self.ssh_command),
                rsync=self.rsync,
                progress=False,
                state_dir=state,
            )
        vol = tracker.read(volume_id) or {}
        return StorageAgent(
            tracker,
            volume_id,
            self.hub_volume_id,
            ssh_command=self.ssh_for(vol),
            rsync=self.rsync,
            settle=self.settle,
            state_dir=state,
        )


class Hub:
    """The agents of the hub ``hub_volume_id`` (see the module).

    ``open_tracker()`` gives each agent its own :class:`Opened` tracker
    (a :class:`StoreOpener` or :class:`ServerOpener` when ``processes``: it is handed
    to the storages' processes); ``state_dir``: the hub's directory (each agent's state
    below it); ``ssh_command``: the ssh program and options reaching the storages;
    ``key``: the hub's private key, used for storages without ``ssh_identity_file``;
    ``setup``: run first in each storage's process (its logging).
    """

    def __init__(
        self,
        open_tracker: Callable[[], Opened],
        hub_volume_id: str,
        *,
        state_dir: str | os.PathLike[str],
        ssh_command: Sequence[str] | None = None,
        key: str | None = None,
        rsync: str = "rsync",
        settle: float | None = None,
        backoff_max: float = 300.0,
        processes: bool = False,
        setup: Callable[[], None] | None = None,
    ) -> None:
        self.config = HubConfig(
            open_tracker,
            hub_volume_id,
            str(state_dir),
            tuple(ssh_command) if ssh_command else ("ssh",),
            key,
            rsync,
            settle,
            backoff_max,
            setup,
        )
        self.processes = processes
        self.fatal: ServiceError | None = None
        self._stop = threading.Event()
        self._workers: dict[str, _Worker | _AgentProcess] = {}
        self._restarts: dict[str, Backoff] = {}  # the storages' processes that died

    @property
    def hub_volume_id(self) -> str:
        return self.config.hub_volume_id

    def make_agent(self, tracker: TrackerAPI, volume_id: str) -> Agent:
        """The agent of ``volume_id`` (the hub's own, or a storage's)."""
        return self.config.make_agent(tracker, volume_id)

    # -- one cycle of each ---------------------------------------------------------------------

    def run_once(self) -> dict[str, Any]:
        """One cycle of every storage's agent (in parallel), then of the hub's own;
        ``{volume id: report as a dict}`` (``{"error": ...}`` for an agent that failed)."""
        opened = self.config.open_tracker()
        ids = sorted(storages_of(opened.tracker, self.hub_volume_id))
        out: dict[str, Any] = {}
        if ids:
            pool = (
                ProcessPoolExecutor(len(ids), mp_context=_PROCESSES, initializer=self.config.setup)
                if self.processes
                else ThreadPoolExecutor(len(ids), thread_name_prefix="hub")
            )
            with pool:
                cycles = pool.map(_once, [self.config] * len(ids), ids)
                out.update(zip(ids, cycles))
        out[self.hub_volume_id] = _once(self.config, self.hub_volume_id)
        return out

    # -- the service -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every agent after its running step."""
        self._stop.set()
        for w in list(self._workers.values()):
            w.stop()

    def run(self) -> None:
        """Run the agents until :meth:`stop`, following the storages through the feed;
        raises :attr:`fatal` when an agent met credentials it cannot use."""
        opened = self.config.open_tracker()
        since = opened.tracker.changes(0, 1)["last_seq"]
        try:
            self._follow(opened.tracker)
            while not self._stop.is_set():
                try:
                    page = opened.tracker.changes(since, 1000, wait=FEED_WAIT)
                except Exception as e:
                    log.warning("hub: reading the change feed failed: %s", e)
                    self._stop.wait(FEED_WAIT)
                    continue
                since = page.get("last_seq", since)
                if page.get("reset") or any(c["_id"][:1] != "/" for c in page["changes"]):
                    self._follow(opened.tracker)
                self._watch()
        finally:
            self.stop()
            for w in list(self._workers.values()):
                w.join()
        if self.fatal is not None:
            raise self.fatal

    def _watch(self) -> None:
        """Stop the hub when an agent met credentials it cannot use; start again the
        process of a storage that died, after a wait that doubles while it keeps dying
        (reset once one lived longer than the longest wait)."""
        now = time.monotonic()
        for volume_id, w in list(self._workers.items()):
            if w.fatal is not None:
                self.fatal = w.fatal
                self.stop()
                return
            if not isinstance(w, _AgentProcess) or w.is_alive() or self._stop.is_set():
                continue
            backoff = self._restarts.setdefault(volume_id, Backoff(cap=self.config.backoff_max))
            if w.retry_at is None:
                if now - w.started_at > self.config.backoff_max:
                    backoff.reset()
                w.retry_at = now + backoff.next()
                log.warning(
                    "hub: the process of %s ended (exit %s): starting it again in %.0f s",
                    volume_id,
                    w.exitcode,
                    w.retry_at - now,
                )
            elif now >= w.retry_at:
                self._start(volume_id)

    def _follow(self, tracker: TrackerAPI) -> None:
        """Start the agents of new storages, stop those of storages gone, disabled or
        pointed at another hub."""
        wanted = set(storages_of(tracker, self.hub_volume_id)) | {self.hub_volume_id}
        for volume_id in list(self._workers):
            if volume_id not in wanted:
                log.info("hub: %s is no longer served here: stopping its agent", volume_id)
                self._workers.pop(volume_id).stop(wait=True)
        for volume_id in sorted(wanted - set(self._workers)):
            log.info("hub: starting the agent of %s", volume_id)
            self._start(volume_id)

    def _start(self, volume_id: str) -> None:
        own = volume_id == self.hub_volume_id or not self.processes
        w = _Worker(self.config, volume_id) if own else _AgentProcess(self.config, volume_id)
        self._workers[volume_id] = w
        w.start()


def _once(config: HubConfig, volume_id: str) -> dict[str, Any]:
    """One cycle of the agent of ``volume_id``, its report as a dict (in a storage's
    process, or a thread)."""
    return _Worker(config, volume_id).once()


class _Worker(threading.Thread):
    """The loop of one agent of a hub, in a thread (or a storage's process) of its own."""

    def __init__(self, config: HubConfig, volume_id: str) -> None:
        super().__init__(name=f"hub:{volume_id}", daemon=True)
        self.config = config
        self.volume_id = volume_id
        self.agent: Agent | None = None
        self.fatal: ServiceError | None = None
        self._stop_event = threading.Event()
        self.backoff = Backoff(cap=config.backoff_max)

    def stop(self, wait: bool = False) -> None:
        self._stop_event.set()
        if self.agent is not None:
            self.agent.stop()
        if wait and self.is_alive():
            self.join()

    def _agent(self, opened: Opened) -> Agent:
        if self.agent is None:
            self.agent = self.config.make_agent(opened.tracker, self.volume_id)
            self.name = f"hub:{self.agent.site}"
            if threading.current_thread() is not self:
                # run in a storage's process (or a pool's thread): its lines name the site
                threading.current_thread().name = self.name
            self.agent._status(
                "starting", agentStartTime=self.agent.start_time, agentVersion=AGENT_VERSION
            )
        return self.agent

    def once(self) -> dict[str, Any]:
        """One cycle, its report as a dict."""
        try:
            opened = self.config.open_tracker()
            agent = self._agent(opened)
            try:
                return self._run_once(agent, opened).as_dict()
            finally:
                agent.close()
        except Exception as e:
            log.exception("%s: the cycle failed", self.volume_id)
            return {"error": f"{type(e).__name__}: {e}"}

    def _run_once(self, agent: Agent, opened: Opened) -> Report:
        """One cycle of ``agent``, its errors, brakes and conflicts recorded in the
        volume's activity log (once: what was recorded is remembered in its state)."""
        report = agent.run_once()
        activity.after_cycle(
            opened.tracker, self.volume_id, report, agent.view.files, agent.state_dir
        )
        return report

    def run(self) -> None:
        opened: Opened | None = None
        try:
            while not self._stop_event.is_set():
                wait = self._cycle(opened)
                if isinstance(wait, Opened):
                    opened, wait = wait, self._sleep(wait)
                self._stop_event.wait(wait)
        finally:
            if self.agent is not None:
                try:
                    self.agent._status("stopped")
                except Exception as e:
                    log.warning("%s: cannot record the stop (%s)", self.volume_id, e)
                self.agent.close()

    def _cycle(self, opened: Opened | None) -> Opened | float:
        """One cycle; the tracker it used, or how long to wait before trying again."""
        try:
            if opened is None:
                opened = self.config.open_tracker()
            if opened.connection is not None:
                opened.connection.ensure()
            agent = self._agent(opened)
            started = time.monotonic()
            report = self._run_once(agent, opened)
            log.info(
                "%s: cycle in %.2f s: scanned %d, published %d, received %d, emitted %d, failed %d",
                agent.site,
                time.monotonic() - started,
                report.scanned,
                len(report.published),
                len(report.received),
                len(report.emitted),
                len(report.failed),
            )
            self.backoff.reset()
            return opened
        except ServiceError as e:
            self._give_up(e)
        except Unauthorized as e:
            if opened is None or opened.connection is None:
                self._give_up(ServiceError(str(e), EXIT_CREDENTIALS))
            else:
                try:
                    opened.connection.renew(e)
                except ServiceError as again:
                    self._give_up(again)
                except Exception:
                    pass
        except Forbidden as e:
            self._give_up(
                ServiceError(
                    f"{e}: an agent writes the control keys of its files and volume, which "
                    "only admins may",
                    EXIT_CREDENTIALS,
                )
            )
        except Exception as e:
            log.warning(
                "%s: the cycle failed (%s: %s): trying again", self.volume_id, type(e).__name__, e
            )
            log.debug("the failure", exc_info=True)
        return self.backoff.next()

    def _give_up(self, error: ServiceError) -> None:
        log.error("%s: %s", self.volume_id, error)
        self.fatal = error
        self._stop_event.set()

    def _sleep(self, opened: Opened) -> float:
        """sleepBetweenScans of the volume (or the global one); sooner when a storage
        waits to be probed again."""
        agent = self.agent
        vol = agent.view.volume(self.volume_id) if agent is not None else None
        params = agent.view.parameters() if agent is not None else global_parameters(opened.tracker)
        sleep = float((vol or {}).get("sleepBetweenScans", params.get("sleepBetweenScans", 60)))
        conn = agent.connection if isinstance(agent, StorageAgent) else None
        if conn is not None and conn.status != "ok":
            sleep = min(sleep, max(0.1, agent._next_probe - time.monotonic()))
        return sleep


class _AgentProcess:
    """A storage's agent in a process of its own (:func:`_agent_process`), seen from the
    hub as a :class:`_Worker` is: started, stopped (SIGTERM: it ends its step, records
    its stop and exits 0), joined; :attr:`fatal` once it exited for its credentials."""

    def __init__(self, config: HubConfig, volume_id: str) -> None:
        self.volume_id = volume_id
        self.started_at = time.monotonic()
        self.retry_at: float | None = None  # when it is started again, once it died
        self._process = _PROCESSES.Process(
            target=_agent_process,
            args=(config, volume_id, os.getpid()),
            name=f"hub:{volume_id}",
            daemon=False,  # it records its stop: never killed with the hub's exit
        )

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._process.start()

    def is_alive(self) -> bool:
        return self._process.is_alive()

    @property
    def exitcode(self) -> int | None:
        return self._process.exitcode

    @property
    def fatal(self) -> ServiceError | None:
        if self._process.exitcode == EXIT_CREDENTIALS:
            return ServiceError(
                f"the agent of {self.volume_id} cannot use the hub's credentials (see its log)",
                EXIT_CREDENTIALS,
            )
        return None

    def stop(self, wait: bool = False) -> None:
        if self._process.is_alive():
            self._process.terminate()
        if wait:
            self.join()

    def join(self) -> None:
        self._process.join()


def _agent_process(config: HubConfig, volume_id: str, hub_pid: int) -> None:
    """A storage's process: its agent's loop until SIGTERM, or until the hub's process
    is gone; exits with 77 when its credentials cannot be used."""
    if config.setup is not None:
        config.setup()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the hub, which stops us
    worker = _Worker(config, volume_id)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())

    def orphaned() -> None:
        while not worker._stop_event.wait(1.0):
            if os.getppid() != hub_pid:
                log.warning("%s: the hub's process is gone: stopping", volume_id)
                worker.stop()

    threading.Thread(target=orphaned, name="hub-watch", daemon=True).start()
    worker.run()
    sys.exit(worker.fatal.exit_code if worker.fatal is not None else 0)


__all__ = [
    "FEED_WAIT",
    "Hub",
    "HubConfig",
    "Opened",
    "ServerOpener",
    "StoreOpener",
    "disabled",
    "storages_of",
]
