"""The rsync transport: one subprocess call moves a batch of tracked paths between two sites.

rsync runs with an argument list, never through a shell. The paths travel in a
NUL-separated ``--files-from`` list (``--from0``), so a name with spaces or a leading
``-`` is never parsed as an option, and a name starting with ``#`` or ``;`` (which rsync
reads as a comment there) is listed as ``./name``. Every path has passed the site
seam's guard before it is listed (:meth:`.site.Site.files_from`): nothing that could
leave the volume root is ever handed to rsync.

A site is an :class:`Endpoint`: a local directory (``file://`` volumes) or
``user@host:path`` reached through ssh (``ssh://`` volumes). rsync handles one remote
side per call, so a transfer between two ``ssh://`` volumes is refused here; the
agent of one of the two sites does it instead (see ``docs/sync.md``).

>>> Endpoint("/srv/p/", host="me@h").spec()
'me@h:/srv/p/'
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from damas_core.errors import BadRequest

log = logging.getLogger(__name__)

#: the rsync partial directory, relative to each destination directory
PARTIAL_DIR = ".damas-partial"
#: rsync's exit codes the engine records per file
RC_MISSING = 23  # some files not transferred (e.g. the source does not exist)
RC_VANISHED = 24  # a source file vanished while being sent

# -d: directories named with a trailing slash (packages) copy their direct files;
# -t: keep mtimes (the copy is checked by size and mtime);
# --modify-window=-1: compare mtimes to the nanosecond (two edits in one second differ)
_BASE_ARGS = ("-d", "-t", "--from0")
#: compare mtimes to the nanosecond; rrsync refuses it (a storage allowing only rsync
#: is compared to the second, as its listing is)
EXACT_MTIMES = "--modify-window=-1"
#: rsync 3.2.4 and later quote the remote path themselves; older ones need -s (no remote
#: word splitting), which rrsync refuses (exit 12): it is passed only to those
_QUOTES_ITSELF = (3, 2, 4)


@functools.cache
def protect_args(rsync: str = "rsync") -> list[str]:
    """``["-s"]`` when ``rsync`` is older than 3.2.4 (it would split a remote path
    with spaces), else nothing: newer ones escape the remote path themselves, and
    ``rrsync`` refuses ``-s``."""
    try:
        out = subprocess.run(
            [rsync, "--version"], capture_output=True, stdin=subprocess.DEVNULL, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ["-s"]
    m = re.search(rb"version\s+v?(\d+)\.(\d+)\.(\d+)", out)
    if m is None:
        return ["-s"]
    return [] if tuple(int(x) for x in m.groups()) >= _QUOTES_ITSELF else ["-s"]


@dataclass(frozen=True)
class Endpoint:
    """One side of a transfer: a local directory or an ssh location.

    ``root`` is the absolute project root (ends with ``/``). ``host`` is ``user@host``
    for ssh sides, ``None`` for local ones; ``port`` the ssh port.

    >>> Endpoint("/srv/p/").spec()
    '/srv/p/'
    >>> Endpoint("/srv/p/", host="me@h", port=2222).spec()
    'me@h:/srv/p/'
    """

    root: str
    host: str | None = None
    port: int | None = None

    @property
    def is_local(self) -> bool:
        return self.host is None

    def spec(self) -> str:
        root = self.root if self.root.endswith("/") else self.root + "/"
        return root if self.host is None else f"{self.host}:{root}"


@dataclass
class TransferResult:
    """What one rsync call did: exit code, stderr, and the per-path codes rsync reported."""

    returncode: int
    stderr: str = ""
    missing: set[str] = field(default_factory=set)  # relpaths rsync said do not exist (23)
    vanished: set[str] = field(default_factory=set)  # relpaths that vanished mid-send (24)
    args: list[str] = field(default_factory=list)
    stdout: bytes = b""  # kept for a dry run: its itemized list

    def code_for(self, relpath: str) -> int:
        """The exit code to record for ``relpath`` when its copy did not verify."""
        if relpath.rstrip("/") in self.vanished:
            return RC_VANISHED
        if relpath.rstrip("/") in self.missing:
            return RC_MISSING
        return self.returncode or RC_MISSING


_LINK_STAT = re.compile(rb'link_stat "(.*)" failed: No such file or directory')
_VANISHED = re.compile(rb'file has vanished: "(.*)"')
# rsync prints each byte of a name it will not show (a control character; in the C
# locale any non-ASCII byte) as \#ooo in octal, and a backslash followed by #ooo as
# \#134: so every \#ooo it prints is one byte of the name
_ESCAPED = re.compile(rb"\\#([0-7]{3})")


def _name(printed: bytes) -> str:
    """A name as rsync printed it, back to the name (decoded as the engine encodes
    names for rsync: UTF-8 with surrogate escapes)."""
    raw = _ESCAPED.sub(lambda m: bytes([int(m[1], 8)]), printed)
    return raw.decode("utf-8", "surrogateescape")


def _paths_in(pattern: re.Pattern[bytes], stderr: bytes, root: str) -> set[str]:
    out = set()
    root = root.rstrip("/") + "/"
    for m in pattern.finditer(stderr):
        path = _name(m.group(1))
        # rsync prints the full source path (sometimes with the host or a "/./" marker)
        if ":" in path and not path.startswith("/"):
            path = path.split(":", 1)[1]
        path = path.replace("/./", "/")
        if path.startswith(root):
            path = path[len(root) :]
        out.add(path.rstrip("/"))
    return out


def _listed_prefix(relpath: str) -> bytes:
    return b"./" if relpath[:1] in ("#", ";") else b""


def ssh_line(ssh_command: Sequence[str] | None, port: int | None = None) -> list[str]:
    """The ssh program line reaching a remote side: the program, ``BatchMode=yes``
    first (ssh keeps the first value it is given for an option: never a password or a
    passphrase prompt), the options of ``ssh_command`` (the operator's, then those
    :func:`.rsync_options.ssh_args` built from a volume's checked keys), the port. The
    one place building it, for rsync's ``--rsh`` and for every command a site runs.

    >>> ssh_line(["ssh", "-i", "k"], 2222)
    ['ssh', '-o', 'BatchMode=yes', '-i', 'k', '-p', '2222']
    """
    program, *options = ssh_command or ["ssh"]
    out = [program, "-o", "BatchMode=yes", *options]
    if port:
        out += ["-p", str(port)]
    return out


def build_args(
    src: Endpoint,
    dst: Endpoint,
    list_path: str,
    *,
    rsync: str = "rsync",
    timeout: int = 600,
    ssh_command: Sequence[str] | None = None,
    extra_args: Sequence[str] = (),
    dry_run: bool = False,
    exact_mtimes: bool = True,
) -> list[str]:
    """The rsync argument list for one batch; both sides may not be remote.

    ``ssh_command`` is the ssh program and its options (default ``ssh``), from
    :func:`.rsync_options.transfer_options`; the engine adds ``BatchMode=yes`` first
    and the remote side's port. ``extra_args`` come from
    :func:`.rsync_options.check_user_args`.

    >>> build_args(Endpoint("/a/"), Endpoint("/b/"), "/tmp/l")[:4]
    ['rsync', '-d', '-t', '--from0']
    """
    if not src.is_local and not dst.is_local:
        raise BadRequest(
            "sync error: rsync cannot copy between two remote (ssh://) volumes in one call; "
            "let the agent of one of them do it"
        )
    args = [rsync, *_BASE_ARGS, *protect_args(rsync), f"--files-from={list_path}"]
    if exact_mtimes:
        args.append(EXACT_MTIMES)
    args.append(f"--partial-dir={PARTIAL_DIR}")
    args.append(f"--timeout={int(timeout)}")
    remote = src if not src.is_local else dst if not dst.is_local else None
    if remote is not None:
        args.append("--rsh=" + shlex.join(ssh_line(ssh_command, remote.port)))
    if dry_run:
        args += ["--dry-run", "--itemize-changes"]
    args += list(extra_args)
    # "--" ends the options: the two sides below are never read as options
    args += ["--", src.spec(), dst.spec()]
    return args


def transfer(
    src: Endpoint,
    dst: Endpoint,
    relpaths: Iterable[str],
    *,
    rsync: str = "rsync",
    timeout: int = 600,
    ssh_command: Sequence[str] | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    dry_run: bool = False,
    exact_mtimes: bool = True,
) -> TransferResult:
    """Run one rsync call copying ``relpaths`` (paths from the roots, as
    :meth:`.site.Site.files_from` gives them) from ``src`` to ``dst``.

    Returns the exit code, stderr and the paths rsync reported missing or vanished;
    it does not raise on a failed transfer (the caller records per-file errors after
    checking each copy). ``extra_args`` must already be checked with
    :func:`.rsync_options.check_user_args`. With ``dry_run`` rsync changes nothing and its
    itemized list is kept in ``stdout``. ``exact_mtimes=False`` leaves out
    ``--modify-window=-1`` (for a storage restricted by rrsync, which refuses it).

    >>> import tempfile, pathlib
    >>> a, b = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> _ = pathlib.Path(a, "x y").write_text("hi")
    >>> transfer(Endpoint(a), Endpoint(b), ["x y"]).returncode
    0
    >>> pathlib.Path(b, "x y").read_text()
    'hi'
    """
    paths = list(relpaths)
    with tempfile.NamedTemporaryFile("wb", prefix="damas-files-", suffix=".lst", delete=False) as f:
        for p in paths:
            # rsync reads a --files-from line starting with "#" or ";" as a comment,
            # even with --from0: "./" before it names the same path
            f.write(_listed_prefix(p) + p.encode("utf-8", "surrogateescape") + b"\x00")
        list_path = f.name
    try:
        args = build_args(
            src,
            dst,
            list_path,
            rsync=rsync,
            timeout=timeout,
            ssh_command=ssh_command,
            extra_args=extra_args,
            dry_run=dry_run,
            exact_mtimes=exact_mtimes,
        )
        full_env = None
        if env:
            full_env = dict(os.environ)
            full_env.update({str(k): str(v) for k, v in env.items()})
        log.debug("rsync %d path(s): %s", len(paths), args)
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            start_new_session=True,  # a Ctrl-C at the terminal reaches the agent, which stops rsync
        )
        try:
            out, err = proc.communicate()
        except BaseException:
            # never leave an rsync writing behind us
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            proc.wait()
            raise
        stderr = err.decode("utf-8", "replace")
        result = TransferResult(proc.returncode, stderr, args=args, stdout=out if dry_run else b"")
        result.missing = _paths_in(_LINK_STAT, err, src.root)
        result.vanished = _paths_in(_VANISHED, err, src.root)
        if proc.returncode:
            log.warning("rsync exited %d: %s", proc.returncode, stderr.strip()[-500:])
        return result
    finally:
        os.unlink(list_path)


def differing(
    src: Endpoint,
    dst: Endpoint,
    relpaths: Iterable[str],
    **options,
) -> set[str] | None:
    """The relpaths whose copy at ``dst`` differs from ``src`` (rsync's size+mtime check).

    Used to verify a push to a remote destination that cannot be stat'ed here.
    ``None`` when rsync itself failed. A package (a relpath ending with ``/``) differs,
    as its name without the ``/``, when one of its direct files does.
    """
    paths = list(relpaths)
    packages = {p.rstrip("/") for p in paths if p.endswith("/")}
    result = transfer(src, dst, paths, dry_run=True, **options)
    if result.returncode not in (0, RC_MISSING, RC_VANISHED):
        return None
    out = set()
    for line in result.stdout.split(b"\n"):
        # itemized lines look like ">f+++++++++ path" or "cd+++++++++ dir/"; a newline
        # in a name is printed escaped, so each line is one entry
        if (
            len(line) > 12
            and line[11:12] == b" "
            and line[:1] in (b"<", b">", b"c", b"h", b".", b"*")
        ):
            if line[:2] == b".d":
                continue
            name = _name(line[12:]).rstrip("/")
            out.add(name)
            folder = name.rpartition("/")[0]
            if folder in packages:
                out.add(folder)
    return out


__all__ = [
    "PARTIAL_DIR",
    "RC_MISSING",
    "RC_VANISHED",
    "Endpoint",
    "TransferResult",
    "build_args",
    "differing",
    "ssh_line",
    "transfer",
]
