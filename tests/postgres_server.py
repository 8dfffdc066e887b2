"""A throwaway PostgreSQL server for the tests: ``initdb`` into a temporary folder, a
free port on 127.0.0.1, its unix socket in that folder, fsync off.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres``
account (or ``nobody``) through ``setpriv``. One server per test process (each xdist
worker starts its own), stopped at exit; each store gets its own schema
(``?schema=``), which costs a millisecond where a database costs a hundred.

``DAMAS_TEST_POSTGRES_URL`` (``postgresql://user:password@host:port/db``) points the
tests at a server of your own instead.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path


def server_bin() -> Path | None:
    """The folder holding ``initdb`` and ``postgres`` (the newest Debian one, or PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Server:
    """A running server; :meth:`url` makes store URLs on it, :meth:`restart` bounces it."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="damas-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._drop: list[str] = []
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                account = pwd.getpwnam("nobody")
            self._drop = [
                "setpriv",
                f"--reuid={account.pw_uid}",
                f"--regid={account.pw_gid}",
                "--clear-groups",
            ]
            os.chown(self.dir, account.pw_uid, account.pw_gid)
        self.dir.chmod(0o700)
        subprocess.run(
            [
                *self._drop,
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "damas",
                "-E",
                "UTF8",
                "--locale=C",
                "--auth=trust",
                "-N",
            ],
            check=True,
            capture_output=True,
        )
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *self._drop,
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.dir),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited at start")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                import psycopg

                psycopg.connect(self.base_url(), connect_timeout=2).close()
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("postgres did not start in 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(2)  # fast shutdown (SIGTERM would wait for clients)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stop the server (its clients lose their connections) and start it again."""
        self.stop()
        self.start()

    def base_url(self) -> str:
        return f"postgresql://damas@127.0.0.1:{self.port}/postgres"

    def url(self) -> str:
        """A fresh, empty store on this server (its own schema)."""
        return f"{self.base_url()}?schema=t{uuid.uuid4().hex[:12]}"

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_server: Server | None = None
_failure: str | None = None


def server() -> Server | None:
    """This process's server, started on first use; ``None`` with :func:`why_not` set
    when none can run here."""
    global _server, _failure
    if _server is None and _failure is None:
        bin_dir = server_bin()
        if bin_dir is None:
            _failure = "no PostgreSQL server binaries (initdb) here: run scripts/system-deps.sh"
            return None
        try:
            import psycopg  # noqa: F401
        except ImportError:
            _failure = "psycopg is not installed: pip install 'damas-core[postgresql]'"
            return None
        _server = Server(bin_dir)
        atexit.register(_server.remove)
    return _server


def why_not() -> str:
    return _failure or ""


def store_url() -> str | None:
    """A fresh store URL: on ``DAMAS_TEST_POSTGRES_URL`` if set, else on this process's
    server; ``None`` when there is none (see :func:`why_not`)."""
    given = os.environ.get("DAMAS_TEST_POSTGRES_URL")
    if given:
        sep = "&" if "?" in given else "?"
        return f"{given}{sep}schema=t{uuid.uuid4().hex[:12]}"
    s = server()
    return None if s is None else s.url()


def base_store_url() -> str | None:
    """The server's URL without a schema: ``DAMAS_TEST_POSTGRES_URL`` if set, else this
    process's server; ``None`` when there is none (see :func:`why_not`)."""
    given = os.environ.get("DAMAS_TEST_POSTGRES_URL")
    if given:
        return given
    s = server()
    return None if s is None else s.base_url()
