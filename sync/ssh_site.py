r"""A volume reached over ssh: its listing, its connection, its capacity, remote commands.

A storage driven by a hub runs nothing of ours: sshd and rsync, perhaps GNU find and a
shell, perhaps only ``rrsync``. :class:`SshSite` reaches it with the hub's ssh command
and the volume's ``ssh_*`` keys (:func:`.rsync_options.ssh_args`), never through a
local path: the url's path on the hub is never read.

- :meth:`SshSite.probe` connects once and tells the :class:`Connection` state
  (``ok``, ``unreachable``, ``refused`` for authentication, ``error``) and what the
  storage allows: ``find`` (a shell with GNU find) or ``rsync`` (rsync alone, as
  ``rrsync`` allows);
- :meth:`SshSite.listing` lists the whole tree with ONE streamed command: GNU
  ``find -printf`` (nanosecond mtimes, inodes) on a ``find`` storage, else
  ``rsync --list-only`` (mtimes to the second, no inodes). Both give the parts
  :mod:`.tree` reads from a local GNU find (:class:`.find.Listing`), and say their
  precision (:attr:`precision_ns`);
- :meth:`SshSite.capacity` reads ``df -P`` (``None`` on an rsync-only storage).

Every remote shell command is built by :func:`remote_command`: each argument quoted
with :func:`shlex.quote`, so that no name, path or value is ever read by the remote
shell as anything but one word.

>>> remote_command(["find", "/p/$(id)/", "-name", "a;b"])
"find '/p/$(id)/' -name 'a;b'"
"""

from __future__ import annotations

import calendar
import os
import re
import shlex
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .find import FORMAT, Listing, Part
from .rsync import _name
from .rsync_options import ssh_args
from .tree import RESERVED_NAMES
from .volumes import endpoint_of

#: the longest ``stderr_connection`` kept on a volume
STDERR_MAX = 2000
#: ssh's own exit code: it could not connect, or was refused
SSH_FAILED = 255
#: how long the probe waits for a connection (seconds)
CONNECT_TIMEOUT = 10

OK, UNREACHABLE, REFUSED, ERROR = "ok", "unreachable", "refused", "error"
#: what ssh says when the host cannot be reached (the storage is off, or its network)
_UNREACHABLE = re.compile(
    r"Connection refused|Connection timed out|timed out|No route to host|"
    r"Network is unreachable|Could not resolve hostname|Name or service not known|"
    r"Connection closed by remote host|Connection reset",
    re.IGNORECASE,
)
_REFUSED = re.compile(
    r"Permission denied|Too many authentication failures|Host key verification failed",
    re.IGNORECASE,
)


def remote_command(args: Sequence[str]) -> str:
    """The one remote shell command running ``args``, each argument quoted.

    >>> remote_command(["rm", "--", "-x\n$(reboot)`id`;'q'"])
    'rm -- \'-x\n$(reboot)`id`;\'"\'"\'q\'"\'"\'\''
    """
    return " ".join(shlex.quote(a) for a in args)


def connection_status(code: int, stderr: str) -> str:
    """The connection state an ssh or rsync exit ``code`` and its ``stderr`` tell.

    >>> connection_status(0, ""), connection_status(255, "ssh: connect to host h port 22: Connection refused")
    ('ok', 'unreachable')
    >>> connection_status(255, "root@h: Permission denied (publickey)."), connection_status(12, "")
    ('refused', 'error')
    """
    if code == 0:
        return OK
    if _REFUSED.search(stderr):
        return REFUSED
    if code == SSH_FAILED and _UNREACHABLE.search(stderr):
        return UNREACHABLE
    if code == SSH_FAILED or _UNREACHABLE.search(stderr):
        return UNREACHABLE if "connect" in stderr.lower() else ERROR
    return ERROR


@dataclass(frozen=True)
class Connection:
    """What one attempt to reach a storage found: ``status`` (see
    :func:`connection_status`), the exit ``code``, ssh's ``stderr`` (bounded), and
    what the storage allows (``find`` or ``rsync``; ``None`` when not reached)."""

    status: str
    code: int = 0
    stderr: str = ""
    kind: str | None = None


