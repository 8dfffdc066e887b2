"""Storages driven by a hub, for real: each in its own network namespace with its own sshd.

:func:`make_storages` builds a hub network namespace and one namespace per storage,
joined by a veth pair with addresses of ``10.250.<k>.0/30`` (only on the veth ends,
inside the namespaces made here; the host's own namespace gets no address). Each
storage runs its own ``sshd`` inside a private mount namespace holding a tmpfs at the
storage's project path: its files are visible only through ssh, and a *decoy* folder
at the same path on the machine running the tests must never be read. The hub reaches
the storages with ssh run by ``ip netns exec <hub namespace>`` (:attr:`Storages.ssh`).

Kinds: ``find`` (a shell, GNU find, df) and ``rrsync`` (the key is restricted with
``command="rrsync <project folder>"``: nothing but rsync inside that folder).

Where namespaces cannot be made (not root, no ``ip``), the storages fall back to sshd on
loopback addresses (``127.0.<k>.2``) and :attr:`Storages.fallback` says why; files are
still hidden in a private mount namespace (``unshare``) when it can be made.

Everything started here is stopped, and every namespace deleted, at teardown, even when
a test failed; namespaces left by a killed run (named ``dh<pid>…``, that pid dead) are
deleted before new ones are made.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
RRSYNC = shutil.which("rrsync") or "/usr/bin/rrsync"
#: root's shell start-up files, emptied in each storage's mount namespace
_PROFILES = ("/root/.bashrc", "/root/.bash_profile", "/root/.profile")


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, check=check, stdin=subprocess.DEVNULL)


def _clean_stale() -> None:
    """Delete the namespaces of earlier runs whose process is gone."""
    out = _run("ip", "netns", "list", check=False).stdout.decode()
    for line in out.splitlines():
        m = re.match(r"^(dh(\d+)[a-z]\d*)\b", line)
        if m and not os.path.exists(f"/proc/{m[2]}"):
            _run("ip", "netns", "del", m[1], check=False)


def _free_port(address: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def netns_problem() -> str | None:
    """Why network namespaces cannot be made here, or ``None``."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "ip (iproute2) is not installed"
    if shutil.which("nsenter") is None or shutil.which("unshare") is None:
        return "nsenter/unshare (util-linux) are not installed"
    probe = f"dh{os.getpid()}p"
    r = _run("ip", "netns", "add", probe, check=False)
    if r.returncode:
        return f"ip netns add failed: {r.stderr.decode().strip()}"
    _run("ip", "netns", "del", probe, check=False)
    return None


