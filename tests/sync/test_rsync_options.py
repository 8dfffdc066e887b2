"""What a volume may hand to rsync and ssh: allowlists, with real rsync behind them."""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

import pytest
from damas_core.sync import Agent
from damas_core.sync import rsync as rs
from damas_core.sync.rsync_options import (
    OPTIONS,
    check_env,
    check_ssh_options,
    check_user_args,
    ssh_args,
    transfer_options,
)
from damas_core.sync.volumes import check_volume, create_volume, endpoint_of, update_volume
from hypothesis import given, settings
from hypothesis import strategies as st

from damas_core.errors import BadRequest

from .conftest import Sites, needs_rsync

# -- rsync options ---------------------------------------------------------------------------

#: (rsync_args, the option the refusal names): each one changes which files move,
#: where they go, what runs, or what the engine reads back; all are refused
HOSTILE = [
    # running a program
    (["-esh -c 'id > /tmp/PWNED'"], "'-e'"),
    ("-esh -c 'id > /tmp/PWNED'", "'-e'"),
    (["-zesh"], "'-e' (in '-zesh')"),
    (["-Pe", "sh"], "'-P' (in '-Pe')"),
    (["-ze", "sh"], "'-e' (in '-ze')"),
    (["-cze"], "'-e' (in '-cze')"),
    (["-e", "ssh -p 2222"], "'-e'"),
    ("-e 'ssh -p 2222'", "'-e'"),
    (["--rsh=sh"], "'--rsh'"),
    (["--rsync-path=sh -c id"], "'--rsync-path'"),
    (["-M", "--log-file=/tmp/x"], "'-M'"),
    (["--remote-option=--log-file=/tmp/x"], "'--remote-option'"),
    (["--daemon"], "'--daemon'"),
    (["--config=/tmp/x"], "'--config'"),
    (["--server"], "'--server'"),
    (["--sender"], "'--sender'"),
    (["--early-input=/etc/shadow"], "'--early-input'"),
    # removing or deleting files
    (["--remove-sent-files"], "'--remove-sent-files'"),
    (["--remove-source-files"], "'--remove-source-files'"),
    (["--del"], "'--del'"),
    (["--delete"], "'--delete'"),
    (["--delete-after"], "'--delete-after'"),
    (["--delete-delay"], "'--delete-delay'"),
    (["--delete-before"], "'--delete-before'"),
    (["--delete-during"], "'--delete-during'"),
    (["--delete-excluded"], "'--delete-excluded'"),
    (["--delete-missing-args"], "'--delete-missing-args'"),
    (["--force"], "'--force'"),
    (["--max-delete=1"], "'--max-delete'"),
    (["--dele"], "'--dele'"),  # an abbreviation is not the option either
    # following links out of the volume, other files, other places
    (["-L"], "'-L'"),
    (["-zL"], "'-L' (in '-zL')"),
    (["--copy-unsafe-links"], "'--copy-unsafe-links'"),
    (["--copy-links"], "'--copy-links'"),
    (["-k"], "'-k'"),
    (["-K"], "'-K'"),
    (["-l"], "'-l'"),
    (["-a"], "'-a'"),
    (["-r"], "'-r'"),
    (["-R"], "'-R'"),
    (["-zr"], "'-r' (in '-zr')"),
    (["-T", "/tmp"], "'-T'"),
    (["-T/tmp"], "'-T' (in '-T/tmp')"),
    (["--temp-dir=/tmp"], "'--temp-dir'"),
    (["-f", "+ /etc/**"], "'-f'"),
    (["-F"], "'-F'"),
    (["--filter=merge /tmp/rules"], "'--filter'"),
    (["--include=*"], "'--include'"),
    (["--exclude=*"], "'--exclude'"),
    (["--exclude-from=/tmp/x"], "'--exclude-from'"),
    (["--include-from=/tmp/x"], "'--include-from'"),
    (["--files-from=/etc/passwd"], "'--files-from'"),
    (["--from0"], "'--from0'"),
    (["-0"], "'-0'"),
    (["-C"], "'-C'"),
    (["--link-dest=/"], "'--link-dest'"),
    (["--copy-dest=/"], "'--copy-dest'"),
    (["--compare-dest=/"], "'--compare-dest'"),
    (["-b"], "'-b'"),
    (["--backup-dir=/tmp"], "'--backup-dir'"),
    (["--suffix=~"], "'--suffix'"),
    (["--mkpath"], "'--mkpath'"),
    (["--write-batch=/tmp/x"], "'--write-batch'"),
    (["--only-write-batch=/tmp/x"], "'--only-write-batch'"),
    (["--read-batch=/tmp/x"], "'--read-batch'"),
    (["--write-devices"], "'--write-devices'"),
    (["--copy-devices"], "'--copy-devices'"),
    (["-D"], "'-D'"),
    (["--specials"], "'--specials'"),
    (["-x"], "'-x'"),
    # ownership and privileged attributes (the agent often runs as root)
    (["--chown=root:root"], "'--chown'"),
    (["--usermap=*:root"], "'--usermap'"),
    (["--groupmap=*:root"], "'--groupmap'"),
    (["-o"], "'-o'"),
    (["-g"], "'-g'"),
    (["-p"], "'-p'"),
    (["-zp"], "'-p' (in '-zp')"),
    (["-A"], "'-A'"),
    (["-X"], "'-X'"),
    (["--super"], "'--super'"),
    (["--fake-super"], "'--fake-super'"),
    (["--copy-as=root"], "'--copy-as'"),
    (["--numeric-ids"], "'--numeric-ids'"),
    # partial files and in-place writes (the engine owns the partial directory)
    (["--partial"], "'--partial'"),
    (["-P"], "'-P'"),
    (["--partial-dir=x"], "'--partial-dir'"),
    (["--inplace"], "'--inplace'"),
    (["--append"], "'--append'"),
    (["--append-verify"], "'--append-verify'"),
    (["--delay-updates"], "'--delay-updates'"),
    # which files move, and how they are compared
    (["--existing"], "'--existing'"),
    (["--ignore-existing"], "'--ignore-existing'"),
    (["--ignore-non-existing"], "'--ignore-non-existing'"),
    (["-u"], "'-u'"),
    (["--size-only"], "'--size-only'"),
    (["-I"], "'-I'"),
    (["--modify-window=100"], "'--modify-window'"),
    (["-@100"], "'-@' (in '-@100')"),
    (["--max-size=1"], "'--max-size'"),
    (["--min-size=1G"], "'--min-size'"),
    (["-n"], "'-n'"),
    (["--dry-run"], "'--dry-run'"),
    (["--list-only"], "'--list-only'"),
    (["--ignore-errors"], "'--ignore-errors'"),
    (["--iconv=utf8,latin1"], "'--iconv'"),
    (["--checksum-choice=none"], "--checksum-choice: 'none'"),
    (["--cc=xxh128,none"], "--cc: 'xxh128,none'"),
    # what the engine reads back (messages and itemized lists) and where logs go
    (["--log-file=/tmp/x"], "'--log-file'"),
    (["--log-file-format=%f"], "'--log-file-format'"),
    (["--out-format=%n"], "'--out-format'"),
    (["--info=all"], "'--info'"),
    (["--debug=all"], "'--debug'"),
    (["--stderr=all"], "'--stderr'"),
    (["-v"], "'-v'"),
    (["-q"], "'-q'"),
    (["-i"], "'-i'"),
    (["-8"], "'-8'"),
    (["-h"], "'-h'"),
    (["--progress"], "'--progress'"),
    (["--stats"], "'--stats'"),
    (["--password-file=/tmp/x"], "'--password-file'"),
    (["--contimeout=5"], "'--contimeout'"),  # daemons only: every ssh/local call would fail
    (["-s"], "'-s'"),
    (["--old-args"], "'--old-args'"),
    (["--protocol=20"], "'--protocol'"),
    # not options at all: a path would be one more source or destination
    (["/etc/"], "'/etc/'"),
    (["--bwlimit=100", "/etc/"], "'/etc/'"),
    (["--"], "'--'"),
    (["-"], "'-'"),
    ("-z -- /etc/", "'--'"),
    # values that are not what the option takes
    (["--bwlimit", "--delete"], "--bwlimit: '--delete' is not a size"),
    (["--bwlimit"], "--bwlimit needs a value"),
    (["-B"], "-B needs a value"),
    (["-Be"], "-B: 'e' is not a size"),
    (["-zB", "-e"], "-B: '-e' is not a size"),
    (["--compress=yes"], "--compress takes no value"),
    (["--bwlimit=1\x00"], "--bwlimit"),
    (["--chmod=u+x\n--delete"], "--chmod"),
    (["--chmod=u+s"], "--chmod: 'u+s'"),
    (["--chmod=g+s,o-w"], "--chmod: 'g+s,o-w'"),
    (["--chmod=+t"], "--chmod: '+t'"),
    (["--chmod=4755"], "--chmod: '4755'"),
    (["--chmod=F6444"], "--chmod: 'F6444'"),
    (["--chmod="], "--chmod: ''"),
    (["--timeout=0"], "--timeout: '0'"),
    (["--timeout=-1"], "--timeout: '-1'"),
    (["--timeout=\uff11\uff10"], "--timeout"),  # fullwidth digits are not digits here
    (["--zl=abc"], "--zl: 'abc'"),
    (["--zc=brotli"], "--zc: 'brotli'"),
    (["--skip-compress=gz;id"], "--skip-compress"),
    ([1], "[1] is not a string or a list of strings"),
    ([None], "[None] is not"),
    ({"-z": True}, "is not a string or a list"),
    ("-z '", "does not split"),
]


