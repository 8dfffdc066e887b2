"""Real processes for the service tests: a ``damas serve`` that can be stopped and
started again on the same port, and ``damas sync agent`` processes with their logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from damas_core.client import Client, connect

DAMAS = os.path.join(os.path.dirname(sys.executable), "damas")
ADMIN_PW = "admin-pw"


def until(check: Callable[[], Any], what: str, timeout: float = 90.0, every: float = 0.2) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as e:  # the server may be restarting
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Server:
    """``damas serve`` on an LMDB store in ``tmp``, with @admin's password :data:`ADMIN_PW`."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.tmp = tmp
        self.extra = extra
        self.store = f"lmdb://{tmp}/store"
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        (tmp / "admin-pw").write_text(ADMIN_PW + "\n")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = self.tmp / f"serve-{self.starts}.log"
        command = [DAMAS, "serve", "--store", self.store, "--port", str(self.port)]
        command += ["--admin-password-file", str(self.tmp / "admin-pw"), *self.extra]
        with open(log, "w") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

        def started() -> bool:
            assert self.proc is not None and self.proc.poll() is None, log.read_text()
            return "serving" in log.read_text()

        until(started, "damas serve to start", timeout=30, every=0.05)
        line = next(x for x in log.read_text().splitlines() if "serving" in x)
        self.port = int(line.split(" on ")[1].split()[0].rstrip("/").rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.proc = None

    def admin(self) -> Client:
        c = connect(self.url)
        c.sign_in("admin", ADMIN_PW)
        return c


def credentials(path: Path, mode: int = 0o600, **values: Any) -> Path:
    path.write_text(json.dumps(values))
    os.chmod(path, mode)
    return path


class AgentProcess:
    """``damas sync agent VOLUME --server URL --credentials FILE`` with its log file."""

    def __init__(self, tmp: Path, volume_id: str, url: str, creds: Path, *extra: str) -> None:
        self.log = tmp / f"agent-{volume_id}-{time.monotonic_ns()}.log"
        self.state = tmp / f"state-{volume_id}"
        command = [DAMAS, "sync", "agent", volume_id, "--server", url, "--credentials", str(creds)]
        command += ["--settle", "0", "--backoff-max", "1", "--log-file", str(self.log)]
        if "--state-dir" not in extra:
            command += ["--state-dir", str(self.state)]
        self.stderr = tmp / f"agent-{volume_id}-{time.monotonic_ns()}.err"
        with open(self.stderr, "w") as err:
            self.proc = subprocess.Popen(
                [*command, *extra], stdout=subprocess.DEVNULL, stderr=err, env=_env(tmp)
            )

    def text(self) -> str:
        return (self.log.read_text() if self.log.exists() else "") + self.stderr.read_text()

    def terminate(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAMAS_SERVER", "DAMAS_TOKEN")}
    env["DAMAS_CONFIG_DIR"] = str(tmp / "config")
    return env
