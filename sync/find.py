r"""Listing a volume with GNU find: the tree is read by another process, in parts.

A scan spends most of its time in two places: listing the tree (one ``stat`` per
file) and writing to the tracker. :class:`Listing` hands the first to GNU ``find``,
which runs beside the scan on another core and writes its listing to a temporary
file; the scan reads that file as it grows, so the tracker writes of the first
files overlap the listing of the next ones. Each entry is six NUL-terminated
fields, parsed in bulk: type (``f``, ``d``, ``l``…), size, mtime (seconds, to the
nanosecond: :func:`find_ns` reads it exactly), device (``st_dev``), inode and id (the
path below the root, starting with ``/``). Names are bytes; they are decoded as ``os.fsdecode`` does
(UTF-8 with surrogate escapes).

``find`` is run with an argument list (never a shell), ``-H`` (the root may be a
symlink; nothing below it is followed), ``LC_ALL=C`` (error messages in one form),
and an absolute root, so that a root cannot read as an option. It is used when it is
GNU find (:func:`gnu_find`); :mod:`.tree` falls back to ``os.scandir`` otherwise.

>>> import tempfile, pathlib
>>> root = tempfile.mkdtemp()
>>> _ = pathlib.Path(root, "a.txt").write_text("hello")
>>> parts = Listing(root) if gnu_find() else [([b"d", b"f"], [], [], [], [], "/\0/a.txt")]
>>> [(kind, path) for types, *_, ids in parts for kind, path in zip(types, ids.split("\0"))]
[(b'd', '/'), (b'f', '/a.txt')]
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence

#: what find prints per entry: type, size, mtime, device, inode and id, each ending with a NUL
FORMAT = r"%y\0%s\0%T@\0%D\0%i\0/%P\0"
#: the most read from the listing at once (about 20000 entries)
CHUNK = 1 << 20
#: how long to wait for find to write more, when the scan has caught up with it
POLL_S = 0.002

# find's complaints, once the program name is cut off: "'<path>': <reason>"
_ERROR = re.compile(r"^'(?P<path>.*)': (?P<reason>.*)$")

# One part of a listing: the types, sizes, mtimes, devices and inodes as bytes, and the ids
# as one str joined by NULs (most checks of a part are one look at the whole text).
Part = tuple[list[bytes], list[bytes], list[bytes], list[bytes], list[bytes], str]
# What find could not read: the id (None when find's message names no path below the
# root) and the reason.
Failure = tuple[str | None, str]


@functools.cache
def gnu_find() -> str | None:
    """The path of GNU find, or ``None`` when ``find`` is missing or another find."""
    path = shutil.which("find")
    if path is None:
        return None
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, stdin=subprocess.DEVNULL, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return path if b"GNU findutils" in out else None


class Listing:
    """A listing of ``root`` by GNU find, started when made: find runs while the caller
    does other work (reads the tracker, say) and the listing is read as it comes.

    Iterating gives every entry under ``root`` (the root itself first, as ``/``), in
    parts, as find lists them: depth first, each folder before what it holds. Entries
    named one of ``prune`` (exact names) are left out, with all they hold. Once
    the iteration is done, :attr:`failures` holds find's complaints (an unreadable
    folder, a missing root). :meth:`close` (or leaving the ``with`` block) kills find
    if it still runs. Raises ``FileNotFoundError`` when GNU find is not installed.
    """

    def __init__(self, root: str, *, prune: Sequence[str] = ()) -> None:
        find = gnu_find()
        if find is None:
            raise FileNotFoundError("GNU find is not installed")
        self._find = find
        self.root = root
        self._top = os.path.abspath(root)
        self.failures: list[Failure] = []
        self.truncated = False
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        try:
            pruned = []
            for name in prune:
                pruned += ["-o", "-name", name] if pruned else ["-name", name]
            skip = ["(", *pruned, ")", "-prune", "-o"] if pruned else []
            self._proc = subprocess.Popen(
                [find, "-H", self._top, *skip, "-printf", FORMAT],
                stdin=subprocess.DEVNULL,
                stdout=self._out,
                stderr=self._err,
                env={**os.environ, "LC_ALL": "C"},
            )
        except BaseException:
            self._out.close()
            self._err.close()
            raise

    #: the digest of the whole listing (:meth:`wait_digest`), once known
    digest: bytes | None = None
    _read_all = False  # the parts were read to the end

    def __iter__(self) -> Iterator[Part]:
        try:
            yield from self._parts()
        finally:
            self.close()

    def wait_digest(self) -> bytes | None:
        """Wait for find to end: the digest of the whole listing when find listed the
        whole tree and complained of nothing, else ``None``. Two equal digests are the
        very same listing (every name, size, mtime and inode), so that a scan whose
        listing did not change need not read it (:meth:`.scanner.Scanner.rescan`).
        The parts can still be read after it."""
        if self._out is None:
            return None  # read from a pipe as it comes: nothing to go back to
        self._proc.wait()
        return self._digest()

    def _digest(self) -> bytes | None:
        if self.digest is None and self._proc.returncode == 0 and not self._complained():
            h = hashlib.blake2b(digest_size=16)
            fd, offset = self._out.fileno(), 0
            while chunk := os.pread(fd, 4 * CHUNK, offset):
                h.update(chunk)
                offset += len(chunk)
            self.digest = h.digest()
        return self.digest

    def _complained(self) -> bool:
        return os.fstat(self._err.fileno()).st_size > 0

    def _parts(self) -> Iterator[Part]:
        # find writes through its own descriptor of the same file: read at explicit offsets
        fd, proc = self._out.fileno(), self._proc
        offset = 0
        size = CHUNK
        while True:
            finished = proc.poll() is not None  # before reading: then nothing comes after
            data = os.pread(fd, size, offset)
            fields = data.split(b"\0")
            whole = (len(fields) - 1) // 6 * 6  # the last field is cut or empty
            if whole:
                del fields[whole:]
                offset += sum(map(len, fields)) + whole
                ids = b"\0".join(fields[5::6]).decode("utf-8", "surrogateescape")
                yield fields[0::6], fields[1::6], fields[2::6], fields[3::6], fields[4::6], ids
            elif len(data) == size:
                size *= 2  # one entry longer than a read (a path deeper than most)
            elif finished:
                self.truncated = bool(data)  # find died in the middle of an entry
                self._read_all = not self.truncated
                return
            else:
                time.sleep(POLL_S)

    @property
    def exit(self) -> int | None:
        """find's exit status (negative: the signal that ended it), once it ended."""
        return self._proc.returncode

    @property
    def complete(self) -> bool:
        """True once find listed the whole tree: it ended by itself (exit 0, or 1 for
        the folders it could not read, which :attr:`failures` names) and every
        complaint names a path. False, say, when it could not write its listing."""
        return (
            self._proc.returncode in (0, 1)
            and not self.truncated
            and all(file_id is not None for file_id, _ in self.failures)
        )

    def close(self) -> None:
        """Stop find if it still runs (the parts not read yet are dropped) and keep its
        complaints in :attr:`failures`. A listing is read once."""
        if self._proc.returncode is not None and self._out.closed:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        if self._read_all:
            self._digest()  # the listing the caller read: the next scan may compare with it
        self._out.close()
        self._err.seek(0)
        self.failures.extend(_errors(self._err.read(), self._find, self._top))
        self._err.close()

    def __enter__(self) -> Listing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def find_ns(mtime: bytes) -> int:
    """The mtime in nanoseconds of find's ``%T@`` (``<seconds>.<fraction>``, the seconds
    rounded down: ``-2.5000000000`` is 1.5 s before the epoch).

    >>> find_ns(b"1567529676.1230000000"), find_ns(b"-2.5000000000"), find_ns(b"7")
    (1567529676123000000, -1500000000, 7000000000)
    """
    if len(mtime) > 11 and mtime[-11] == 46 and mtime[0] != 45:
        # GNU find's own form: ten digits after the point, the nanoseconds then a 0
        return int(mtime.replace(b".", b"")) // 10
    whole, _, fraction = mtime.partition(b".")
    return int(whole) * 1_000_000_000 + int(fraction[:9].ljust(9, b"0"))


