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
import dataclasses
import logging
import os
import re
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from .find import FORMAT, Listing, Part, find_ns
from .rsync import PARTIAL_DIR, Endpoint, _name, ssh_line
from .rsync_options import ssh_args
from .site import SECOND, Refused, Site, checked_id, id_refusal, trash_id
from .tree import RESERVED_NAMES, TRASH_DIR, Look, Rules, Seen, _find_parts, package_of
from .volumes import endpoint_of

log = logging.getLogger(__name__)

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


#: how long a shared connection outlives its last command (seconds)
CONTROL_PERSIST = 30
#: a unix socket's path is at most 104 bytes on some systems (108 on Linux)
_SOCKET_MAX = 104


def shared_connection(state_dir: str) -> tuple[list[str], str | None]:
    """The ssh options sharing one connection per storage (OpenSSH's ``ControlMaster``)
    between every command a hub's agent runs and its rsync calls, the socket in
    ``state_dir``/ssh (mode 0700, named by ssh's ``%C`` hash of host, port and user),
    and the folder made instead when that path would be too long for a socket
    (``None`` otherwise: the caller removes it at the end). A master that died (the
    storage's sshd killed, its machine off) leaves a socket ssh finds stale: the next
    command unlinks it and connects again; ``ServerAlive*`` ends a master whose storage
    stopped answering.

    >>> shared_connection("/var/lib/hub/st1")[0][:2]
    ['-o', 'ControlMaster=auto']
    """
    folder, made = os.path.join(state_dir, "ssh"), None
    # "/" + the 40 hex digits of %C + the ".XXXXXXXXXXXXXXXX" ssh adds while it binds
    if len(folder.encode()) + 58 > _SOCKET_MAX:
        folder = made = tempfile.mkdtemp(prefix="damas-ssh-")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    options = [
        "-o", "ControlMaster=auto",
        "-o", f"ControlPath={folder}/%C",
        "-o", f"ControlPersist={CONTROL_PERSIST}",
        "-o", "ServerAliveInterval=10",
        "-o", "ServerAliveCountMax=3",
    ]  # fmt: skip
    return options, made


