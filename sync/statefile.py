"""Small JSON files a long-running process keeps in its own state directory.

The directory is made mode 0700, and refused when it is a symlink, someone else's or
writable by others (the agents' rule, :func:`.state_dir.unsafe`); each file is written mode 0600 under a temporary name and renamed into
place (a crash leaves the old file or the new one, never half of one), and read with
``O_NOFOLLOW`` (a file swapped for a symlink is refused, not followed).

>>> import tempfile
>>> d = StateDir(tempfile.mkdtemp() + "/notifier")
>>> d.write("seq.json", {"seq": 12})
>>> d.read("seq.json")
{'seq': 12}
>>> d.read("missing.json") is None
True
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import orjson

from .state_dir import unsafe


class StateDirError(Exception):
    """The state directory or one of its files cannot be used safely; says why."""


class StateDir:
    """A private directory of JSON files (see the module)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._checked = False

    def check(self) -> None:
        """Make the directory (0700) if needed; :class:`StateDirError` when it is a
        symlink, not a directory, or unsafe by the agents' rule
        (:func:`.state_dir.unsafe`: someone else's, or writable by others)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise StateDirError(
                    f"state directory {self.path} is not a directory (a symlink?): give a real one"
                ) from None
            raise StateDirError(f"state directory {self.path}: {e.strerror or e}") from None
        try:
            problem = unsafe(self.path, os.fstat(fd))
            if problem is not None:
                raise StateDirError(problem)
        except OSError as e:
            raise StateDirError(f"state directory {self.path}: {e.strerror or e}") from None
        finally:
            os.close(fd)
        self._checked = True

    def read(self, name: str) -> Any:
        """The JSON value of ``name``, or ``None`` when there is no such file."""
        if not self._checked:
            self.check()
        try:
            fd = os.open(self.path / name, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateDirError(f"state file {self.path / name}: {e.strerror or e}") from None
        try:
            with os.fdopen(fd, "rb") as f:
                data = f.read()
        except OSError as e:
            raise StateDirError(f"state file {self.path / name}: {e.strerror or e}") from None
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            return None  # a file cut short by a full disk: start again from nothing

    def write(self, name: str, value: Any) -> None:
        """Replace ``name`` with ``value`` as JSON, atomically, mode 0600."""
        if not self._checked:
            self.check()
        final = self.path / name
        tmp = self.path / f".{name}.{os.getpid()}.tmp"
        try:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(orjson.dumps(value))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except OSError as e:
            raise StateDirError(f"state file {final}: {e.strerror or e}") from None


__all__ = ["StateDir", "StateDirError"]
