"""Several ``damas serve`` on one shared store behind Debian's nginx, on loopback: the
processes for the deployment tests and the deployment benchmark.

The nginx configuration :func:`nginx_conf` writes is the one docs/deploy.md shows.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from tests.sync.processes import ADMIN_PW, DAMAS, until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Instance:
    """One ``damas serve --store URL`` on a free loopback port, with its log."""

    def __init__(self, tmp: Path, name: str, store: str, *extra: str) -> None:
        self.tmp, self.name, self.store, self.extra = tmp, name, store, extra
        self.port = free_port()
        self.log = tmp / f"serve-{name}.log"
        self.proc: subprocess.Popen | None = None
        (tmp / "admin-pw").write_text(ADMIN_PW + "\n")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [DAMAS, "serve", "--store", self.store, "--port", str(self.port)]
        command += ["--admin-password-file", str(self.tmp / "admin-pw"), *self.extra]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

        def started() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            return "serving" in self.log.read_text()

        until(started, f"damas serve {self.name} to start", timeout=30, every=0.05)

    def kill(self) -> None:
        """``kill -9``: no cleanup of any kind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def nginx_conf(tmp: Path, port: int, upstreams: list[int]) -> str:
    """nginx in front of ``upstreams`` (ports on 127.0.0.1), listening on ``port``."""
    servers = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in upstreams
    )
    return f"""\
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;

    upstream damas {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 16m;

        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        # a request that could not reach an instance goes to the next one; a write
        # already sent is never sent twice (nginx retries only idempotent methods)
        proxy_next_upstream error timeout http_503;

        location / {{
            proxy_pass http://damas;
        }}
        # event streams and long-polls: bytes go through as they come, for as long
        # as the stream lasts
        location ~ ^/api/(events|changes)/ {{
            proxy_pass http://damas;
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 1h;
        }}
    }}
}}
"""


class Nginx:
    """Debian's nginx, unprivileged, with its own configuration in ``tmp``."""

    def __init__(self, tmp: Path, upstreams: list[int]) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.conf = tmp / "nginx.conf"
        self.conf.write_text(nginx_conf(tmp, self.port, upstreams))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [
            NGINX,
            "-p",
            str(self.tmp),
            "-c",
            str(self.conf),
            "-e",
            str(self.tmp / "nginx-error.log"),
        ]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def listening() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.proc.stderr.read()
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        until(listening, "nginx to listen", timeout=20, every=0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def have_nginx() -> bool:
    return os.access(NGINX, os.X_OK)


__all__ = ["ADMIN_PW", "NGINX", "Instance", "Nginx", "free_port", "have_nginx", "nginx_conf"]