@pytest.mark.parametrize(("args", "named"), HOSTILE, ids=[repr(a)[:40] for a, _ in HOSTILE])
def test_hostile_options_are_refused_naming_the_option(args, named):
    with pytest.raises(BadRequest) as e:
        check_user_args(args, where="volume 'vol_x'")
    assert named in str(e.value), str(e.value)
    assert str(e.value).startswith("sync error: rsync_args of volume 'vol_x': ")
    assert e.value.status == 400 and e.value.key == "rsync_args"


def test_every_hostile_option_is_refused_on_a_volume_write(tracker):
    for args, named in HOSTILE:
        with pytest.raises(BadRequest) as e:
            create_volume(
                tracker, {"_id": "v", "name": "paris", "url": "file:///p/", "rsync_args": args}
            )
        assert named in str(e.value) or e.value.key == "rsync_args", args
    assert tracker.read("v") is None  # nothing written


#: (rsync_args, what reaches rsync): every allowed option, in each of its spellings
ALLOWED = [
    ("--bwlimit=5000", ["--bwlimit=5000"]),
    ("--bwlimit 1.5M", ["--bwlimit=1.5M"]),
    (["--bwlimit", "10KiB"], ["--bwlimit=10KiB"]),
    ("-z", ["--compress"]),
    ("--compress", ["--compress"]),
    ("--no-compress", ["--no-compress"]),
    ("--no-z", ["--no-compress"]),
    ("--compress-choice=zstd", ["--compress-choice=zstd"]),
    ("--zc lz4", ["--compress-choice=lz4"]),
    ("--compress-level=3", ["--compress-level=3"]),
    ("--zl=-1", ["--compress-level=-1"]),
    ("-z --compress-threads=2", ["--compress", "--compress-threads=2"]),
    ("--skip-compress=gz/jpg/mp[34]", ["--skip-compress=gz/jpg/mp[34]"]),
    ("-c", ["--checksum"]),
    ("--checksum", ["--checksum"]),
    ("--checksum-choice=xxh128", ["--checksum-choice=xxh128"]),
    ("--cc=xxh3,md5", ["--checksum-choice=xxh3,md5"]),
    ("--timeout=30", ["--timeout=30"]),
    ("-4", ["--ipv4"]),
    ("--ipv6", ["--ipv6"]),
    ("-W", ["--whole-file"]),
    ("--no-whole-file", ["--no-whole-file"]),
    ("--no-W", ["--no-whole-file"]),
    ("--block-size=4096", ["--block-size=4096"]),
    ("-B8K", ["--block-size=8K"]),
    ("-B 2048", ["--block-size=2048"]),
    ("-S", ["--sparse"]),
    ("--preallocate", ["--preallocate"]),
    ("--fsync", ["--fsync"]),
    ("-E", ["--executability"]),
    ("--chmod=Du=rwx,go=rx,Fu=rw,go=r", ["--chmod=Du=rwx,go=rx,Fu=rw,go=r"]),
    ("--chmod D755,F640", ["--chmod=D755,F640"]),
    ("-zcW", ["--compress", "--checksum", "--whole-file"]),
    ("-zcB4096", ["--compress", "--checksum", "--block-size=4096"]),
    ("-czB 4096 -S", ["--checksum", "--compress", "--block-size=4096", "--sparse"]),
    (["-z", "--bwlimit=100", "-E"], ["--compress", "--bwlimit=100", "--executability"]),
    ("", []),
    ([], []),
    (None, []),
]


