"""What a volume may tell rsync and ssh: allowlists, each entry parsed with its argument.

The sync engine runs rsync with its own arguments (which files, where, how partial
files are kept, the ssh command). A volume and ``rsyncGlobalParameters`` may add
only what changes how bytes move (:data:`OPTIONS`), a volume may set only
:data:`ENV_VARIABLES` in rsync's environment, and only :data:`SSH_OPTIONS` reach
ssh; everything else is refused with :class:`BadRequest` naming it. Who may write
these keys at all is the core's rule (admins only).

>>> check_user_args("-zc --bwlimit 500", where="volume 'v1'")
['--compress', '--checksum', '--bwlimit=500']
>>> check_user_args(["-zesh", "-c", "id"], where="volume 'v1'")
Traceback (most recent call last):
...
damas_core.errors.BadRequest: sync error: rsync_args of volume 'v1': '-e' (in '-zesh') is not an option the sync engine allows (see docs/sync.md): the engine builds the ssh command itself, from the volume's ssh_port, ssh_identity_file, ssh_known_hosts and ssh_options
>>> check_env('TZ=Europe/Paris', where="volume 'v1'")
{'TZ': 'Europe/Paris'}
>>> ssh_args({"_id": "v1", "ssh_options": {"ConnectTimeout": 10}})
['-o', 'ConnectTimeout=10']
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from damas_core.errors import BadRequest

#: compression algorithms rsync knows (``rsync --version``)
COMPRESSIONS = ("zstd", "lz4", "zlibx", "zlib", "none")
#: checksum algorithms rsync knows, without ``none``: a transfer is always verified
CHECKSUMS = ("auto", "xxh128", "xxh3", "xxh64", "xxhash", "md5", "md4", "sha1")

Check = Callable[[str], str]


def _matching(pattern: str, what: str) -> Check:
    regex = re.compile(pattern)

    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return check


def _one_of(names: Sequence[str], *, separator: str | None = None, most: int = 1) -> Check:
    what = "one of " + ", ".join(names)
    if separator is not None:
        what = f"at most {most} names separated by {separator!r}, each {what}"

    def check(value: str) -> str:
        parts = value.split(separator) if separator is not None else [value]
        if not 1 <= len(parts) <= most or any(p not in names for p in parts):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return check


# a size as rsync reads it: a number, optionally with a fraction and a K/M/G unit
_size = _matching(
    r"[0-9]{1,12}(\.[0-9]{1,6})?([KMGkmg]([iI]?[bB])?)?", "a size (a number, optionally K, M or G)"
)
_positive = _matching(r"[1-9][0-9]{0,8}", "a whole number of 1 or more")
_count = _matching(r"[0-9]{1,9}", "a whole number")
_level = _matching(r"-?[0-9]{1,6}", "a whole number")
_suffixes = _matching(
    r"[A-Za-z0-9\[\]]+(/[A-Za-z0-9\[\]]+)*", "a list of suffixes separated by '/' (gz/jpg/mp[34])"
)
# chmod clauses as rsync reads them, without the setuid, setgid and sticky bits: an
# optional D (folders) or F (files), then who/op/permissions or three octal digits
_chmod = _matching(
    r"[DF]?([ugoa]*[-+=][rwxX]*|0?[0-7]{3})(,[DF]?([ugoa]*[-+=][rwxX]*|0?[0-7]{3}))*",
    "a chmod spec of [DF][ugoa][-+=][rwxX] or octal clauses (no s or t bits), e.g. "
    "'Du=rwx,go=rx,Fu=rw,go=r'",
)


@dataclass(frozen=True)
class RsyncOption:
    """One allowed rsync option: its long name (the form handed to rsync), its
    one-letter form and other spellings, and the check of its value (``None``: the
    option takes none)."""

    name: str
    doc: str
    letter: str | None = None
    aliases: tuple[str, ...] = ()
    value: Check | None = None


#: the rsync options a volume or the global parameters may add (docs/sync.md says why)
OPTIONS: tuple[RsyncOption, ...] = (
    RsyncOption("--bwlimit", "limit the transfer rate (KiB/s; K, M, G suffixes)", value=_size),
    RsyncOption("--compress", "compress data in transit", letter="z"),
    RsyncOption("--no-compress", "do not compress (undoes -z)", aliases=("--no-z",)),
    RsyncOption(
        "--compress-choice",
        "compression algorithm: " + ", ".join(COMPRESSIONS),
        aliases=("--zc",),
        value=_one_of(COMPRESSIONS),
    ),
    RsyncOption("--compress-level", "compression level", aliases=("--zl",), value=_level),
    RsyncOption(
        "--compress-threads", "zstd compression threads", aliases=("--zt",), value=_positive
    ),
    RsyncOption("--skip-compress", "file suffixes sent uncompressed", value=_suffixes),
    RsyncOption(
        "--checksum", "decide what to send by content checksum, not size and mtime", letter="c"
    ),
    RsyncOption(
        "--checksum-choice",
        "checksum algorithm, or two separated by ',': " + ", ".join(CHECKSUMS),
        aliases=("--cc",),
        value=_one_of(CHECKSUMS, separator=",", most=2),
    ),
    RsyncOption(
        "--timeout", "I/O timeout in seconds (replaces the global timeout)", value=_positive
    ),
    RsyncOption("--ipv4", "prefer IPv4", letter="4"),
    RsyncOption("--ipv6", "prefer IPv6", letter="6"),
    RsyncOption("--whole-file", "send whole files, without the delta algorithm", letter="W"),
    RsyncOption("--no-whole-file", "use the delta algorithm", aliases=("--no-W",)),
    RsyncOption("--block-size", "fixed block size of the delta algorithm", letter="B", value=_size),
    RsyncOption("--sparse", "write runs of zeros as holes", letter="S"),
    RsyncOption("--preallocate", "allocate each destination file before writing it"),
    RsyncOption("--fsync", "fsync every written file"),
    RsyncOption("--executability", "keep whether a file is executable", letter="E"),
    RsyncOption("--chmod", "permission bits of new files and folders", value=_chmod),
)
_LONG: dict[str, RsyncOption] = {n: o for o in OPTIONS for n in (o.name, *o.aliases)}
_NOT_ALLOWED = "is not an option the sync engine allows (see docs/sync.md)"
_SSH_HINT = (
    ": the engine builds the ssh command itself, from the volume's ssh_port, "
    "ssh_identity_file, ssh_known_hosts and ssh_options"
)
_HINTS = {"-e": _SSH_HINT, "--rsh": _SSH_HINT}
_SHORT: dict[str, RsyncOption] = {o.letter: o for o in OPTIONS if o.letter}


def _split(value: Any, key: str, where: str) -> list[str]:
    """The items of a list, or of a string split shell-style (the seed's form)."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as e:
            raise BadRequest(
                f"sync error: {key} of {where}: {value!r} does not split ({e})", key=key
            ) from None
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise BadRequest(
        f"sync error: {key} of {where}: {value!r} is not a string or a list of strings", key=key
    )


def check_user_args(args: str | Sequence[str] | None, *, where: str) -> list[str]:
    """The rsync options ``args`` (a list, or a string split shell-style) as they are
    handed to rsync; :class:`BadRequest` naming the first one :data:`OPTIONS` does
    not allow.

    Long options take their value as ``--opt=value`` or as the next item; one-letter
    options may be bundled (``-zcW``), and one taking a value (``-B``) takes the rest
    of the bundle or the next item. Every value is checked. The result holds each
    option once per mention, spelled ``--name`` or ``--name=value``, so it parses
    again to itself.

    >>> check_user_args("", where="volume 'v1'")
    []
    >>> check_user_args(["-zB", "8192", "--zc=zstd", "--chmod=Du=rwx,go=rx"], where="v")
    ['--compress', '--block-size=8192', '--compress-choice=zstd', '--chmod=Du=rwx,go=rx']
    >>> check_user_args(["--delete"], where="volume 'v1'")
    Traceback (most recent call last):
    ...
    damas_core.errors.BadRequest: sync error: rsync_args of volume 'v1': '--delete' is not an option the sync engine allows (see docs/sync.md)
    >>> check_user_args(["--bwlimit=lots"], where="volume 'v1'")
    Traceback (most recent call last):
    ...
    damas_core.errors.BadRequest: sync error: rsync_args of volume 'v1': --bwlimit: 'lots' is not a size (a number, optionally K, M or G)
    """
    items = _split(args, "rsync_args", where)

    def refuse(reason: str) -> BadRequest:
        return BadRequest(f"sync error: rsync_args of {where}: {reason}", key="rsync_args")

    def valued(option: RsyncOption, value: str | None, spelled: str) -> str:
        if value is None:
            raise refuse(f"{spelled} needs a value")
        if "\x00" in value or "\n" in value:
            raise refuse(f"{spelled}: {value!r} holds a NUL or newline")
        try:
            return f"{option.name}={option.value(value)}"  # type: ignore[misc]
        except ValueError as e:
            raise refuse(f"{spelled}: {e}") from None

    out: list[str] = []
    i = 0
    while i < len(items):
        item = items[i]
        i += 1
        if item.startswith("--") and item != "--":
            name, eq, value = item.partition("=")
            option = _LONG.get(name)
            if option is None:
                raise refuse(f"{name!r} {_NOT_ALLOWED}{_HINTS.get(name, '')}")
            if option.value is None:
                if eq:
                    raise refuse(f"{name} takes no value ({item!r})")
                out.append(option.name)
                continue
            if not eq:
                value = items[i] if i < len(items) else None
                i += 1
            out.append(valued(option, value, name))
        elif item.startswith("-") and len(item) > 1 and item != "--":
            letters = item[1:]
            j = 0
            while j < len(letters):
                letter = letters[j]
                j += 1
                option = _SHORT.get(letter)
                if option is None:
                    inside = f" (in {item!r})" if len(letters) > 1 else ""
                    hint = _HINTS.get(f"-{letter}", "")
                    raise refuse(f"'-{letter}'{inside} {_NOT_ALLOWED}{hint}")
                if option.value is None:
                    out.append(option.name)
                    continue
                value = letters[j:]
                j = len(letters)
                if not value:
                    value = items[i] if i < len(items) else None
                    i += 1
                out.append(valued(option, value, f"-{letter}"))
        else:
            raise refuse(f"{item!r} is not an option (an option starts with '-')")
    return out


# -- rsync's environment -----------------------------------------------------------------

#: the variables a volume's ``rsync_env`` may set, with the check of their values
ENV_VARIABLES: dict[str, tuple[Check, str]] = {
    "TZ": (
        # a zone name under the system's zoneinfo, or a POSIX rule: never a file path
        _matching(
            r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-][A-Za-z0-9_.+-]*)*|[A-Za-z<][A-Za-z0-9<>+,.:-]*",
            "a time zone name (Europe/Paris) or rule (CET-1CEST)",
        ),
        "the time zone of rsync's messages",
    ),
    "RSYNC_COMPRESS_LIST": (
        _one_of(COMPRESSIONS, separator=" ", most=len(COMPRESSIONS)),
        "the compression algorithms rsync negotiates, in order of preference",
    ),
    "RSYNC_CHECKSUM_LIST": (
        _one_of(CHECKSUMS, separator=" ", most=len(CHECKSUMS)),
        "the checksum algorithms rsync negotiates, in order of preference",
    ),
}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_env(env: str | Mapping[str, Any] | None, *, where: str) -> dict[str, str]:
    """The variables ``env`` adds to rsync's environment: an object, or a string of
    ``NAME=value`` items separated by blanks or newlines (split shell-style, so a value
    may be quoted); :class:`BadRequest` naming the first variable
    :data:`ENV_VARIABLES` does not allow or whose value it refuses.

    >>> check_env("", where="volume 'v1'")
    {}
    >>> check_env({"RSYNC_COMPRESS_LIST": "zstd zlib"}, where="v")
    {'RSYNC_COMPRESS_LIST': 'zstd zlib'}
    >>> check_env({"RSYNC_RSH": "sh -c 'id' --"}, where="volume 'v1'")
    Traceback (most recent call last):
    ...
    damas_core.errors.BadRequest: sync error: rsync_env of volume 'v1': 'RSYNC_RSH' is not a variable the sync engine allows (see docs/sync.md)
    """

    def refuse(reason: str) -> BadRequest:
        return BadRequest(f"sync error: rsync_env of {where}: {reason}", key="rsync_env")

    pairs: list[tuple[Any, Any]]
    if env is None:
        pairs = []
    elif isinstance(env, Mapping):
        pairs = list(env.items())
    elif isinstance(env, str):
        pairs = []
        for item in _split(env, "rsync_env", where):
            name, eq, value = item.partition("=")
            if not eq:
                raise refuse(f"{item!r} is not NAME=value")
            if any(name == seen for seen, _ in pairs):
                raise refuse(f"{name!r} is set twice")
            pairs.append((name, value))
    else:
        raise refuse(f"{env!r} is not an object or a string of NAME=value")
    out: dict[str, str] = {}
    for name, value in pairs:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise refuse(f"{name!r} is not a variable name")
        if name not in ENV_VARIABLES:
            raise refuse(f"{name!r} is not a variable the sync engine allows (see docs/sync.md)")
        if not isinstance(value, str) or "\x00" in value or "\n" in value:
            raise refuse(f"{name}: {value!r} is not a string without NUL or newline")
        try:
            out[name] = ENV_VARIABLES[name][0](value)
        except ValueError as e:
            raise refuse(f"{name}: {e}") from None
    return out


