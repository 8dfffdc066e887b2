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
  compare-and-set on the holder keys: of agents racing for a volume, one wins. An agent that finds its volume taken
  over by another one stops with :data:`EXIT_HELD` too, and leaves the volume's keys
  to its new holder.
- **A voice.** One INFO line per cycle (:func:`summary`), a WARNING per failed file
  with rsync's code and what it means, per refused file and per scan error.
- **Stopping.** The first SIGTERM or SIGINT lets the running rsync bucket finish, then
  records ``agentStatus: stopped`` and exits :data:`EXIT_STOPPED`; a second one
  aborts the bucket (rsync is stopped, its files are copied again next time). Every
  status written (``stopped``, ``error``) removes the volume's record of a running
  bucket (``transferring``).

>>> Backoff(base=1, cap=8, jitter=0).delays(5)
[1.0, 2.0, 4.0, 8.0, 8.0]
>>> summary("paris", Report(site="paris", scanned=3, published=["/a"]), 1.5)
'paris: cycle in 1.50 s: scanned 3, published 1, modified 0, deleted 0, received 0, emitted 0, failed 0, conflicts 0'
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import random
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from damas_core.backends.base import Patch

from damas_core.errors import (
    BadRequest,
    DamasError,
    Forbidden,
    NotFound,
    StorageError,
    TooManyRequests,
    Unauthorized,
)
from damas_core.ordering import MISSING
from damas_core.tracker import Session

from .agent import AGENT_VERSION, Agent, Report
from .tracker_api import TrackerAPI
from .volumes import global_parameters, volume

log = logging.getLogger(__name__)

#: Exit codes of a long-running agent (``damas sync agent`` without ``--once``).
EXIT_STOPPED = 0  # stopped by SIGTERM or SIGINT, volume recorded stopped
EXIT_HELD = 75  # another agent holds the volume (its state directory or the volume)
EXIT_CREDENTIALS = 77  # the credentials are unusable or refused, or not an admin's
EXIT_CONFIG = 78  # no such volume, an invalid volume, an unusable state directory

#: rsync's exit codes, as its manual names them
RSYNC_CODES = {
    1: "syntax or usage error",
    2: "protocol incompatibility",
    3: "errors selecting input/output files or directories",
    5: "error starting client-server protocol",
    10: "error in socket I/O",
    11: "error in file I/O",
    12: "error in rsync protocol data stream",
    20: "received SIGUSR1 or SIGINT",
    23: "partial transfer: a file was not found or could not be read",
    24: "partial transfer: a source file vanished",
    30: "timeout in data send/receive",
    35: "timeout waiting for daemon connection",
    255: "ssh failed",
}
#: failed files logged one by one per cycle; beyond, one line says how many more
MAX_FAILURE_LINES = 100