@dataclass
class Storage:
    """One storage: its namespace, sshd, project folder and kind."""

    name: str
    kind: str  # "find" or "rrsync"
    address: str
    root: str  # the project folder, ending with "/" (the same path as the decoy on the hub)
    netns: str | None
    config: Path
    holder: subprocess.Popen | None = None
    sshd: subprocess.Popen | None = None
    port: int = 22
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ssh://root@{self.address}:{self.port}{self.root}"

    # -- its files, seen from inside its mount namespace ----------------------------------------

    def _inside(self, op: str, **args) -> object:
        """Run ``op`` in Python inside the storage's mount namespace (names travel as
        base64 of their bytes, so that any name can)."""
        assert self.holder is not None
        code = _OPS + f"\nprint(json.dumps({op}(**json.loads(sys.stdin.read()))))"
        r = subprocess.run(
            ["nsenter", "-t", str(self.holder.pid), "-m", "--", sys.executable, "-c", code],
            input=json.dumps(args).encode(),
            capture_output=True,
        )
        if r.returncode:
            raise RuntimeError(f"{self.name}: {op} failed: {r.stderr.decode()[-800:]}")
        return json.loads(r.stdout)

    def write(self, files: dict[bytes | str, bytes | str], mtime: float | None = None) -> None:
        """Write ``files`` (relpath -> content) under the project folder."""
        enc = {
            base64.b64encode(os.fsencode(k)).decode(): base64.b64encode(
                v.encode() if isinstance(v, str) else v
            ).decode()
            for k, v in files.items()
        }
        self._inside("write", root=self.root, files=enc, mtime=mtime)

    def read(self, reserved: bool = False) -> dict[bytes, bytes]:
        """Every regular file under the project folder: relpath (bytes) -> content
        (those in the engine's reserved folders too with ``reserved``)."""
        out = self._inside("read", root=self.root, reserved=reserved)
        return {base64.b64decode(k): base64.b64decode(v) for k, v in out.items()}

    def remove(self, rel: bytes | str) -> None:
        self._inside("remove", root=self.root, rel=base64.b64encode(os.fsencode(rel)).decode())

    def rename(self, a: bytes | str, b: bytes | str) -> None:
        enc = [base64.b64encode(os.fsencode(x)).decode() for x in (a, b)]
        self._inside("rename", root=self.root, a=enc[0], b=enc[1])

    # -- its sshd -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start (again) the storage's sshd, inside its network and mount namespaces."""
        assert self.holder is not None and self.sshd is None
        enter = ["nsenter", "-t", str(self.holder.pid), "-m"]
        if self.netns:
            enter.append("-n")
        self.sshd = subprocess.Popen(
            [*enter, "--", SSHD, "-D", "-e", "-f", str(self.config / "sshd_config")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> None:
        """Stop the storage's sshd (its files stay: the mount namespace has its own holder)."""
        if self.sshd is not None:
            self.sshd.terminate()
            try:
                self.sshd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.sshd.kill()
                self.sshd.wait()
            self.sshd = None


# the operations run inside a storage's mount namespace
_OPS = r"""
import base64, json, os, sys
def _p(root, rel):
    return os.fsencode(root) + base64.b64decode(rel).lstrip(b"/")
def write(root, files, mtime):
    for rel, data in files.items():
        path = _p(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        if mtime is not None:
            os.utime(path, (mtime, mtime))
def read(root, reserved):
    out = {}
    top = os.fsencode(root)
    for d, dirs, names in os.walk(top):
        dirs[:] = [x for x in dirs if reserved or not x.startswith(b".damas-")]
        for n in names:
            path = os.path.join(d, n)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    out[base64.b64encode(path[len(top):]).decode()] = base64.b64encode(f.read()).decode()
    return out
def remove(root, rel):
    os.unlink(_p(root, rel))
def rename(root, a, b):
    os.makedirs(os.path.dirname(_p(root, b)), exist_ok=True)
    os.rename(_p(root, a), _p(root, b))
"""


@dataclass
class Storages:
    """The storages of a test module and how the hub reaches them."""

    base: Path
    key: Path  # the hub's private key (its public key is in every storage's authorized_keys)
    hub_netns: str | None
    items: dict[str, Storage] = field(default_factory=dict)
    fallback: str | None = None  # why the storages are on loopback, when they are

    @property
    def ssh(self) -> list[str]:
        """The ssh command the hub reaches the storages with (host keys are the tests'
        own, made at each run: not checked)."""
        return [
            self._ssh_program(),
            "-i",
            str(self.key),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=3",
        ]

    def _ssh_program(self) -> str:
        """ssh, run in the hub's network namespace: a script the engine calls as it
        calls ssh (its options follow the program's name)."""
        if not self.hub_netns:
            return "ssh"
        script = self.base / "hub-ssh"
        if not script.exists():
            script.write_text(f'#!/bin/sh\nexec ip netns exec {self.hub_netns} ssh "$@"\n')
            script.chmod(0o755)
        return str(script)

    def __getitem__(self, name: str) -> Storage:
        return self.items[name]

    def wait_ready(self, storage: Storage, timeout: float = 15.0) -> None:
        """Wait until ``storage``'s sshd answers an ssh connection."""
        deadline = time.monotonic() + timeout
        while True:
            assert storage.sshd is not None
            if storage.sshd.poll() is not None:
                raise RuntimeError(f"sshd of {storage.name} died: {storage.sshd.stderr.read()}")
            r = subprocess.run(
                [*self.ssh, "-p", str(storage.port), f"root@{storage.address}", "true"],
                capture_output=True,
                stdin=subprocess.DEVNULL,
            )
            if r.returncode != 255:  # rrsync refuses "true" but the connection was made
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd of {storage.name} never answered: {r.stderr}")
            time.sleep(0.1)

    def restart(self, name: str) -> None:
        self.items[name].start()
        self.wait_ready(self.items[name])


def make_storages(base: Path, kinds: dict[str, str]) -> Storages:
    """Storages named after ``kinds`` (name -> ``find`` or ``rrsync``) under ``base``;
    stop them with :func:`stop_storages`. Each storage's project folder on this
    machine (its decoy) holds ``decoy.txt``."""
    _clean_stale()
    problem = netns_problem()
    tag = f"dh{os.getpid()}"
    key = base / "hub_key"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    hub_netns = None if problem else f"{tag}h"
    storages = Storages(base, key, hub_netns, fallback=problem)
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    try:
        if hub_netns:
            _run("ip", "netns", "add", hub_netns)
            _run("ip", "-n", hub_netns, "link", "set", "lo", "up")
        for k, (name, kind) in enumerate(kinds.items(), start=1):
            storages.items[name] = _make_storage(storages, tag, k, name, kind)
        for s in storages.items.values():
            s.start()
        for s in storages.items.values():
            storages.wait_ready(s)
    except BaseException:
        stop_storages(storages)
        raise
    return storages


def _make_storage(storages: Storages, tag: str, k: int, name: str, kind: str) -> Storage:
    base = storages.base / name
    config = base / "config"
    config.mkdir(parents=True)
    area = base / "area"  # the tmpfs of the storage's own mount namespace is mounted here
    root = area / "project"
    root.mkdir(parents=True)
    (root / "decoy.txt").write_text("the hub's own file at the storage's path: never published")
    netns = f"{tag}s{k}" if storages.hub_netns else None
    if netns:
        a, b = f"{tag}a{k}", f"{tag}b{k}"
        _run("ip", "netns", "add", netns)
        _run("ip", "-n", netns, "link", "set", "lo", "up")
        _run(
            "ip",
            "-n",
            storages.hub_netns,
            "link",
            "add",
            a,
            "type",
            "veth",
            "peer",
            b,
            "netns",
            netns,
        )
        _run("ip", "-n", storages.hub_netns, "addr", "add", f"10.250.{k}.1/30", "dev", a)
        _run("ip", "-n", storages.hub_netns, "link", "set", a, "up")
        _run("ip", "-n", netns, "addr", "add", f"10.250.{k}.2/30", "dev", b)
        _run("ip", "-n", netns, "link", "set", b, "up")
        address = f"10.250.{k}.2"
    else:
        address = f"127.0.{k}.2"
    port = 22 if netns else _free_port(address)
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(config / "host"))
    public = (storages.key.with_suffix(".pub")).read_text().strip()
    # rrsync: nothing but rsync, inside the project folder
    restrict = f'command="{RRSYNC} {root}",restrict ' if kind == "rrsync" else ""
    line = f"{restrict}{public}\n"
    (config / "authorized_keys").write_text(line)
    os.chmod(config / "authorized_keys", 0o600)
    (config / "sshd_config").write_text(
        f"Port {port}\nListenAddress {address}\nHostKey {config / 'host'}\n"
        f"AuthorizedKeysFile {config / 'authorized_keys'}\nPidFile none\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nPermitRootLogin yes\n"
        "KbdInteractiveAuthentication no\nMaxStartups 100\n"
    )
    # the holder of the storage's mount namespace: a tmpfs over the area, the project in it
    # and an empty shell profile, as on a NAS: each ssh command starts root's shell, and
    # this machine's profile may take a tenth of a second (pyenv) that no storage spends
    quiet = " ".join(f"{{ [ ! -f {p} ] || mount --bind /dev/null {p}; }} &&" for p in _PROFILES)
    mount = f"mount -t tmpfs tmpfs {area} && mkdir -p {root} && {quiet} exec sleep 100000"
    prefix = ["ip", "netns", "exec", netns] if netns else []
    holder = subprocess.Popen(
        [*prefix, "unshare", "--mount", "--propagation", "private", "sh", "-c", mount],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    storage = Storage(name, kind, address, f"{root}/", netns, config, holder=holder, port=port)
    deadline = time.monotonic() + 10
    while str(area) not in Path(f"/proc/{holder.pid}/mountinfo").read_text():
        if holder.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the mount namespace of {name} failed: {holder.stderr.read()}")
        time.sleep(0.02)
    return storage


def stop_storages(storages: Storages) -> None:
    """Stop every process and delete every namespace :func:`make_storages` made."""
    for s in storages.items.values():
        try:
            s.stop()
        finally:
            if s.holder is not None and s.holder.poll() is None:
                s.holder.send_signal(signal.SIGKILL)
                s.holder.wait()
            if s.netns:
                _run("ip", "netns", "del", s.netns, check=False)
    if storages.hub_netns:
        _run("ip", "netns", "del", storages.hub_netns, check=False)


_LOOPBACK: dict[str, object] = {}


def loopback_ssh() -> tuple[str, list[str]] | None:
    """``(user@127.0.0.1:port, ssh command)`` of an sshd on loopback serving this
    machine's own files to the current user, started once per process and stopped at
    its exit; ``None`` where sshd cannot run here. For the site contract: an ssh site
    whose files the test can also write directly."""
    if "ssh" in _LOOPBACK:
        return _LOOPBACK["ssh"]  # type: ignore[return-value]
    _LOOPBACK["ssh"] = None
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh") is None:
        return None
    import atexit
    import getpass
    import socket
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="damas-sshd-"))
    for name in ("host", "user"):
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name))
    (d / "authorized_keys").write_text((d / "user.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile none\nMaxStartups 100\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nPermitRootLogin yes\n"
        "KbdInteractiveAuthentication no\n"
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def stop() -> None:
        subprocess.run(
            [*ssh, "-p", str(port), "-O", "exit", f"{getpass.getuser()}@127.0.0.1"],
            capture_output=True,
        )
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(d, ignore_errors=True)

    atexit.register(stop)
    ssh = ["ssh", "-i", str(d / "user"), "-o", "StrictHostKeyChecking=no"]
    ssh += ["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    # one connection for the many short commands of the contract tests
    ssh += ["-o", "ControlMaster=auto", "-o", f"ControlPath={d}/cm-%C", "-o", "ControlPersist=60"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            _LOOPBACK["ssh"] = (f"{getpass.getuser()}@127.0.0.1:{port}", ssh)
            break
        except OSError:
            time.sleep(0.05)
    return _LOOPBACK["ssh"]  # type: ignore[return-value]


def storages_fixture(kinds: dict[str, str], scope: str = "module"):
    """A pytest fixture of :class:`Storages` (``kinds``: name -> kind), skipped with the
    reason when sshd or rsync is missing."""

    @pytest.fixture(scope=scope)
    def fixture(tmp_path_factory):
        for program, package in (("rsync", "rsync"), ("ssh", "openssh-client")):
            if shutil.which(program) is None:
                pytest.skip(f"{program} is not installed (scripts/system-deps.sh: {package})")
        if not os.access(SSHD, os.X_OK):
            pytest.skip("sshd is not installed (scripts/system-deps.sh: openssh-server)")
        if os.geteuid() != 0:
            pytest.skip("the storages' private mount namespaces need root")
        if "rrsync" in kinds.values() and not os.access(RRSYNC, os.X_OK):
            pytest.skip("rrsync is not installed (Debian's rsync 3.2.4 or later ships it)")
        storages = make_storages(tmp_path_factory.mktemp("hub"), kinds)
        try:
            yield storages
        finally:
            stop_storages(storages)

    return fixture
