"""An agent that runs for months: the loop around :meth:`.Agent.run_once`.

:class:`Service` runs cycles until SIGTERM/SIGINT and promises:

- **Resilience.** The tracker unreachable, an answer 5xx or 429, a request timing out:
  a warning, then a wait that doubles after each failure (with jitter, capped at
  ``backoff_max`` seconds) and a retry of the cycle. The agent keeps what it knew
  (its scanner's memory, its view of the tracker) and never exits for that.
- **Credentials.** Against a server, a :class:`Credentials` file (JSON, mode 0600)
  holds a token, a username and password, or both. A token refused (expired, revoked,
  the password changed) is replaced by signing in again when a password is known;
  without one the service exits :data:`EXIT_CREDENTIALS`.
- **One agent per volume.** An exclusive lock on the state directory
  (:class:`StateLock`), and the holder recorded on the volume: ``lastConnectionHost``,
  ``lastConnectionPid`` and the heartbeat ``lastConnection``, written at every status
  and every ``agentTimeout / 3`` seconds (at most 30) while a cycle runs. A volume
  held by a live agent (:func:`holder_problem`) stops a second one with
  :data:`EXIT_HELD`; a holder whose pid is dead on this host, or whose heartbeat is
  older than ``agentTimeout``, is taken over. On an embedded tracker the take is a
  compare-and-set on the holder keys: of agents racing for a volume, one wins. An
  agent that finds its volume taken over by another one stops with :data:`EXIT_HELD`
  too, and leaves the volume's keys to its new holder.
- **A voice.** One INFO line per cycle (:func:`summary`), a WARNING per failed file
  with rsync's code and what it means, per refused file and per scan error.
- **Stopping.** The first SIGTERM or SIGINT lets the running rsync bucket finish, then
  records ``agentStatus: stopped`` and exits :data:`EXIT_STOPPED`; a second one
  aborts the bucket (rsync is stopped, its files are copied again next time). Every
  status written (``stopped``, ``error``) removes the volume's record of a running
  bucket (``transferring``).

Each part lives in a module of its own: :mod:`.exits` (exit codes),
:mod:`.credentials`, :mod:`.state_dir` (the lock and what the directory may be),
:mod:`.holder`, :mod:`.backoff` and :mod:`.cycle_log`.

>>> EXIT_HELD
75
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from damas_core.errors import (
    BadRequest,
    DamasError,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
)

from . import activity
from .agent import AGENT_VERSION, Agent
from .backoff import Backoff, transient
from .credentials import Connection, Credentials
from .cycle_log import log_failures, log_report, summary
from .exits import EXIT_CONFIG, EXIT_CREDENTIALS, EXIT_HELD, EXIT_STOPPED, ServiceError
from .holder import holder_problem
from .state_dir import StateLock, default_state_dir
from .tracker_api import TrackerAPI
from .volumes import global_parameters, volume

log = logging.getLogger(__name__)


class Aborted(BaseException):
    """Raised by a second SIGTERM/SIGINT inside the running step (an rsync bucket is
    stopped by :func:`.rsync.transfer`'s cleanup)."""


# -- the service ---------------------------------------------------------------------------------


class Service:
    """Runs the agent of ``volume_id`` on ``tracker`` until stopped (see the module).

    ``make_agent(tracker)`` builds the :class:`.Agent` (its options are the caller's);
    ``connection`` is the :class:`Connection` the tracker came from, when it is a
    server's client (so that a refused token is renewed); ``state_dir`` is locked
    while the service runs.
    """

    def __init__(
        self,
        tracker: TrackerAPI,
        volume_id: str,
        make_agent: Callable[[TrackerAPI], Agent],
        *,
        state_dir: str | os.PathLike[str],
        connection: Connection | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.tracker = tracker
        self.volume_id = volume_id
        self.make_agent = make_agent
        self.lock = StateLock(state_dir)
        self.connection = connection
        self.backoff = backoff or Backoff()
        self.agent: Agent | None = None
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._signals = 0
        self._finishing = False
        self._claimed = False
        self._lost: str | None = None  # why the volume is no longer ours
        self._timeout_s = 300.0  # agentTimeout and sleepBetweenScans, read at each cycle
        self._sleep = 60.0

    # -- stopping -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop after the running step (the running rsync bucket finishes)."""
        self._stop.set()
        if self.agent is not None:
            self.agent.stop()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("signal %d: stopping after the running step", signum)
            self.stop()
        elif self._signals == 2 and not self._finishing:
            # once the loop is over nothing is aborted: the stop is being recorded
            log.warning("signal %d again: aborting the running step", signum)
            raise Aborted

    # -- the loop --------------------------------------------------------------------------------

    def run(self, *, max_cycles: int | None = None) -> int:
        """Run until stopped; returns the exit code (:data:`EXIT_STOPPED` or
        :data:`EXIT_HELD`); raises :class:`ServiceError` for what retrying cannot fix."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self._on_signal)
        self._stop.clear()
        self._signals, self._claimed, self._lost, self._finishing = 0, False, None, False
        heartbeat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        try:
            with self.lock:
                heartbeat.start()
                try:
                    self._loop(max_cycles)
                except Aborted:
                    log.warning("%s: the running step was aborted", self.volume_id)
                finally:
                    self._finishing = True
                    self._stop.set()
                    self._finish()
            if self._lost is not None:
                raise ServiceError(self._lost, EXIT_HELD)
            return EXIT_STOPPED
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _loop(self, max_cycles: int | None) -> None:
        cycles = 0
        while not self._stop.is_set():
            wait = self._attempt(self._cycle)
            if wait is None:
                cycles += 1
                if max_cycles is not None and cycles >= max_cycles:
                    return
                wait = self._sleep
            if self._lost is not None:
                return
            self._stop.wait(wait)

    def _attempt(self, step: Callable[[], None]) -> float | None:
        """Run ``step``; ``None`` when it went through, else how long to wait before
        trying again. Raises :class:`ServiceError` for what waiting cannot fix."""
        try:
            step()
        except ServiceError:
            raise
        except Unauthorized as e:
            if self.connection is None:
                raise ServiceError(str(e), EXIT_CREDENTIALS) from e
            log.warning("%s: the server refused the token: %s", self.volume_id, e)
            try:
                self.connection.renew(e)
            except ServiceError:
                raise
            except Exception as again:
                return self._retry(again)
            return self.backoff.next()  # short at first; longer if the new token is refused too
        except Forbidden as e:
            raise ServiceError(
                f"{e}: an agent writes the control keys of its files and volume, which "
                "only admins may",
                EXIT_CREDENTIALS,
            ) from e
        except Exception as e:
            return self._retry(e)
        if self.backoff.failures:
            log.info("%s: going on after %d failed attempts", self.volume_id, self.backoff.failures)
        self.backoff.reset()
        return None

    def _retry(self, error: Exception) -> float:
        wait = self.backoff.next()
        if isinstance(error, TooManyRequests) and error.retry_after:
            wait = max(wait, float(error.retry_after))
        if transient(error):
            log.warning(
                "%s: the tracker failed (%s: %s): trying again in %.1f s",
                self.volume_id,
                type(error).__name__,
                error,
                wait,
            )
        else:
            log.exception("%s: the cycle failed: trying again in %.1f s", self.volume_id, wait)
            if self._claimed:
                try:
                    self._mark("error", stderr_scan=f"{type(error).__name__}: {error}"[:2000])
                except Exception:
                    pass  # the tracker may be the problem: the next cycle says so
        return wait

    def _cycle(self) -> None:
        if self.connection is not None:
            self.connection.ensure()
        try:
            vol = volume(self.tracker, self.volume_id)
        except (NotFound, BadRequest) as e:
            raise ServiceError(str(e), EXIT_CONFIG) from e
        params = global_parameters(self.tracker)
        self._timeout_s = float(params.get("agentTimeout", 300))
        settings = {**params, **{k: v for k, v in vol.items() if k in params}}
        self._sleep = float(settings.get("sleepBetweenScans", 60))
        self._claim(vol)
        if self._lost is not None or self._stop.is_set():
            return
        if self.agent is None:
            try:
                self.agent = self.make_agent(self.tracker)
            except BadRequest as e:  # the volume is not one to run here (its hub, its host)
                raise ServiceError(str(e), EXIT_CONFIG) from e
            if self._stop.is_set():
                self.agent.stop()
        started = time.monotonic()
        report = self.agent.run_once()
        log_report(report, time.monotonic() - started)
        activity.after_cycle(
            self.tracker, self.volume_id, report, self.agent.view.files, self.lock.state_dir
        )

    # -- the holder ------------------------------------------------------------------------------

    def _claim(self, vol: Mapping[str, Any]) -> None:
        """Take the volume (first cycle), or check it is still ours (later ones).

        The take is a compare-and-set (``update(..., expect=...)``, embedded or through
        a server): the holder keys are written only if the holder keys read (host, pid,
        heartbeat, status) are still there, so of agents racing for one volume exactly
        one wins; the others read again and find it held."""
        if self._claimed:
            self._check_ours(vol)
            return
        held = ("lastConnectionHost", "lastConnectionPid", "lastConnection", "agentStatus")
        for _attempt in range(10):
            now = int(time.time() * 1000)
            problem = holder_problem(
                vol, host=self.host, pid=self.pid, now_ms=now, timeout_s=self._timeout_s
            )
            if problem is not None:
                raise ServiceError(problem, EXIT_HELD)
            if vol.get("agentStatus") not in (None, "stopped"):
                log.warning(
                    "%s: taking over from the agent of pid %s on %s (dead, or silent for "
                    "more than agentTimeout)",
                    self.volume_id,
                    vol.get("lastConnectionPid"),
                    vol.get("lastConnectionHost"),
                )
            keys = {
                "lastConnection": now,
                "lastConnectionHost": self.host,
                "lastConnectionPid": self.pid,
                "agentStatus": "starting",
                "agentStartTime": now,
                "agentVersion": AGENT_VERSION,
                "transferring": None,
            }
            # the holder keys as read (null: absent): written only if still there
            guard = {k: vol.get(k) for k in held}
            if self.tracker.update({"_id": self.volume_id, **keys}, expect=guard) is not None:
                self._claimed = True
                return
            vol = volume(self.tracker, self.volume_id)  # someone wrote first: look again
        raise ServiceError(f"volume {self.volume_id!r} keeps changing: not taken", EXIT_HELD)

    def _check_ours(self, vol: Mapping[str, Any]) -> None:
        if (vol.get("lastConnectionHost"), vol.get("lastConnectionPid")) == (self.host, self.pid):
            return
        self._lost = (
            f"volume {self.volume_id!r} was taken over by the agent of pid "
            f"{vol.get('lastConnectionPid')} on {vol.get('lastConnectionHost')}: this one stops"
        )
        log.error("%s", self._lost)
        self.stop()

    def _mark(self, status: str | None, **keys: Any) -> None:
        patch: dict[str, Any] = {"_id": self.volume_id, "lastConnection": int(time.time() * 1000)}
        if not self._claimed:  # the take: later writes leave the holder keys alone
            patch.update(lastConnectionHost=self.host, lastConnectionPid=self.pid)
        patch.update(keys)
        if status is not None:  # (a heartbeat alone leaves the running bucket's record)
            patch["agentStatus"] = status
            patch["transferring"] = None
        self.tracker.update(patch)

    def _beat(self) -> None:
        """Write the heartbeat while a long step runs (a cycle writes it at each status)."""
        last = time.monotonic()
        # woken every second: agentTimeout is known only once a cycle has read it
        while not self._stop.wait(1.0):
            if time.monotonic() - last < min(30.0, self._timeout_s / 3):
                continue
            last = time.monotonic()
            if not self._claimed or self._lost is not None:
                continue
            try:
                vol = self.tracker.read(self.volume_id)
                if vol is not None:
                    self._check_ours(vol)
                if self._lost is None:
                    self._mark(None)
            except (DamasError, OSError) as e:
                log.debug("heartbeat of %s failed: %s", self.volume_id, e)

    def _finish(self) -> None:
        """Record ``agentStatus: stopped`` (unless the volume is someone else's now)."""
        if not self._claimed or self._lost is not None:
            return
        for attempt in range(3):
            try:
                vol = self.tracker.read(self.volume_id)
                if vol is not None:
                    self._check_ours(vol)
                if self._lost is None:
                    self._mark("stopped")
                    log.info("%s: stopped", self.volume_id)
                return
            except Unauthorized as e:
                if self.connection is None:
                    break
                try:
                    self.connection.renew(e)
                except Exception:
                    break
            except Exception as e:
                log.warning("%s: cannot record the stop (%s)", self.volume_id, e)
                time.sleep(0.5 * (attempt + 1))


__all__ = [
    "EXIT_CONFIG",
    "EXIT_CREDENTIALS",
    "EXIT_HELD",
    "EXIT_STOPPED",
    "Backoff",
    "Connection",
    "Credentials",
    "Service",
    "ServiceError",
    "StateLock",
    "default_state_dir",
    "holder_problem",
    "log_failures",
    "log_report",
    "summary",
    "transient",
]