@pytest.fixture
def logging_rsync(tmp_path):
    """An rsync program that records its arguments (one per line) and runs rsync."""
    log = tmp_path / "rsync-args.log"
    program = tmp_path / "logging-rsync"
    program.write_text(
        f'#!/bin/sh\nfor a in "$@"; do printf \'%s\\n\' "$a"; done >> {shlex.quote(str(log))}\n'
        'exec rsync "$@"\n'
    )
    program.chmod(0o755)
    return str(program), log


@needs_rsync
@pytest.mark.parametrize(("args", "passed"), ALLOWED, ids=[repr(a)[:40] for a, _ in ALLOWED])
def test_allowed_options_reach_rsync_in_a_real_transfer(args, passed, tmp_path, logging_rsync):
    assert check_user_args(args, where="v") == passed
    program, log = logging_rsync
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "a.bin").write_bytes(os.urandom(20_000))
    result = rs.transfer(
        rs.Endpoint(str(src)), rs.Endpoint(str(dst)), ["a.bin"], rsync=program, extra_args=passed
    )
    assert result.returncode == 0, result.stderr
    assert (dst / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
    seen = log.read_text().splitlines()
    # handed to rsync as they are, after the engine's options and before "--"
    end = seen.index("--")
    assert seen[end - len(passed) : end] == passed


@needs_rsync
def test_chmod_sets_the_mode_of_new_files(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "a").write_text("a")
    os.chmod(src / "a", 0o777)
    args = check_user_args("--chmod=F640", where="v")
    rs.transfer(rs.Endpoint(str(src)), rs.Endpoint(str(dst)), ["a"], extra_args=args)
    assert stat.S_IMODE(os.stat(dst / "a").st_mode) == 0o640


# fragments an argument list is drawn from: allowed spellings, hostile ones, values,
# and odd text; bundles are joined letters
_LETTERS = "zcW46SEBePLarpvqi@T0-"
_FRAGMENTS = st.one_of(
    st.sampled_from(
        [n for o in OPTIONS for n in (o.name, *o.aliases)]
        + ["--delete", "--rsh", "-e", "--", "-", "--timeout", "--chmod", "--bwlimit"]
    ),
    st.sampled_from(["100", "8K", "-1", "u+x", "zstd", "sh", "/etc/", "", "a=b", "Du=rwx"]),
    st.builds(
        lambda n, v: f"{n}={v}",
        st.sampled_from([o.name for o in OPTIONS]),
        st.sampled_from(["1", "zstd", "xxh3,md5", "F644", "u+s", "x y", ""]),
    ),
    st.text(_LETTERS, min_size=1, max_size=5).map(lambda s: "-" + s),
    st.text(max_size=8),
)
_BY_NAME = {o.name: o for o in OPTIONS}


@settings(max_examples=400, deadline=None)
@given(st.lists(_FRAGMENTS, max_size=6), st.booleans())
def test_what_check_user_args_returns_is_only_allowed_options(items, as_string):
    args = shlex.join(items) if as_string else items
    try:
        out = check_user_args(args, where="v")
    except BadRequest as e:
        assert e.key == "rsync_args"
        return
    for item in out:
        name, eq, value = item.partition("=")
        option = _BY_NAME[name]  # the canonical spelling of an allowed option
        assert bool(eq) == (option.value is not None), item
        if eq:
            assert option.value(value) == value
            assert "\x00" not in value and "\n" not in value
    # the output parses again to itself: nothing in it changes meaning on a second read
    assert check_user_args(out, where="v") == out
    assert check_user_args(shlex.join(out), where="v") == out


# -- rsync's environment --------------------------------------------------------------------

HOSTILE_ENV = [
    ({"RSYNC_RSH": "sh -c 'id > /tmp/PWNED' --"}, "'RSYNC_RSH'"),
    ({"RSYNC_CONNECT_PROG": "sh -c id"}, "'RSYNC_CONNECT_PROG'"),
    ({"RSYNC_PROXY": "evil:80"}, "'RSYNC_PROXY'"),
    ({"RSYNC_SHELL": "/bin/sh"}, "'RSYNC_SHELL'"),
    ({"RSYNC_PASSWORD": "x"}, "'RSYNC_PASSWORD'"),
    ({"RSYNC_ICONV": "latin1"}, "'RSYNC_ICONV'"),
    ({"RSYNC_PARTIAL_DIR": "/tmp"}, "'RSYNC_PARTIAL_DIR'"),
    ({"RSYNC_PROTECT_ARGS": "0"}, "'RSYNC_PROTECT_ARGS'"),
    ({"RSYNC_OLD_ARGS": "1"}, "'RSYNC_OLD_ARGS'"),
    ({"RSYNC_MAX_ALLOC": "1G"}, "'RSYNC_MAX_ALLOC'"),
    ({"LD_PRELOAD": "/tmp/evil.so"}, "'LD_PRELOAD'"),
    ({"LD_LIBRARY_PATH": "/tmp"}, "'LD_LIBRARY_PATH'"),
    ({"LD_AUDIT": "/tmp/evil.so"}, "'LD_AUDIT'"),
    ({"PATH": "/tmp"}, "'PATH'"),
    ({"HOME": "/tmp"}, "'HOME'"),
    ({"SHELL": "/tmp/sh"}, "'SHELL'"),
    ({"BASH_ENV": "/tmp/x"}, "'BASH_ENV'"),
    ({"ENV": "/tmp/x"}, "'ENV'"),
    ({"IFS": "/"}, "'IFS'"),
    ({"PYTHONPATH": "/tmp"}, "'PYTHONPATH'"),
    ({"GCONV_PATH": "/tmp"}, "'GCONV_PATH'"),
    ({"LOCPATH": "/tmp"}, "'LOCPATH'"),
    ({"SSH_ASKPASS": "/tmp/x"}, "'SSH_ASKPASS'"),
    ({"SSH_ASKPASS_REQUIRE": "force"}, "'SSH_ASKPASS_REQUIRE'"),
    ({"SSH_AUTH_SOCK": "/tmp/agent"}, "'SSH_AUTH_SOCK'"),
    ({"DISPLAY": ":0"}, "'DISPLAY'"),
    ({"TMPDIR": "/tmp"}, "'TMPDIR'"),
    ({"LANG": "C"}, "'LANG'"),
    ({"LC_ALL": "C"}, "'LC_ALL'"),
    ({"tz": "UTC"}, "'tz'"),
    ({"TZ ": "UTC"}, "'TZ '"),
    ({"": "x"}, "''"),
    ({"TZ": ":/etc/shadow"}, "TZ: ':/etc/shadow'"),
    ({"TZ": "/etc/shadow"}, "TZ: '/etc/shadow'"),
    ({"TZ": "../../etc/shadow"}, "TZ: '../../etc/shadow'"),
    ({"TZ": "Europe/../../../etc/shadow"}, "TZ: 'Europe/../../../etc/shadow'"),
    ({"TZ": "UTC\nRSYNC_RSH=sh"}, "TZ"),
    ({"TZ": "UTC\x00"}, "TZ"),
    ({"TZ": 1}, "TZ: 1"),
    ({"RSYNC_CHECKSUM_LIST": "none"}, "RSYNC_CHECKSUM_LIST: 'none'"),
    ({"RSYNC_COMPRESS_LIST": "zstd; id"}, "RSYNC_COMPRESS_LIST"),
    ("TZ=UTC RSYNC_RSH=sh", "'RSYNC_RSH'"),
    ("TZ=UTC\nLD_PRELOAD=/tmp/x.so", "'LD_PRELOAD'"),
    ('export RSYNC_PASSWORD="x"', "'export' is not NAME=value"),
    ("TZ=UTC TZ=CET", "'TZ' is set twice"),
    ("TZ='UTC", "does not split"),
    (["TZ=UTC"], "is not an object or a string"),
]


@pytest.mark.parametrize(("env", "named"), HOSTILE_ENV, ids=[repr(e)[:40] for e, _ in HOSTILE_ENV])
def test_hostile_environment_is_refused_naming_the_variable(env, named):
    with pytest.raises(BadRequest) as e:
        check_env(env, where="volume 'vol_x'")
    assert named in str(e.value), str(e.value)
    assert e.value.status == 400 and e.value.key == "rsync_env"


@pytest.mark.parametrize(
    ("env", "checked"),
    [
        ("", {}),
        (None, {}),
        ({}, {}),
        ("TZ=UTC", {"TZ": "UTC"}),
        ("TZ=America/Argentina/Buenos_Aires", {"TZ": "America/Argentina/Buenos_Aires"}),
        ("TZ=Etc/GMT+3", {"TZ": "Etc/GMT+3"}),
        ("TZ=CET-1CEST,M3.5.0,M10.5.0", {"TZ": "CET-1CEST,M3.5.0,M10.5.0"}),
        (
            "TZ=Europe/Paris\nRSYNC_COMPRESS_LIST='zstd zlib'",
            {"TZ": "Europe/Paris", "RSYNC_COMPRESS_LIST": "zstd zlib"},
        ),
        ({"RSYNC_CHECKSUM_LIST": "xxh128 md5"}, {"RSYNC_CHECKSUM_LIST": "xxh128 md5"}),
    ],
)
def test_allowed_environment(env, checked):
    assert check_env(env, where="v") == checked


# -- ssh ------------------------------------------------------------------------------------

HOSTILE_SSH = [
    ({"ProxyCommand": "sh -c 'id > /tmp/PWNED'"}, "'ProxyCommand'"),
    ({"proxycommand": "sh"}, "'proxycommand'"),
    ({"ProxyJump": "evil"}, "'ProxyJump'"),
    ({"LocalCommand": "id"}, "'LocalCommand'"),
    ({"PermitLocalCommand": "yes"}, "'PermitLocalCommand'"),
    ({"Include": "/tmp/x"}, "'Include'"),
    ({"KnownHostsCommand": "/bin/true"}, "'KnownHostsCommand'"),
    ({"Match": "exec id"}, "'Match'"),
    ({"RemoteCommand": "id"}, "'RemoteCommand'"),
    ({"SendEnv": "*"}, "'SendEnv'"),
    ({"SetEnv": "A=b"}, "'SetEnv'"),
    ({"ForwardAgent": "yes"}, "'ForwardAgent'"),
    ({"LocalForward": "1 x:2"}, "'LocalForward'"),
    ({"RemoteForward": "1 x:2"}, "'RemoteForward'"),
    ({"DynamicForward": "1080"}, "'DynamicForward'"),
    ({"ControlMaster": "auto"}, "'ControlMaster'"),
    ({"ControlPath": "/tmp/x"}, "'ControlPath'"),
    ({"IdentityAgent": "/tmp/agent"}, "'IdentityAgent'"),
    ({"IdentityFile": "/tmp/k"}, "'IdentityFile'"),
    ({"UserKnownHostsFile": "/dev/null"}, "'UserKnownHostsFile'"),
    ({"GlobalKnownHostsFile": "/dev/null"}, "'GlobalKnownHostsFile'"),
    ({"PKCS11Provider": "/tmp/evil.so"}, "'PKCS11Provider'"),
    ({"SecurityKeyProvider": "/tmp/evil.so"}, "'SecurityKeyProvider'"),
    ({"CertificateFile": "/tmp/c"}, "'CertificateFile'"),
    ({"User": "root"}, "'User'"),
    ({"Hostname": "evil"}, "'Hostname'"),
    ({"Port": "22"}, "'Port'"),
    ({"BatchMode": "no"}, "'BatchMode'"),
    ({"PasswordAuthentication": "yes"}, "'PasswordAuthentication'"),
    ({"ConnectTimeout=5": "x"}, "'ConnectTimeout=5'"),
    ({"StrictHostKeyChecking": "no"}, "StrictHostKeyChecking: 'no'"),
    ({"StrictHostKeyChecking": "off"}, "StrictHostKeyChecking: 'off'"),
    ({"StrictHostKeyChecking": "ask"}, "StrictHostKeyChecking: 'ask'"),
    ({"ConnectTimeout": "10 -oProxyCommand=sh"}, "ConnectTimeout: '10 -oProxyCommand=sh'"),
    ({"ConnectTimeout": True}, "ConnectTimeout: True"),
    ({"ConnectTimeout": 1.5}, "ConnectTimeout: 1.5"),
    ({"ConnectTimeout": 0}, "ConnectTimeout: '0'"),
    ({"Ciphers": "aes128-ctr ProxyCommand=sh"}, "Ciphers"),
    ({"LogLevel": "DEBUG3"}, "LogLevel: 'DEBUG3'"),
    ({"IPQoS": "af21 cs1 ef"}, "IPQoS: 'af21 cs1 ef'"),
    ({"Compression": "yes\nProxyCommand sh"}, "Compression"),
    (["ConnectTimeout=5"], "is not an object"),
]


@pytest.mark.parametrize(
    ("options", "named"), HOSTILE_SSH, ids=[repr(o)[:40] for o, _ in HOSTILE_SSH]
)
def test_hostile_ssh_options_are_refused_naming_the_option(options, named):
    with pytest.raises(BadRequest) as e:
        check_ssh_options(options, where="volume 'vol_x'")
    assert named in str(e.value), str(e.value)
    assert e.value.status == 400 and e.value.key == "ssh_options"
    with pytest.raises(BadRequest) as e:  # and on a volume write, before anything is written
        check_volume({"_id": "v", "name": "tokyo", "url": "ssh://s@h/p/", "ssh_options": options})
    assert e.value.key == "ssh_options"


def test_allowed_ssh_options_are_spelled_as_ssh_spells_them():
    options = {
        "connecttimeout": 10,
        "ServerAliveInterval": "15",
        "ServerAliveCountMax": 3,
        "StrictHostKeyChecking": "accept-new",
        "Compression": "yes",
        "IPQoS": "af21 cs1",
        "AddressFamily": "inet",
        "Ciphers": "aes128-gcm@openssh.com,aes256-ctr",
        "MACs": "hmac-sha2-256",
        "TCPKeepAlive": "no",
        "ConnectionAttempts": 2,
        "LogLevel": "ERROR",
    }
    assert check_ssh_options(options, where="v") == [
        "-o", "ConnectTimeout=10",
        "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=3",
        "-o", "StrictHostKeyChecking=accept-new",
        "-o", "Compression=yes",
        "-o", "IPQoS=af21 cs1",
        "-o", "AddressFamily=inet",
        "-o", "Ciphers=aes128-gcm@openssh.com,aes256-ctr",
        "-o", "MACs=hmac-sha2-256",
        "-o", "TCPKeepAlive=no",
        "-o", "ConnectionAttempts=2",
        "-o", "LogLevel=ERROR",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("keys", "key"),
    [
        ({"ssh_identity_file": "keys/sync"}, "ssh_identity_file"),
        ({"ssh_identity_file": "~/.ssh/id_ed25519"}, "ssh_identity_file"),
        ({"ssh_identity_file": "-oProxyCommand=sh"}, "ssh_identity_file"),
        ({"ssh_identity_file": "/keys/a key"}, "ssh_identity_file"),
        ({"ssh_identity_file": "/keys/%h"}, "ssh_identity_file"),
        ({"ssh_identity_file": "/keys/k\n"}, "ssh_identity_file"),
        ({"ssh_identity_file": "/"}, "ssh_identity_file"),
        ({"ssh_known_hosts": "/dev/null /tmp/evil"}, "ssh_known_hosts"),
        ({"ssh_known_hosts": "relative"}, "ssh_known_hosts"),
        ({"ssh_port": 0}, "ssh_port"),
        ({"ssh_port": 70000}, "ssh_port"),
        ({"ssh_port": "22"}, "ssh_port"),
        ({"ssh_port": True}, "ssh_port"),
        ({"ssh_port": 2200, "url": "ssh://s@h:2222/p/"}, "ssh_port"),
    ],
)
def test_ssh_keys_are_checked_on_a_volume_write(tracker, keys, key):
    volume = {"_id": "v", "name": "tokyo", "url": "ssh://s@h/p/", **keys}
    with pytest.raises(BadRequest) as e:
        create_volume(tracker, volume)
    assert e.value.key == key, str(e.value)
    assert tracker.read("v") is None


def test_the_engine_builds_the_ssh_command_from_the_volume_keys():
    tokyo = {
        "_id": "vol_tokyo",
        "name": "tokyo",
        "url": "ssh://sync@tokyo.example/data/",
        "ssh_port": 2222,
        "ssh_identity_file": "/etc/damas/id_sync",
        "ssh_known_hosts": "/etc/damas/known_hosts",
        "ssh_options": {"ConnectTimeout": 10},
    }
    check_volume(tokyo)
    options = transfer_options({}, {"_id": "vol_paris"}, tokyo, ssh_program=["ssh", "-v"])
    assert options["ssh_command"] == ["ssh", "-v", *ssh_args(tokyo)]
    args = rs.build_args(
        rs.Endpoint("/srv/p/"),
        endpoint_of(tokyo),
        "/tmp/list",
        ssh_command=options["ssh_command"],
    )
    rsh = next(a for a in args if a.startswith("--rsh="))
    assert shlex.split(rsh[len("--rsh=") :]) == [
        "ssh", "-o", "BatchMode=yes", "-v",
        "-i", "/etc/damas/id_sync", "-o", "IdentitiesOnly=yes",
        "-o", "UserKnownHostsFile=/etc/damas/known_hosts",
        "-o", "ConnectTimeout=10",
        "-p", "2222",
    ]  # fmt: skip


# -- volumes as the seed writes them, and hostile volumes met by a running agent -------------


@pytest.fixture
def two_sites(tmp_path, tracker):
    return Sites(tmp_path, tracker, names=("paris", "tokyo"), walker="scandir")


def _seed_volume(name: str, root: Path) -> dict:
    """A volume as the seed documents it: options and environment as empty strings."""
    return {
        "_id": f"vol_{name}",
        "name": name,
        "url": f"file://{root}/",
        "comment": f"{name} storage",
        "rsync_args": "",
        "rsync_env": "",
        "enableScans": True,
        "enableDiscovery": True,
        "enableReception": True,
        "enableEmission": True,
        "syncAmountReception": 100,
        "syncAmountEmission": 100,
        "sleepBetweenScans": 60,
    }


@needs_rsync
def test_a_volume_written_as_the_seed_shows_it_validates_and_syncs(tmp_path):
    import damas_core

    t = damas_core.open("memory://")
    roots = {}
    for name in ("paris", "tokyo"):
        roots[name] = tmp_path / name
        roots[name].mkdir()
        check_volume(_seed_volume(name, roots[name]))
        t.create(_seed_volume(name, roots[name]))  # as a seed tool writes it
    t.create({"_id": "rsyncGlobalParameters", "syncEverywhere": True, "rsync_args": ""})
    paris, tokyo = (Agent(t, f"vol_{n}", settle=0, walker="scandir") for n in ("paris", "tokyo"))
    tokyo.run_once()  # tokyo's agent is up: it receives, paris does not push
    (roots["paris"] / "shot.exr").write_bytes(b"exr" * 100)
    paris.run_once()
    r = tokyo.run_once()
    assert r.received == ["/shot.exr"], t.read("vol_tokyo").get("stderr_reception")
    assert (roots["tokyo"] / "shot.exr").read_bytes() == b"exr" * 100
    el = t.read("/shot.exr")
    assert el["synced_tokyo"] >= el["time"]
    # the string forms carry options and variables too
    update_volume(
        t, {"_id": "vol_tokyo", "rsync_args": "-z --bwlimit=50000", "rsync_env": "TZ=UTC"}
    )
    (roots["paris"] / "b.txt").write_text("b")
    paris.run_once()
    assert tokyo.run_once().received == ["/b.txt"]


@needs_rsync
def test_an_agent_runs_volume_options_string_and_all(two_sites, logging_rsync):
    program, log = logging_rsync
    two_sites.tracker.update(
        {"_id": "vol_tokyo", "rsync_args": "-zc --chmod=F640", "rsync_env": "TZ=UTC"}
    )
    tokyo = two_sites.agent("tokyo", rsync=program)
    tokyo.run_once()  # up: it receives, paris does not push
    two_sites.write("paris", "/a.txt", "a")
    two_sites.run("paris")
    r = tokyo.run_once()
    assert r.received == ["/a.txt"]
    seen = log.read_text().splitlines()
    assert seen[seen.index("--") - 3 : seen.index("--")] == [
        "--compress",
        "--checksum",
        "--chmod=F640",
    ]
    assert stat.S_IMODE(os.stat(two_sites.path("tokyo", "/a.txt")).st_mode) == 0o640


@needs_rsync
@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ({"rsync_args": ["--remove-source-files"]}, "--remove-source-files"),
        ({"rsync_args": "-zesh -c 'touch PWNED' --"}, "'-e'"),
        ({"rsync_env": {"RSYNC_RSH": "sh -c 'touch PWNED' --"}}, "RSYNC_RSH"),
        ({"rsync_env": "LD_PRELOAD=/tmp/evil.so"}, "LD_PRELOAD"),
    ],
)
def test_a_hostile_volume_written_past_the_checks_moves_nothing(
    two_sites, logging_rsync, tmp_path, monkeypatch, keys, named
):
    """A volume written straight into the store (by an older tool, or by hand) is
    checked again by every agent that would use it: that transfer never starts."""
    program, log = logging_rsync
    tokyo = two_sites.agent("tokyo", rsync=program)
    tokyo.run_once()  # up: it receives, paris does not push
    two_sites.write("paris", "/a.txt", "a")
    two_sites.run("paris")
    two_sites.tracker.update({"_id": "vol_paris", **keys})  # the system account writes it
    monkeypatch.chdir(tmp_path)
    r = tokyo.run_once()
    assert r.received == [] and r.rsync_calls == 0
    assert not log.exists()  # rsync never ran
    assert two_sites.path("paris", "/a.txt").read_text() == "a"  # the origin keeps its file
    assert not two_sites.path("tokyo", "/a.txt").exists()
    assert not (tmp_path / "PWNED").exists()
    assert "synced_tokyo" not in two_sites.tracker.read("/a.txt")
    vol = two_sites.tracker.read("vol_tokyo")
    assert named in vol["stderr_reception"] and vol["exit_reception"] == 1