# -- ssh ---------------------------------------------------------------------------------

_yes_no = _one_of(("yes", "no"))
_ALGORITHMS = _matching(r"[+^-]?[a-z0-9@._-]+(,[a-z0-9@._-]+)*", "a list of algorithm names")
_QOS = (
    *(f"af{a}{b}" for a in "1234" for b in "123"),
    *(f"cs{n}" for n in range(8)),
    *("ef", "le", "lowdelay", "throughput", "reliability", "none"),
)

#: the ssh ``-o`` options a volume's ``ssh_options`` may set (names as ssh spells them)
SSH_OPTIONS: dict[str, tuple[Check, str]] = {
    "AddressFamily": (_one_of(("any", "inet", "inet6")), "IP family: any, inet, inet6"),
    "Ciphers": (_ALGORITHMS, "the ciphers ssh offers"),
    "Compression": (_yes_no, "ssh compression: yes or no"),
    "ConnectTimeout": (_positive, "seconds to wait for the connection"),
    "ConnectionAttempts": (_positive, "connection attempts before giving up"),
    "IPQoS": (
        _one_of(_QOS, separator=" ", most=2),
        "type of service: one or two of af11, cs1, ef, lowdelay, throughput...",
    ),
    "LogLevel": (
        _one_of(("QUIET", "FATAL", "ERROR", "INFO", "VERBOSE")),
        "what ssh prints: QUIET, FATAL, ERROR, INFO, VERBOSE",
    ),
    "MACs": (_ALGORITHMS, "the MAC algorithms ssh offers"),
    "ServerAliveCountMax": (_count, "unanswered keep-alives before ssh gives up"),
    "ServerAliveInterval": (_count, "seconds between keep-alives (0: none)"),
    "StrictHostKeyChecking": (
        _one_of(("yes", "accept-new")),
        "yes (the host must be in known_hosts) or accept-new (a new host is added); never no",
    ),
    "TCPKeepAlive": (_yes_no, "TCP keep-alives: yes or no"),
}
_SSH_NAMES = {name.lower(): name for name in SSH_OPTIONS}
#: the volume keys the engine builds ssh's command line from
SSH_KEYS = ("ssh_identity_file", "ssh_known_hosts", "ssh_port", "ssh_options")
_PATH = re.compile(r"(/[A-Za-z0-9._@+-]+)+")