def remote_command(args: Sequence[str]) -> str:
    """The one remote shell command running ``args``, each argument quoted.

    >>> print(remote_command(["rm", "--", "-x $(reboot)`id`;'q'"]))
    rm -- '-x $(reboot)`id`;'"'"'q'"'"''
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


#: the remote guard: resolves the folders on the way of each path (symlinks included)
#: and refuses one that leaves the root or ends with a symlink, then runs the effect
#: (``move`` never over something there, ``remove``, ``stage``: a new staging folder in
#: the reserved folder, printed; ``replace``: a folder target moved aside into a
#: staging folder first, put back if the move fails).
#: Every name reaches it as a positional argument ("$1"...), never as shell text.
_GUARD = r"""
root=$(realpath -e -- "$1") || exit 90
parent_inside() {
    r=$(realpath -m -- "$(dirname -- "$1")") || return 1
    case "$r/" in "$root"/*) ;; *) return 1 ;; esac
}
inside() { parent_inside "$1" && [ ! -L "$1" ]; }
op=$2; shift 2
case $op in
exists) parent_inside "$1" || exit 91; [ -e "$1" ] || [ -L "$1" ]; exit ;;
look) parent_inside "$1" || exit 91; find "$1" -maxdepth 0 -type f -printf '%s %T@'; exit ;;
lookdir) parent_inside "$1" || exit 91; [ -d "$1" ] && [ ! -L "$1" ] || exit 92
    find "$1" -mindepth 1 -maxdepth 1 -type f -printf '%s\0%T@\0%f\0'; exit ;;
esac
if [ "$op" = check ]; then
    for p in "$@"; do inside "$p" || printf '%s\0' "$p"; done
    exit 0
fi
if [ "$op" = purge ]; then
    for p in "$@"; do
        r=$(realpath -m -- "$(dirname -- "$p")")
        case "$r/" in "$root"/*) rm -rf -- "$p" ;; *) exit 91 ;; esac
    done
    exit 0
fi
for p in "$@"; do inside "$p" || { echo "refused: $p" >&2; exit 91; }; done
staging() { mkdir -p -- "$1" && inside "$1" && mktemp -d "$1/$2-XXXXXXXX"; }
case $op in
move) [ -e "$1" ] || exit 92; [ -e "$2" ] && exit 93
      mkdir -p -- "$(dirname -- "$2")" && inside "$2" && mv -- "$1" "$2" ;;
remove) [ -e "$1" ] || exit 92; rm -rf -- "$1" ;;
stage) staging "$1" conflict ;;
replace) [ -e "$1" ] || exit 92
    if [ -d "$2" ]; then
        aside=$(staging "$3" resolve) || exit 94
        mv -- "$2" "$aside/local" || { rmdir -- "$aside"; exit 94; }
        if mv -- "$1" "$2"; then rm -rf -- "$aside"; exit 0; fi
        mv -- "$aside/local" "$2"; rmdir -- "$aside"; exit 94
    fi
    [ -d "$(dirname -- "$2")" ] || exit 92
    mv -- "$1" "$2" || exit 94 ;;
esac
"""
#: the probe: GNU find's version where the root is there (90 where it is not)
_PROBE = r"""
if [ ! -d "$1" ]; then echo "the volume root $1 is missing" >&2; exit 90; fi
find --version && echo "--df--" && df -P -k -- "$1"
"""
_DF_MARK = b"--df--\n"
#: the guard's exit code for a root that is missing
_NO_ROOT = 90
#: the guard's own exit codes (and 94: ``replace`` moved nothing)
_GONE, _TAKEN, _REFUSED_CODE = 92, 93, 91


class SshSite(Site):
    """The storage of ``volume`` (an ``ssh://`` url), reached with ``ssh_command``
    (the operator's ssh program and options, default ``ssh``) then the options of the
    volume's ``ssh_*`` keys. ``rsync``: the local rsync program.

    The seam's guard holds remotely: ids are checked as every site checks them
    (:func:`.site.id_refusal`), and each effect (move, quarantine, remove) runs one
    remote script that resolves the folders on the way under the root with
    ``realpath`` and refuses a symlink at the end, all names passed as quoted
    arguments; the copies of a conflict are kept and resolved on the storage through
    it too. A storage that allows only rsync (``rrsync``) has no such effects: they
    raise :class:`.site.Refused` saying so (deletions, renames and conflicts are
    applied at such a storage by its own users, not by the engine).
    """

    def __init__(
        self,
        volume: Mapping[str, Any],
        *,
        ssh_command: Sequence[str] | None = None,
        rsync: str = "rsync",
    ) -> None:
        self.volume = dict(volume)
        if endpoint_of(volume).is_local:
            raise ValueError(f"sync error: volume {volume.get('_id')!r} has no ssh:// url")
        program, *options = ssh_command or ["ssh"]
        self.ssh_program: list[str] = [program, *options, *ssh_args(volume)]
        self.root = endpoint_of(volume).root
        self.rsync = rsync
        self.kind: str | None = volume.get("ssh_listing")
        self._capacity: dict[str, int] | None = None

    @property
    def precision_ns(self) -> int:  # type: ignore[override]
        """1 with GNU find (nanoseconds), a second with ``rsync --list-only``."""
        return 1 if self.kind == "find" else SECOND

    # -- the guard ------------------------------------------------------------------------------

    def refusal(self, file_id: str) -> str | None:
        """The id rule, then (with a shell) the folders on the way resolved remotely."""
        return self.files_from([file_id])[1].get(file_id)

    def files_from(self, ids: Iterable[str]) -> tuple[list[tuple[str, str]], dict[str, str]]:
        """The id rule, then one remote check of the whole batch: a folder on the way
        that resolves outside the root, or a symlink at the end, is refused. A storage
        allowing only rsync gets the id rule alone (rsync itself never writes through a
        symlinked folder it did not make: it is not given ``--keep-dirlinks``)."""
        kept: list[tuple[str, str]] = []
        refused: dict[str, str] = {}
        for file_id in ids:
            reason = id_refusal(file_id)
            if reason is None:
                kept.append((file_id, file_id[1:]))
            else:
                refused[file_id] = reason
        if self.kind != "find" or not kept:
            return kept, refused
        paths = {self._path(i): i for i, _ in kept}
        result = self.run(["sh", "-c", _GUARD, "guard", self.root, "check", *paths])
        if result.returncode:
            reason = f"sync error: the storage {self.volume.get('_id')!r} could not check paths"
            return [], {**refused, **dict.fromkeys(paths.values(), reason)}
        bad = {paths[os.fsdecode(p)] for p in result.stdout.split(b"\0") if p}
        for file_id in bad:
            refused[file_id] = f"sync error: {file_id!r} leaves the volume root {self.root!r}"
        return [(i, rel) for i, rel in kept if i not in bad], refused

    def endpoint(self) -> Endpoint:
        return self.endpoint_

    @property
    def endpoint_(self) -> Endpoint:
        return endpoint_of(self.volume)

    def _path(self, file_id: str) -> str:
        return self.root + checked_id(file_id)[1:].rstrip("/")

    def _effect(self, op: str, *ids: str) -> int:
        """Run the remote guard and ``op`` on ``ids``; its exit code (:class:`Refused`
        for a path it refused, on a storage without a shell)."""
        return self._guard(op, ids, *(self._path(i) for i in ids)).returncode

    def _guard(
        self, op: str, ids: Sequence[str], *paths: str
    ) -> subprocess.CompletedProcess[bytes]:
        """Run the remote guard and ``op`` on ``paths`` (those of ``ids``, which the
        errors name); :class:`Refused` for a path it refused, or on a storage without a
        shell; ``OSError`` when ssh failed."""
        if self.kind != "find":
            raise Refused(
                f"sync error: {op} is off on {self.volume.get('_id')!r}: the storage allows "
                "only rsync (rrsync)",
                id=ids[0] if ids else None,
            )
        result = self.run(["sh", "-c", _GUARD, "guard", self.root, op, *paths])
        if result.returncode == _REFUSED_CODE:
            raise Refused(
                f"sync error: {tuple(ids) or paths!r} leave the volume root {self.root!r} at "
                f"{self.volume.get('_id')!r}",
                id=ids[0] if ids else None,
            )
        if result.returncode == SSH_FAILED:
            raise OSError(f"ssh to {self.endpoint_.host} failed: {result.stderr.decode()[-300:]}")
        return result

    # -- is it there ----------------------------------------------------------------------------

    def presence(self, volume: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
        self.volume = {**self.volume, **volume}
        conn = self.probe()
        if conn.status != OK:
            return f"{self.volume.get('_id')}: {conn.status} (exit {conn.code}): {conn.stderr}", {}
        self.kind = self.volume.get("ssh_listing") or conn.kind
        return None, {}

    # -- listing and looks ----------------------------------------------------------------------

    #: a look is a round trip: a growing file waits for the next scan
    looks_again = False

    def start_listing(self) -> Listing:
        """The listing of the whole tree, begun now (handed to :meth:`walk_parts`)."""
        return self.listing()

    def walk_parts(
        self, rules: Rules | None = None, seen: Seen | None = None, *, started: Any = None
    ) -> Iterator[dict[str, Look]]:
        """The listing's parts with the rules, read as a local find listing is
        (:func:`.tree.walk_parts`): a package's look is added up from the entries of
        its files in the same listing, no folder is read again."""
        seen = seen if seen is not None else Seen()
        return _find_parts(started or self.listing(), rules or Rules(), seen)

    def look(self, file_id: str) -> Look | None:
        checked_id(file_id)
        if file_id.endswith("/"):
            return self._package_look(file_id)
        if self.kind == "find":
            result = self.run(["sh", "-c", _GUARD, "guard", self.root, "look", self._path(file_id)])
            if result.returncode == _REFUSED_CODE:
                raise Refused(f"sync error: {file_id!r} leaves the volume root {self.root!r}")
            if result.returncode or not result.stdout:
                return None
            size, mtime = result.stdout.split()
            return int(size), find_ns(mtime)
        for kind, size, when, _ in self._list_only(self._path(file_id)):
            if kind == b"f":
                return size, when * 1_000_000_000
        return None

    def _package_look(self, file_id: str) -> Look | None:
        """The look of the package folder ``file_id`` (:func:`.tree.package_of` of its
        direct files), ``None`` when it is not a folder (a symlink is not followed) or
        cannot be read. One command: the guard's ``lookdir`` (GNU find) where there is
        a shell, else ``rsync --list-only`` of the folder and its direct entries."""
        path = self._path(file_id)
        if self.kind == "find":
            result = self.run(["sh", "-c", _GUARD, "guard", self.root, "lookdir", path])
            if result.returncode == _REFUSED_CODE:
                raise Refused(f"sync error: {file_id!r} leaves the volume root {self.root!r}")
            if result.returncode:
                return None
            fields = result.stdout.split(b"\0")[:-1]
            files = [
                (os.fsdecode(name), int(size), find_ns(mtime))
                for size, mtime, name in zip(fields[0::3], fields[1::3], fields[2::3])
            ]
        else:
            entries = self._list_only(path, ["-r", _DIRECT_ONLY])
            if not entries or entries[0][0] != b"d":
                return None
            files = [
                (i.rpartition("/")[2], size, when * 1_000_000_000)
                for kind, size, when, i in entries[1:]
                if kind == b"f"
            ]
        return package_of(files)[0]

    def _list_only(
        self, path: str, options: Sequence[str] = ()
    ) -> list[tuple[bytes, int, int, str]]:
        """The entries ``rsync --list-only`` gives of ``path`` (:func:`parse_list_line`);
        none when rsync fails."""
        args = [self.rsync, "--list-only", "--no-h", *options, self.rsh()]
        args += ["--", f"{self.endpoint_.host}:{path}"]
        out = subprocess.run(
            args, capture_output=True, stdin=subprocess.DEVNULL, env={**os.environ, **_LIST_ENV}
        )
        if out.returncode:
            return []
        entries = (parse_list_line(line) for line in out.stdout.splitlines())
        return [e for e in entries if e is not None]

    def exists(self, file_id: str) -> bool:
        if self.kind != "find":
            return self.look(file_id) is not None
        return self._effect("exists", file_id) == 0

    # -- effects -----------------------------------------------------------------------------------

    def move(self, old_id: str, new_id: str) -> bool:
        return self._effect("move", old_id, new_id) == 0

    def quarantine(self, file_id: str, day: date, now: int) -> str:
        kept = trash_id(file_id, day)
        code = self._effect("move", file_id, kept)
        if code == _TAKEN:
            kept = f"{kept}.{now}"
            code = self._effect("move", file_id, kept)
        if code == _GONE:
            raise FileNotFoundError(self._path(file_id))
        if code:
            raise OSError(f"quarantine of {file_id!r} at {self.volume.get('_id')!r}: exit {code}")
        return kept

    def remove(self, file_id: str) -> bool:
        return self._effect("remove", file_id) == 0

    def purge(self, retention_days: float, today: date) -> list[str]:
        if self.kind != "find":
            return []
        trash = self.root + TRASH_DIR
        result = self.run(["find", trash, "-mindepth", "1", "-maxdepth", "1", "-printf", "%f\\0"])
        oldest = today - timedelta(days=retention_days)
        gone = []
        for raw in result.stdout.split(b"\0"):
            try:
                day = date.fromisoformat(raw.decode())
            except (UnicodeDecodeError, ValueError):
                continue
            if day < oldest and self._effect("purge", f"/{TRASH_DIR}/{day.isoformat()}") == 0:
                gone.append(day.isoformat())
        return gone

    def keep_both(
        self, file_id: str, incoming_id: str, fetch: Callable[[Endpoint, str], bool]
    ) -> bool:
        """Both ids checked by the remote guard, a new staging folder made in the
        storage's reserved folder (``stage``), the incoming copy fetched there by rsync
        (``fetch`` is given the staging folder's remote endpoint), then moved to
        ``incoming_id`` (``move``: never over something already there), the staging
        folder removed in every case. Off on a storage that allows only rsync."""
        self._conflicts_on(file_id)
        refused = self.files_from([file_id, incoming_id])[1]
        for named in (file_id, incoming_id):
            if named in refused:
                raise Refused(refused[named], id=named)
        staging = self._stage()
        try:
            rel = file_id[1:]
            folder = dataclasses.replace(self.endpoint_, root=self._path(staging) + "/")
            if not fetch(folder, rel):
                return False
            return self._effect("move", f"{staging}/{rel.rstrip('/')}", incoming_id) == 0
        finally:
            self._effect("remove", staging)

    def _stage(self) -> str:
        """The id of a new staging folder in the reserved folder (walks never list it)."""
        partial = self._path(f"/{PARTIAL_DIR}")
        made = self._guard("stage", (), partial)
        path = os.fsdecode(made.stdout.strip())
        if made.returncode or not path.startswith(partial + "/") or "\n" in path:
            raise OSError(
                f"no staging folder in {partial!r} at {self.volume.get('_id')!r}: "
                f"{made.stderr.decode('utf-8', 'replace')[-300:]}"
            )
        return checked_id(path[len(self.root) - 1 :])

    def replace(self, source_id: str, target_id: str) -> None:
        """Through the remote guard (``replace``): a folder at ``target_id`` (a package)
        is moved aside into a staging folder first, put back if the move fails."""
        self._conflicts_on(target_id)
        paths = (self._path(source_id), self._path(target_id), self._path(f"/{PARTIAL_DIR}"))
        code = self._guard("replace", (source_id, target_id), *paths).returncode
        if code == _GONE:
            raise FileNotFoundError(paths[0])
        if code:
            raise OSError(
                f"{source_id!r} was not moved over {target_id!r} at "
                f"{self.volume.get('_id')!r} (exit {code}): the local copy is in place"
            )

    def _conflicts_on(self, file_id: str) -> None:
        """:class:`Refused` on a storage that allows only rsync: its conflicts are kept
        at the hub (the other copy stays there) and resolved by its users."""
        if self.kind != "find":
            raise Refused(
                f"sync error: conflicts are off on {self.volume.get('_id')!r}: the storage "
                "allows only rsync (rrsync); the other copy of "
                f"{file_id!r} stays at the hub",
                id=file_id,
            )

    # -- the ssh command lines ----------------------------------------------------------------

    def ssh_base(self) -> list[str]:
        """ssh and its options, ``BatchMode`` first (never a password prompt), the port
        (:func:`.rsync.ssh_line`, as rsync's ``--rsh``)."""
        return ssh_line(self.ssh_program, self.endpoint_.port)

    def close(self) -> None:
        """End the shared connection to the storage, if one runs (``ssh -O exit``: the
        master, started by the first command with :func:`shared_connection`'s options)."""
        if not any(o.startswith("ControlPath=") for o in self.ssh_program):
            return
        host = self.endpoint_.host
        assert host is not None
        try:
            subprocess.run(
                [*self.ssh_base(), "-O", "exit", host],
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=CONNECT_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            log.warning("ssh: the shared connection to %s did not close", host)

    def ssh(self, args: Sequence[str]) -> list[str]:
        """The argument list running ``args`` on the storage (quoted: :func:`remote_command`)."""
        host = self.endpoint_.host
        assert host is not None
        return [*self.ssh_base(), host, remote_command(args)]

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
            result = self.run(["sh", "-c", _PROBE, "probe", self.root], timeout=CONNECT_TIMEOUT * 3)
        stderr = result.stderr.decode("utf-8", "replace")[-STDERR_MAX:]
        if result.returncode == SSH_FAILED or _REFUSED.search(stderr):
            return Connection(connection_status(SSH_FAILED, stderr), SSH_FAILED, stderr)
        if result.returncode == _NO_ROOT:
            return Connection(ERROR, _NO_ROOT, f"{stderr.strip()}: not mounted?", "find")
        if self.kind == "rsync":
            status = connection_status(result.returncode, stderr)
            if status != OK:
                stderr = (
                    f"{stderr.strip()}: the volume root {self.root} cannot be read: not mounted?"
                )
            return Connection(status, result.returncode, stderr, "rsync" if status == OK else None)
        kind = "find" if b"GNU findutils" in result.stdout else "rsync"
        # the capacity comes with the probe: one connection less per cycle
        _, mark, df = result.stdout.partition(_DF_MARK)
        self._capacity = parse_df(df) if mark and kind == "find" else None
        return Connection(OK, 0, "", self.kind or kind)

    def _rsync_probe(self) -> subprocess.CompletedProcess[bytes]:
        # the root alone ("."): rsync answers through rrsync as well
        args = [self.rsync, "--list-only", "-d", "--exclude=*", self.rsh()]
        args += ["--", f"{self.endpoint_.host}:{self.root}"]
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
        (``df -P``; read by the last :meth:`probe` when there was one), ``None`` when the
        storage allows no command (rsync only) or df fails."""
        if self.kind != "find":
            return None
        if self._capacity is not None:
            return self._capacity
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


#: the times rsync prints are this side's local time: UTC; the C locale makes it escape
#: every byte that is not printable ASCII
_LIST_ENV = {"TZ": "UTC", "LC_ALL": "C"}
#: one entry of ``rsync --list-only``: type and permissions, size, date, time, name
_LIST_LINE = re.compile(
    rb"^(?P<type>[-dlcbps])[-rwxsStT]{9}[+.@]? +(?P<size>[\d,]+) "
    rb"(?P<date>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) (?P<name>.*)$"
)
_TYPES = {b"-": b"f", b"d": b"d", b"l": b"l"}
#: ``rsync --list-only -r`` of a folder: the folder and its direct entries, no subfolder
#: (a fixed filter, anchored at the folder's parent; no name is ever in it)
_DIRECT_ONLY = "--exclude=/*/*/"


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
        args += ["--", f"{site.endpoint_.host}:{site.root}"]
        try:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._err,
                env={**os.environ, **_LIST_ENV},
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
    "shared_connection",
]
