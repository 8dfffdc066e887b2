"""An rsync that waits for the test's word: a bucket held in flight for as long as a test
looks at it, without a sleep or a timing assumption."""

from __future__ import annotations

import shlex
import time
from pathlib import Path


class GatedRsync:
    """``program`` (an agent's ``rsync=``) says it started each call, then waits until
    :meth:`open` before running the real rsync (at most a minute, so that a failing test
    does not hang)."""

    def __init__(self, tmp: Path) -> None:
        self.started = tmp / "rsync-started"
        self.go = tmp / "rsync-go"
        self.program = tmp / "gated-rsync"
        started, go = shlex.quote(str(self.started)), shlex.quote(str(self.go))
        self.program.write_text(
            "#!/bin/sh\n"
            f": > {started}\n"
            "i=0\n"
            f'while [ ! -e {go} ] && [ "$i" -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done\n'
            'exec rsync "$@"\n'
        )
        self.program.chmod(0o755)

    def wait_started(self, timeout: float = 60.0) -> None:
        """Return once rsync has been called (the bucket is in flight)."""
        deadline = time.monotonic() + timeout
        while not self.started.exists():
            if time.monotonic() > deadline:
                raise AssertionError("rsync was never called")
            time.sleep(0.02)

    def open(self) -> None:
        """Let every call, waiting or to come, run rsync."""
        self.go.touch()