# -- what the engine reads back from rsync ---------------------------------------------------

ODD_NAMES = ["new\nline.txt", "é n.txt", "back\\#101.txt", "tab\there.txt", 'quote".txt']


@needs_rsync
@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
def test_rsync_output_is_read_back_to_the_names_whatever_the_locale(tmp_path, locale):
    """rsync escapes the bytes it will not print as \\#ooo (which ones depends on the
    locale): the names it reports differing, missing or vanished are read back to the
    names the engine asked for, so a push over ssh is never taken for checked."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    for name in ODD_NAMES:
        (src / name).write_text("ours")
        (dst / name).write_text("a different copy")
    (src / "same.txt").write_text("s")
    rs.transfer(rs.Endpoint(str(src)), rs.Endpoint(str(dst)), ["same.txt"])
    env = {"LC_ALL": locale}
    found = rs.differing(
        rs.Endpoint(str(src)), rs.Endpoint(str(dst)), [*ODD_NAMES, "same.txt"], env=env
    )
    assert found == set(ODD_NAMES)
    result = rs.transfer(
        rs.Endpoint(str(src)), rs.Endpoint(str(dst)), ["gone\n.txt", "gone é.txt"], env=env
    )
    assert result.returncode == rs.RC_MISSING
    assert result.missing == {"gone\n.txt", "gone é.txt"}


@needs_rsync
def test_a_package_differs_when_one_of_its_direct_files_does(tmp_path):
    """A push of a package (relpath ending with ``/``) is checked by its name: it
    differs when a direct file differs at the destination; its subfolders are not its."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    for side in (src, dst):
        for name, data in (("1.exr", "one"), ("2.exr", "two"), ("sub/3.exr", "three")):
            (side / "seq" / name).parent.mkdir(parents=True, exist_ok=True)
            (side / "seq" / name).write_text(data)
    rs.transfer(rs.Endpoint(str(src)), rs.Endpoint(str(dst)), ["seq/"])
    assert rs.differing(rs.Endpoint(str(src)), rs.Endpoint(str(dst)), ["seq/"]) == set()
    (dst / "seq/2.exr").write_text("a different copy")
    found = rs.differing(rs.Endpoint(str(src)), rs.Endpoint(str(dst)), ["seq/"])
    assert found == {"seq", "seq/2.exr"}
    missing = rs.differing(rs.Endpoint(str(src)), rs.Endpoint(str(tmp_path / "none")), ["seq/"])
    assert missing is not None and "seq" in missing