def ssh_path(volume: Mapping[str, Any], key: str) -> str | None:
    """The absolute path in ``volume[key]`` (``None`` when unset); :class:`BadRequest`
    unless it is one ssh reads as written (letters, digits, ``. _ @ + -`` and ``/``).

    >>> ssh_path({"ssh_known_hosts": "/etc/damas/known_hosts"}, "ssh_known_hosts")
    '/etc/damas/known_hosts'
    """
    value = volume.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not _PATH.fullmatch(value):
        raise BadRequest(
            f"sync error: {key} of volume {volume.get('_id')!r}: {value!r} is not an absolute "
            "path of letters, digits, '._@+-' and '/'",
            id=volume.get("_id"),
            key=key,
        )
    return value


def check_ssh_options(options: Mapping[str, Any] | None, *, where: str) -> list[str]:
    """``["-o", "Name=value", ...]`` for ``options`` (an object; names as ssh spells
    them, in any case); :class:`BadRequest` naming the first option
    :data:`SSH_OPTIONS` does not allow or whose value it refuses.

    >>> check_ssh_options({"stricthostkeychecking": "accept-new"}, where="v")
    ['-o', 'StrictHostKeyChecking=accept-new']
    >>> check_ssh_options({"ProxyCommand": "sh -c id"}, where="volume 'v1'")
    Traceback (most recent call last):
    ...
    damas_core.errors.BadRequest: sync error: ssh_options of volume 'v1': 'ProxyCommand' is not an ssh option the sync engine allows (see docs/sync.md)
    """

    def refuse(reason: str) -> BadRequest:
        return BadRequest(f"sync error: ssh_options of {where}: {reason}", key="ssh_options")

    if options is None:
        return []
    if not isinstance(options, Mapping):
        raise refuse(f"{options!r} is not an object of option names and values")
    out: list[str] = []
    for name, value in options.items():
        canonical = _SSH_NAMES.get(name.lower()) if isinstance(name, str) else None
        if canonical is None:
            raise refuse(f"{name!r} is not an ssh option the sync engine allows (see docs/sync.md)")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise refuse(f"{canonical}: {value!r} is not a string or a whole number")
        try:
            out += ["-o", f"{canonical}={SSH_OPTIONS[canonical][0](value)}"]
        except ValueError as e:
            raise refuse(f"{canonical}: {e}") from None
    return out


