"""An agent's state directory: its own, private, and never written through a link.

The state directory holds the agent's lock (``agent.lock``), its view of the tracker
(``view/``) and what its last scan saw (``scan/``). An agent often runs as root or as
a service account, so the directory is checked before anything is written there:

- it must be a directory owned by the agent's user that neither its group nor others
  may write (another user could otherwise plant links or swap the stores): refused
  with :data:`.exits.EXIT_CREDENTIALS`, saying why, as unsafe credentials are;
- what the agent creates there is its own: folders 0700, files 0600 (stores made by
  earlier versions are made private when opened);
- files are opened with ``O_NOFOLLOW``: a symlinked ``agent.lock`` is refused, never
  written through.

The view keeps no private key on disk (``rsync_env``: :mod:`.view`).

>>> import tempfile
>>> d = private_dir(tempfile.mkdtemp() + "/state")
>>> oct(os.stat(d).st_mode & 0o777)
'0o700'
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
from pathlib import Path

from .exits import EXIT_CONFIG, EXIT_CREDENTIALS, EXIT_HELD, ServiceError

#: the files an LMDB store is made of, made private when a store is opened
STORE_FILES = ("data.mdb", "lock.mdb")


def state_home(*parts: str) -> Path:
    """``$XDG_STATE_HOME/damas/<parts>``, else ``~/.local/state/damas/<parts>``.

    >>> os.environ["XDG_STATE_HOME"] = "/var/lib/x"
    >>> str(state_home("hub"))
    '/var/lib/x/damas/hub'
    >>> del os.environ["XDG_STATE_HOME"]
    """
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base, "damas", *parts)


def default_state_dir(volume_id: str) -> Path:
    """``$XDG_STATE_HOME/damas/agents/<volume_id>``, else ``~/.local/state/damas/agents/…``.

    >>> os.environ["XDG_STATE_HOME"] = "/var/lib/damas-agent"
    >>> str(default_state_dir("vol_paris"))
    '/var/lib/damas-agent/damas/agents/vol_paris'
    >>> del os.environ["XDG_STATE_HOME"]
    """
    return state_home("agents", volume_id.replace("/", "_"))


def unsafe(path: str | os.PathLike[str], info: os.stat_result) -> str | None:
    """Why the directory ``path`` (its ``stat``) may not hold an agent's state, or ``None``."""
    if not stat.S_ISDIR(info.st_mode):
        return f"state directory {path}: not a directory"
    if info.st_uid != os.geteuid():
        return (
            f"state directory {path}: owned by uid {info.st_uid}, not by the agent's user "
            f"(uid {os.geteuid()}): another user could change what the agent reads there; "
            f"use a directory of the agent's own"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        return (
            f"state directory {path}: mode {mode:04o} lets other users write in it: they "
            f"could plant links the agent writes through; chmod 700 {path}"
        )
    return None


def private_dir(path: str | os.PathLike[str]) -> str:
    """Make ``path`` (and its missing parents) a directory of the agent's own, mode
    0700 when made here, and check it (:func:`unsafe`); returns it as a string.
    :class:`.exits.ServiceError` when it is unsafe or cannot be made."""
    path = os.fspath(path)
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.stat(path)
    except OSError as e:
        raise ServiceError(f"state directory {path}: {e.strerror or e}", EXIT_CONFIG) from None
    problem = unsafe(path, info)
    if problem is not None:
        raise ServiceError(problem, EXIT_CREDENTIALS)
    return path


def store_dir(state_dir: str | os.PathLike[str], name: str) -> str:
    """The folder ``name`` of the state directory for an LMDB store (``view``,
    ``scan``): the state directory checked, the folder made 0700, and the store's
    files, when an earlier version left them readable, made 0600. Open the store with
    ``mode=0o600``."""
    private_dir(state_dir)
    path = os.path.join(os.fspath(state_dir), name)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if os.path.islink(path):
            raise ServiceError(f"state directory {path}: a symlink", EXIT_CREDENTIALS) from None
        os.chmod(path, 0o700)
    for file in STORE_FILES:
        try:
            fd = os.open(os.path.join(path, file), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise ServiceError(f"{path}/{file}: {e.strerror or e}", EXIT_CREDENTIALS) from None
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    return path


class StateLock:
    """An exclusive ``flock`` on ``<state_dir>/agent.lock`` held while the agent runs;
    the file says who holds it (``host pid``). The kernel drops it when the process
    ends, however it ends, so a dead holder never blocks the next agent. The lock file
    is opened with ``O_NOFOLLOW`` and must be a regular file of the agent's own."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / "agent.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`.exits.ServiceError` (:data:`.exits.EXIT_HELD`
        when another process holds it, :data:`.exits.EXIT_CREDENTIALS` when the
        directory or the lock file is unsafe, :data:`.exits.EXIT_CONFIG` when it cannot
        be made)."""
        private_dir(self.state_dir)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise ServiceError(
                    f"{self.path} is a symlink: the agent never writes through one; remove it",
                    EXIT_CREDENTIALS,
                ) from None
            raise ServiceError(
                f"state directory {self.state_dir}: {e.strerror or e}", EXIT_CONFIG
            ) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            os.close(fd)
            raise ServiceError(
                f"{self.path} is not a regular file of the agent's user: remove it",
                EXIT_CREDENTIALS,
            )
        if stat.S_IMODE(info.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
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


__all__ = [
    "STORE_FILES",
    "StateLock",
    "default_state_dir",
    "private_dir",
    "state_home",
    "store_dir",
    "unsafe",
]