def _errors(text: bytes, find: str, top: str) -> list[Failure]:
    out: list[Failure] = []
    prefix = top.rstrip("/")
    program = find + ": "
    for line in text.decode("utf-8", "surrogateescape").splitlines():
        m = _ERROR.match(line.removeprefix(program))
        path = _unquoted(m["path"]) if m else None
        if path is not None and (path == prefix or path.startswith(prefix + "/")):
            out.append((path[len(prefix) :] or "/", m["reason"]))
        elif line.strip():
            out.append((None, line.strip()))
    return out


def _unquoted(path: str) -> str | None:
    r"""A path as find quotes it in its messages (C escapes for quotes, backslashes,
    control and non-ASCII bytes), back as ``os.fsdecode`` gives it; ``None`` if it
    cannot be read back.

    >>> _unquoted(r"/a/new\nline") == "/a/new\nline", _unquoted(r"/a/\303\274n\303\257")
    (True, '/a/ünï')
    >>> _unquoted(r"/a/quo\'te"), _unquoted("/a/plain")
    ("/a/quo'te", '/a/plain')
    """
    if "\\" not in path:
        return path
    try:
        raw = path.encode("latin-1").decode("unicode_escape").encode("latin-1")
    except (UnicodeError, ValueError):
        return None
    return os.fsdecode(raw)


__all__ = ["CHUNK", "FORMAT", "Failure", "Listing", "Part", "find_ns", "gnu_find"]