def ssh_args(volume: Mapping[str, Any]) -> list[str]:
    """The ssh options the engine adds to reach ``volume``, from its ``ssh_*`` keys:
    ``-i`` with ``IdentitiesOnly=yes`` for ``ssh_identity_file``,
    ``UserKnownHostsFile`` for ``ssh_known_hosts``, then ``ssh_options``. (The port
    is part of the volume's :func:`~damas_core.sync.volumes.endpoint_of`.)

    >>> ssh_args({"ssh_identity_file": "/keys/sync", "ssh_known_hosts": "/keys/hosts"})
    ['-i', '/keys/sync', '-o', 'IdentitiesOnly=yes', '-o', 'UserKnownHostsFile=/keys/hosts']
    """
    out: list[str] = []
    identity = ssh_path(volume, "ssh_identity_file")
    if identity is not None:
        out += ["-i", identity, "-o", "IdentitiesOnly=yes"]
    known_hosts = ssh_path(volume, "ssh_known_hosts")
    if known_hosts is not None:
        out += ["-o", f"UserKnownHostsFile={known_hosts}"]
    return out + check_ssh_options(volume.get("ssh_options"), where=f"volume {volume.get('_id')!r}")


def transfer_options(
    params: Mapping[str, Any],
    own: Mapping[str, Any],
    other: Mapping[str, Any],
    *,
    rsync: str = "rsync",
    ssh_program: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The keyword arguments of :func:`.rsync.transfer` between this site's volume
    ``own`` and ``other``, everything checked: the global, own and other volume's
    ``rsync_args`` in that order, both volumes' ``rsync_env`` (the other's wins), and
    the ssh command: ``ssh_program`` (the agent's operator's, default ``ssh``) then
    the options built from ``other``'s ssh keys. :class:`BadRequest` names what is
    refused.

    >>> transfer_options({"timeout": 60}, {"_id": "a", "rsync_args": ""},
    ...                  {"_id": "b", "rsync_args": "-z", "rsync_env": ""})["extra_args"]
    ['--compress']
    """
    args = check_user_args(params.get("rsync_args"), where="rsyncGlobalParameters")
    args += check_user_args(own.get("rsync_args"), where=f"volume {own.get('_id')!r}")
    args += check_user_args(other.get("rsync_args"), where=f"volume {other.get('_id')!r}")
    env = check_env(own.get("rsync_env"), where=f"volume {own.get('_id')!r}")
    env.update(check_env(other.get("rsync_env"), where=f"volume {other.get('_id')!r}"))
    return {
        "rsync": rsync,
        "timeout": int(params.get("timeout", 600)),
        "ssh_command": [*(ssh_program or ["ssh"]), *ssh_args(other)],
        "extra_args": args,
        "env": env,
    }


__all__ = [
    "CHECKSUMS",
    "COMPRESSIONS",
    "ENV_VARIABLES",
    "OPTIONS",
    "SSH_KEYS",
    "SSH_OPTIONS",
    "RsyncOption",
    "check_env",
    "check_ssh_options",
    "check_user_args",
    "ssh_args",
    "ssh_path",
    "transfer_options",
]