class ServiceError(Exception):
    """A reason to stop that retrying cannot fix; ``exit_code`` says which."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Aborted(BaseException):
    """Raised by a second SIGTERM/SIGINT inside the running step (an rsync bucket is
    stopped by :func:`.rsync.transfer`'s cleanup)."""


# -- credentials ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """What an agent signs in with: a ``token``, a ``username`` and ``password``, or
    both (the token is used first, the password when it is refused). ``expires_in``
    (the file's ``expiresIn``) is the lifespan asked for at each sign-in; ``"0"`` (a
    token that never expires) is for admins.

    >>> Credentials.parse('{"username": "agent", "password": "pw"}', "f").username
    'agent'
    >>> Credentials.parse('{"user": "agent"}', "f")
    Traceback (most recent call last):
    ...
    damas_core.sync.service.ServiceError: credentials f: unknown key 'user' (use token, username, password, expiresIn)
    """

    username: str | None = None
    password: str | None = None
    token: str | None = None
    expires_in: str | int | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Credentials:
        """Read a credentials file, refusing one that others may read or that is not
        its reader's (:class:`ServiceError`, :data:`EXIT_CREDENTIALS`, saying why)."""
        try:
            fd = os.open(path, os.O_RDONLY)  # a symlinked secret is fine: its target is checked
        except OSError as e:
            raise ServiceError(
                f"credentials {path}: cannot open ({e.strerror or e})", EXIT_CREDENTIALS
            ) from None
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                raise ServiceError(
                    f"credentials {path}: mode {mode:04o} lets others read it; it must be "
                    f"0600 (chmod 600 {path})",
                    EXIT_CREDENTIALS,
                )
            if info.st_uid != os.geteuid():
                raise ServiceError(
                    f"credentials {path}: owned by uid {info.st_uid}, not by the agent's "
                    f"user (uid {os.geteuid()})",
                    EXIT_CREDENTIALS,
                )
            text = f.read().decode("utf-8", "replace")
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, where: str) -> Credentials:
        """Credentials from the JSON text of a file named ``where`` (for messages)."""
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ServiceError(f"credentials {where}: not JSON ({e})", EXIT_CREDENTIALS) from None
        if not isinstance(data, dict):
            raise ServiceError(f"credentials {where}: not a JSON object", EXIT_CREDENTIALS)
        known = {"token": "token", "username": "username", "password": "password"}
        for key, value in data.items():
            if key == "expiresIn":
                if not isinstance(value, str | int) or isinstance(value, bool):
                    raise ServiceError(
                        f"credentials {where}: expiresIn is seconds or a duration like '7d'",
                        EXIT_CREDENTIALS,
                    )
            elif key not in known:
                raise ServiceError(
                    f"credentials {where}: unknown key {key!r} (use token, username, "
                    "password, expiresIn)",
                    EXIT_CREDENTIALS,
                )
            elif not isinstance(value, str) or not value:
                raise ServiceError(
                    f"credentials {where}: {key} must be a non-empty string", EXIT_CREDENTIALS
                )
        if ("username" in data) != ("password" in data):
            raise ServiceError(
                f"credentials {where}: username and password go together", EXIT_CREDENTIALS
            )
        if "token" not in data and "username" not in data:
            raise ServiceError(
                f"credentials {where}: give a token, or a username and password",
                EXIT_CREDENTIALS,
            )
        return cls(
            data.get("username"), data.get("password"), data.get("token"), data.get("expiresIn")
        )


class Connection:
    """A client of the server at ``url`` signed in with ``credentials``, that signs in
    again when its token is refused (:meth:`renew`)."""

    def __init__(self, url: str, credentials: Credentials, *, timeout: float = 300.0) -> None:
        from damas_core.client import connect

        self.credentials = credentials
        self.client = connect(url, credentials.token, timeout=timeout)
        self.where = url

    def ensure(self) -> None:
        """Sign in unless the client has a token (raises as :meth:`renew`)."""
        if self.client.token is None:
            self.renew(None)

    def renew(self, refusal: Unauthorized | None) -> None:
        """Sign in with the password; :class:`ServiceError` when there is none or it is
        refused. Errors reaching the server propagate (the caller retries)."""
        c = self.credentials
        if c.username is None or c.password is None:
            raise ServiceError(
                f"the server {self.where} refused the agent's token ({refusal}) and the "
                "credentials hold no password to sign in again",
                EXIT_CREDENTIALS,
            )
        try:
            answer = self.client.sign_in(c.username, c.password, c.expires_in)
        except (Unauthorized, BadRequest) as e:
            raise ServiceError(
                f"signing in to {self.where} as {c.username!r} failed: {e}", EXIT_CREDENTIALS
            ) from e
        if refusal is not None:
            log.info("signed in again as %s (%s)", c.username, refusal)
        if answer["user"].get("class") != "admin":
            raise ServiceError(
                f"{c.username!r} is not an admin: an agent writes the control keys of its "
                "files and volume, which only admins may",
                EXIT_CREDENTIALS,
            )


# -- one agent per volume -------------------------------------------------------------------


