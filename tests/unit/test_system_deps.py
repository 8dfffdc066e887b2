"""scripts/system-deps.sh, which make test and .ci/run share: a machine that lacks a
program the tests run, and cannot install it, stops at once with the command to run."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "system-deps.sh"
BASH = shutil.which("bash")


def _run(*, commands: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """The script with a PATH holding only ``commands``, as an account that is not
    root (root with apt-get would install)."""
    bin_dir = Path(tempfile.mkdtemp(prefix="damas-path-"))  # readable by that account
    bin_dir.chmod(0o755)
    for name in commands:
        found = shutil.which(name)
        if found is None:
            pytest.skip(f"{name} is not installed")
        (bin_dir / name).symlink_to(found)
    drop: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None or not _others_may_read(SCRIPT):
            pytest.skip("needs setpriv (util-linux) and a script another account may read")
        drop = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    try:
        return subprocess.run(
            [*drop, BASH, str(SCRIPT)],
            env={"PATH": str(bin_dir)},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(bin_dir)


def _others_may_read(path: Path) -> bool:
    # every folder up to the script is searchable by others, and the script readable
    return bool(path.stat().st_mode & 0o004) and all(p.stat().st_mode & 0o001 for p in path.parents)


def test_a_missing_program_stops_with_the_command_to_run():
    run = _run(commands=("id", "ssh", "ssh-keygen", "apt-get"))  # no rsync
    assert run.returncode == 1, run
    assert "missing here: rsync" in run.stderr
    assert "run:  sudo apt-get update && sudo apt-get install -y --no-install-recommends rsync" in (
        run.stderr
    )
    assert run.stdout == ""  # nothing was installed


def test_without_apt_get_it_names_the_packages():
    run = _run(commands=("id",))  # no rsync, no ssh, no apt-get
    assert run.returncode == 1, run
    assert "rsync" in run.stderr and "openssh-client" in run.stderr
    assert "this system's package manager" in run.stderr


def test_nothing_to_do_when_everything_is_there():
    if not (os.access("/usr/sbin/sshd", os.X_OK) and os.access("/usr/bin/chromium", os.X_OK)):
        pytest.skip("sshd or chromium is not installed here")
    run = _run(commands=("id", "rsync", "ssh", "ssh-keygen", "ip", "unshare", "nsenter"))
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
