"""The parsers of a storage's listing and the quoting of remote commands, on any name."""

from __future__ import annotations

import os
import subprocess
import tempfile

from damas_core.sync.ssh_site import (
    connection_status,
    parse_df,
    parse_list_line,
    remote_command,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import needs_rsync

#: a file name as bytes: anything but "/" and NUL (non-UTF-8 bytes, newlines, quotes...)
names = st.binary(min_size=1, max_size=40).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")
)
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=40)


@needs_rsync
@settings(max_examples=12, deadline=None)
@given(st.lists(names, min_size=1, max_size=5, unique=True), st.integers(0, 2**31))
def test_rsync_list_only_reads_back_every_name(raw_names, mtime):
    """Real rsync lists files with hostile names; every line reads back to the name,
    size and mtime (to the second)."""
    with tempfile.TemporaryDirectory() as d:
        top = os.fsencode(d)
        for i, name in enumerate(raw_names):
            path = os.path.join(top, name)
            with open(path, "wb") as f:
                f.write(b"x" * i)
            os.utime(path, (mtime, mtime))
        out = subprocess.run(
            ["rsync", "--list-only", "-r", "--no-h", "--", d + "/"],
            capture_output=True,
            check=True,
            env={**os.environ, "TZ": "UTC", "LC_ALL": "C"},
        ).stdout
    entries = [parse_list_line(line) for line in out.split(b"\n") if line]
    files = {e[3]: (e[1], e[2]) for e in entries if e is not None and e[0] == b"f"}
    assert files == {"/" + os.fsdecode(name): (i, mtime) for i, name in enumerate(raw_names)}


@settings(max_examples=40, deadline=None)
@given(st.lists(texts, min_size=1, max_size=4))
def test_a_remote_command_gives_each_argument_as_one_word(args):
    """What the remote shell receives: each argument exactly, never run."""
    command = remote_command(["printf", "%s\\0", *args])
    out = subprocess.run(["sh", "-c", command], capture_output=True, check=True).stdout
    assert out.split(b"\0")[:-1] == [a.encode("utf-8", "surrogateescape") for a in args]


def test_the_connection_states():
    assert connection_status(0, "") == "ok"
    assert connection_status(255, "ssh: connect to host 10.0.0.1 port 22: No route to host") == (
        "unreachable"
    )
    assert connection_status(255, "root@h: Permission denied (publickey).") == "refused"
    assert connection_status(12, "rsync error: protocol") == "error"


def test_df_is_read_or_ignored():
    assert parse_df(b"garbage") is None
    assert parse_df(b"h\n/dev/x 10 4 6 40% /\n") == {
        "bytesTotal": 10240,
        "bytesUsed": 4096,
        "bytesRemaining": 6144,
    }