def default_state_dir(volume_id: str) -> Path:
    """``$XDG_STATE_HOME/damas/agents/<volume_id>``, else ``~/.local/state/damas/agents/…``.

    >>> os.environ["XDG_STATE_HOME"] = "/var/lib/damas-agent"
    >>> str(default_state_dir("vol_paris"))
    '/var/lib/damas-agent/damas/agents/vol_paris'
    >>> del os.environ["XDG_STATE_HOME"]
    """
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    safe = volume_id.replace("/", "_")
    return Path(base) / "damas" / "agents" / safe


class StateLock:
    """An exclusive ``flock`` on ``<state_dir>/agent.lock`` held while the agent runs;
    the file says who holds it (``host pid``). The kernel drops it when the process
    ends, however it ends, so a dead holder never blocks the next agent."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / "agent.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`ServiceError` (:data:`EXIT_HELD` when another
        process holds it, :data:`EXIT_CONFIG` when the directory cannot be made)."""
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise ServiceError(
                f"state directory {self.state_dir}: {e.strerror or e}", EXIT_CONFIG
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise ServiceError(
                    f"another agent already runs with the state directory {self.state_dir} "
                    f"(held by {holder}): one agent per volume",
                    EXIT_HELD,
                ) from None
            raise ServiceError(f"cannot lock {self.path}: {e}", EXIT_CONFIG) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()} {os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists on this machine.

    >>> pid_alive(os.getpid())
    True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def holder_problem(
    vol: Mapping[str, Any], *, host: str, pid: int, now_ms: int, timeout_s: float
) -> str | None:
    """Why the agent ``(host, pid)`` may not take the volume ``vol``, or ``None``.

    The holder is the agent that wrote ``lastConnectionHost``/``lastConnectionPid``.
    It is free when it said it stopped, is this agent, its heartbeat
    (``lastConnection``) is older than ``timeout_s``, or its pid is dead on this host.

    >>> vol = {"_id": "v", "agentStatus": "idle", "lastConnection": 1000,
    ...        "lastConnectionHost": "h1", "lastConnectionPid": 42}
    >>> holder_problem(vol, host="h2", pid=7, now_ms=2000, timeout_s=300)
    "volume 'v' is held by the agent of pid 42 on h1 (heartbeat 1 s ago): stop it first; a holder that died is taken over after agentTimeout (300 s) without heartbeat"
    >>> holder_problem(vol, host="h2", pid=7, now_ms=400_000, timeout_s=300) is None
    True
    """
    if vol.get("agentStatus") in (None, "stopped"):
        return None
    h_host, h_pid = vol.get("lastConnectionHost"), vol.get("lastConnectionPid")
    if h_host is None or (h_host == host and h_pid == pid):
        return None
    age = (now_ms - int(vol.get("lastConnection") or 0)) / 1000
    if age > timeout_s:
        return None
    if h_host == host and isinstance(h_pid, int) and not pid_alive(h_pid):
        return None
    return (
        f"volume {vol.get('_id')!r} is held by the agent of pid {h_pid} on {h_host} "
        f"(heartbeat {age:.0f} s ago): stop it first; a holder that died is taken over "
        f"after agentTimeout ({timeout_s:g} s) without heartbeat"
    )


# -- waiting ---------------------------------------------------------------------------------


class Backoff:
    """Waits that double after each failure from ``base`` up to ``cap`` seconds, each
    drawn between ``1 - jitter`` and 1 times its step (so that agents failing together
    do not retry together); :meth:`reset` after a success."""

    def __init__(self, base: float = 1.0, cap: float = 300.0, jitter: float = 0.5) -> None:
        self.base, self.cap, self.jitter = base, cap, jitter
        self.failures = 0

    def next(self) -> float:
        """The wait before the next attempt."""
        step = min(self.cap, self.base * 2.0**self.failures)
        self.failures += 1
        return step * (1.0 - self.jitter * random.random())

    def delays(self, n: int) -> list[float]:
        """The next ``n`` waits (for examples and tests)."""
        return [self.next() for _ in range(n)]

    def reset(self) -> None:
        self.failures = 0


def transient(error: BaseException) -> bool:
    """True for a failure retrying fixes: the tracker unreachable or timing out
    (:class:`~damas_core.client.Unreachable`), a storage failure, an answer 5xx (but
    501: what the backend cannot do, it will not do later) or 429.

    >>> from damas_core.errors import NotImplementedByBackend, TooManyStreams
    >>> transient(TooManyStreams("busy")), transient(NotImplementedByBackend("no"))
    (True, False)
    """
    from damas_core.client import Unreachable

    if isinstance(error, Unreachable | StorageError | TooManyRequests):
        return True
    status = error.status if isinstance(error, DamasError) else 0
    return status >= 500 and status != 501


# -- what a cycle says -------------------------------------------------------------------------


def summary(site: str, report: Report, seconds: float) -> str:
    """The one line a cycle logs at INFO."""
    return (
        f"{site}: cycle in {seconds:.2f} s: scanned {report.scanned}, "
        f"published {len(report.published)}, modified {len(report.modified)}, "
        f"deleted {len(report.deleted)}, received {len(report.received)}, "
        f"emitted {len(report.emitted)}, failed {len(report.failed)}, "
        f"conflicts {len(report.conflicts)}"
    )


def log_report(report: Report, seconds: float) -> None:
    """Log a cycle: :func:`summary` at INFO, then :func:`log_failures`."""
    log.info("%s", summary(report.site, report, seconds))
    log_failures(report)


def log_failures(report: Report) -> None:
    """Log each failed file (rsync's code and its meaning), refused file and scan
    error of a cycle at WARNING (the first :data:`MAX_FAILURE_LINES` failed files,
    then how many more)."""
    for n, (file_id, code) in enumerate(sorted(report.failed.items())):
        if n == MAX_FAILURE_LINES:
            log.warning(
                "%s: %d more files failed (damas sync status --state error lists them)",
                report.site,
                len(report.failed) - n,
            )
            break
        meaning = RSYNC_CODES.get(code, "see rsync's manual")
        log.warning("%s: %s failed: rsync exit %d (%s)", report.site, file_id, code, meaning)
    for file_id, reason in sorted(report.refused.items()):
        log.warning("%s: %s refused: %s", report.site, file_id, reason)
    for problem in report.scan_errors:
        log.warning("%s: scan: %s", report.site, problem)


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
            self.agent = self.make_agent(self.tracker)
            if self._stop.is_set():
                self.agent.stop()
        started = time.monotonic()
        report = self.agent.run_once()
        log_report(report, time.monotonic() - started)

    # -- the holder ------------------------------------------------------------------------------

    def _claim(self, vol: Mapping[str, Any]) -> None:
        """Take the volume (first cycle), or check it is still ours (later ones).

        On an embedded tracker the take is a compare-and-set: the holder keys are
        written only if the holder keys read (host, pid, heartbeat, status) are still
        there, so of agents racing for one volume exactly one wins; the others read
        again and find it held. Through a server's client (which has no guarded
        update) it is read, check, write: the loser finds out at its next check."""
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
            mine = {"agentStartTime": now, "agentVersion": AGENT_VERSION}
            if not isinstance(self.tracker, Session):
                self._mark("starting", **mine)
                self._claimed = True
                return
            keys = {
                "lastConnection": now,
                "lastConnectionHost": self.host,
                "lastConnectionPid": self.pid,
                "agentStatus": "starting",
                **mine,
            }
            guard = {k: vol.get(k, MISSING) for k in held}
            taken = Patch(self.volume_id, set=keys, unset=("transferring",), expect=guard)
            if self.tracker.storage.patch_many([taken], op="update")[0]:
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
        patch: dict[str, Any] = {
            "_id": self.volume_id,
            "lastConnection": int(time.time() * 1000),
            "lastConnectionHost": self.host,
            "lastConnectionPid": self.pid,
            **keys,
        }
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