class SshSite:
    """The storage of ``volume`` (an ``ssh://`` url), reached with ``ssh_command``
    (the operator's ssh program and options, default ``ssh``) then the options of the
    volume's ``ssh_*`` keys. ``rsync``: the local rsync program."""

    def __init__(
        self,
        volume: Mapping[str, Any],
        *,
        ssh_command: Sequence[str] | None = None,
        rsync: str = "rsync",
    ) -> None:
        self.volume = dict(volume)
        self.endpoint = endpoint_of(volume)
        if self.endpoint.is_local:
            raise ValueError(f"sync error: volume {volume.get('_id')!r} has no ssh:// url")
        program, *options = ssh_command or ["ssh"]
        self.ssh_program: list[str] = [program, *options, *ssh_args(volume)]
        self.root = self.endpoint.root
        self.rsync = rsync
        self.kind: str | None = volume.get("ssh_listing")

    # -- the ssh command lines ----------------------------------------------------------------

    def ssh_base(self) -> list[str]:
        """ssh and its options, ``BatchMode`` first (never a password prompt), the port."""
        program, *options = self.ssh_program
        out = [program, "-o", "BatchMode=yes", *options]
        if self.endpoint.port:
            out += ["-p", str(self.endpoint.port)]
        return out

    def ssh(self, args: Sequence[str]) -> list[str]:
        """The argument list running ``args`` on the storage (quoted: :func:`remote_command`)."""
        assert self.endpoint.host is not None
        return [*self.ssh_base(), self.endpoint.host, remote_command(args)]

    def rsh(self) -> str:
        """rsync's ``--rsh`` for this storage."""
        return "--rsh=" + shlex.join(self.ssh_base())

    def run(self, args: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        """Run ``args`` on the storage; its exit code, stdout and stderr (255: ssh failed)."""
        try:
            return subprocess.run(
                self.ssh(args), capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout
            )
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(e.cmd, SSH_FAILED, b"", b"timed out")

    # -- the connection -----------------------------------------------------------------------

    def probe(self) -> Connection:
        """Connect once: the connection state, and what the storage allows (``find``:
        a shell with GNU find; ``rsync``: rsync alone). A volume may say it with
        ``ssh_listing`` (``find`` or ``rsync``); otherwise ``find --version`` tells:
        GNU find answers, a shell without it fails, rrsync refuses a command that is
        not rsync."""
        if self.kind == "rsync":
            result = self._rsync_probe()
        else:
            result = self.run(["find", "--version"], timeout=CONNECT_TIMEOUT * 3)
        stderr = result.stderr.decode("utf-8", "replace")[-STDERR_MAX:]
        if result.returncode == SSH_FAILED or _REFUSED.search(stderr):
            return Connection(connection_status(SSH_FAILED, stderr), SSH_FAILED, stderr)
        if self.kind == "rsync":
            status = connection_status(result.returncode, stderr)
            return Connection(status, result.returncode, stderr, "rsync" if status == OK else None)
        kind = "find" if b"GNU findutils" in result.stdout else "rsync"
        return Connection(OK, 0, "", self.kind or kind)

    def _rsync_probe(self) -> subprocess.CompletedProcess[bytes]:
        # the root alone ("."): rsync answers through rrsync as well
        args = [self.rsync, "--list-only", "-d", "--exclude=*", self.rsh()]
        args += ["--", f"{self.endpoint.host}:{self.root}"]
        try:
            return subprocess.run(
                args, capture_output=True, stdin=subprocess.DEVNULL, timeout=CONNECT_TIMEOUT * 3
            )
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(e.cmd, SSH_FAILED, b"", b"timed out")

    # -- listing --------------------------------------------------------------------------------

    def listing(self, kind: str | None = None) -> Listing:
        """The listing of the whole tree, started now (``kind``: ``find`` or ``rsync``,
        default what :meth:`probe` found)."""
        kind = kind or self.kind or "rsync"
        if kind == "find":
            return FindOverSsh(self)
        return RsyncListing(self)

    # -- capacity ---------------------------------------------------------------------------------

    def capacity(self) -> dict[str, int] | None:
        """``bytesTotal``, ``bytesUsed``, ``bytesRemaining`` of the storage's filesystem
        (``df -P``), ``None`` when the storage allows no command (rsync only) or df fails."""
        if self.kind != "find":
            return None
        result = self.run(["df", "-P", "-k", "--", self.root])
        if result.returncode:
            return None
        return parse_df(result.stdout)


def parse_df(out: bytes) -> dict[str, int] | None:
    """The capacity ``df -P -k`` printed (its last line: 1024-blocks, used, available).

    >>> parse_df(b"Filesystem 1024-blocks Used Available Capacity Mounted on\\n/dev/x 100 40 60 40% /\\n")
    {'bytesTotal': 102400, 'bytesUsed': 40960, 'bytesRemaining': 61440}
    """
    lines = out.decode("utf-8", "replace").strip().splitlines()
    if len(lines) < 2:
        return None
    fields = lines[-1].split()
    try:
        total, used, free = (int(x) * 1024 for x in fields[1:4])
    except (ValueError, IndexError):
        return None
    return {"bytesTotal": total, "bytesUsed": used, "bytesRemaining": free}


class FindOverSsh(Listing):
    """A :class:`.find.Listing` of a storage by GNU find over ssh: the same parts,
    mtimes to the nanosecond, inodes of the storage (its renames are recognised)."""

    precision_ns = 1

    def __init__(self, site: SshSite) -> None:
        self._find = "find"
        self.root = site.root
        self._top = site.root.rstrip("/") or "/"
        self.failures = []
        self.truncated = False
        pruned: list[str] = []
        for name in RESERVED_NAMES:
            pruned += ["-o", "-name", name] if pruned else ["-name", name]
        command = ["env", "LC_ALL=C", "find", "-H", self._top, "(", *pruned, ")"]
        command += ["-prune", "-o", "-printf", FORMAT]
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        try:
            self._proc = subprocess.Popen(
                site.ssh(command), stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err
            )
        except BaseException:
            self._out.close()
            self._err.close()
            raise


#: one entry of ``rsync --list-only``: type and permissions, size, date, time, name
_LIST_LINE = re.compile(
    rb"^(?P<type>[-dlcbps])[-rwxsStT]{9}[+.@]? +(?P<size>[\d,]+) "
    rb"(?P<date>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) (?P<name>.*)$"
)
_TYPES = {b"-": b"f", b"d": b"d", b"l": b"l"}


def parse_list_line(line: bytes) -> tuple[bytes, int, int, str] | None:
    r"""One line of ``rsync --list-only`` (its times in UTC) as (type, size, mtime in
    seconds, id), or ``None`` for a line that is not an entry. The type is find's
    (``f``, ``d``, ``l``, others as ``o``); names are read back from rsync's escapes
    (``\#ooo`` for a byte it does not print, a newline among them).

    >>> parse_list_line(b"-rw-r--r--          1,234 2026/12/07 20:57:23 a\\#012b c")
    (b'f', 1234, 1796677043, '/a\nb c')
    >>> parse_list_line(b"drwxr-xr-x             60 2026/12/07 20:57:23 .")
    (b'd', 60, 1796677043, '/')
    """
    m = _LIST_LINE.match(line)
    if m is None:
        return None
    kind = _TYPES.get(m["type"], b"o")
    name = m["name"]
    if kind == b"l":
        name = name.split(b" -> ", 1)[0]
    when = calendar.timegm(time.strptime(m["date"].decode(), "%Y/%m/%d %H:%M:%S"))
    size = int(m["size"].replace(b",", b""))
    text = _name(name)
    return kind, size, when, "/" if text == "." else "/" + text


class RsyncListing(Listing):
    """A listing of a storage by ``rsync --list-only -r`` (through ``rrsync`` too):
    the parts of :class:`.find.Listing`, mtimes to the second, no inodes (device and
    inode 0: a rename is then recognised by size and mtime alone)."""

    precision_ns = 1_000_000_000
    #: entries per part
    PART = 20000

    def __init__(self, site: SshSite) -> None:
        self._find = site.rsync
        self.root = site.root
        self._top = site.root
        self.failures = []
        self.truncated = False
        self._out = None
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        args = [site.rsync, "--list-only", "-r", "--no-h", site.rsh()]
        args += [f"--exclude={name}" for name in RESERVED_NAMES]
        args += ["--", f"{site.endpoint.host}:{site.root}"]
        try:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._err,
                # the times rsync prints are this side's local time: make it UTC; the C
                # locale makes it escape every byte that is not printable ASCII
                env={**os.environ, "TZ": "UTC", "LC_ALL": "C"},
            )
        except BaseException:
            self._err.close()
            raise

    def _parts(self) -> Iterator[Part]:
        assert self._proc.stdout is not None
        types: list[bytes] = []
        sizes: list[bytes] = []
        mtimes: list[bytes] = []
        ids: list[str] = []
        for line in self._proc.stdout:
            entry = parse_list_line(line.rstrip(b"\n"))
            if entry is None:
                continue
            kind, size, when, file_id = entry
            types.append(kind)
            sizes.append(b"%d" % size)
            mtimes.append(b"%d" % when)
            ids.append(file_id)
            if len(ids) >= self.PART:
                yield self._part(types, sizes, mtimes, ids)
                types, sizes, mtimes, ids = [], [], [], []
        self._proc.wait()
        if ids:
            yield self._part(types, sizes, mtimes, ids)

    @staticmethod
    def _part(types: list[bytes], sizes: list[bytes], mtimes: list[bytes], ids: list[str]) -> Part:
        zeros = [b"0"] * len(ids)
        return types, sizes, mtimes, zeros, zeros, "\0".join(ids)

    @property
    def complete(self) -> bool:
        """True once rsync listed the whole tree (exit 0)."""
        return self._proc.returncode == 0

    def close(self) -> None:
        if self._err.closed:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._err.seek(0)
        text = self._err.read().decode("utf-8", "replace").strip()
        self._err.close()
        if self._proc.returncode and text:
            self.failures.append((None, text[-STDERR_MAX:]))


__all__ = [
    "ERROR",
    "OK",
    "REFUSED",
    "UNREACHABLE",
    "Connection",
    "FindOverSsh",
    "RsyncListing",
    "SshSite",
    "connection_status",
    "parse_df",
    "parse_list_line",
    "remote_command",
]
