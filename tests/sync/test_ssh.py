"""An ssh:// volume through a private sshd on a loopback port with generated keys."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from damas_core.sync import Agent
from damas_core.sync.volumes import create_volume, set_global_parameters

import damas_core

SSHD = "/usr/sbin/sshd"
pytestmark = [
    pytest.mark.skipif(
        shutil.which("rsync") is None, reason="rsync is not installed (.ci/run installs it)"
    ),
    pytest.mark.skipif(
        not os.access(SSHD, os.X_OK),
        reason="sshd is not installed (.ci/run installs openssh-server)",
    ),
    pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen is not installed"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path):
    d = tmp_path / "sshd"
    d.mkdir()
    for name in ("host", "user"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True
        )
    (d / "authorized_keys").write_text((d / "user.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nPermitRootLogin yes\n"
        "KbdInteractiveAuthentication no\nSubsystem sftp internal-sftp\n"
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.skip(f"sshd could not start: {proc.stderr.read().decode()[-300:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    ssh = [
        "ssh",
        "-i",
        str(d / "user"),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
    ]
    yield port, ssh
    proc.terminate()
    proc.wait(timeout=10)


def remote_volume(sites, sshd, tmp_path):
    """The root of a new volume ``vol_remote`` (site ``remote``) reached through the
    loopback sshd."""
    port, _ = sshd
    remote_root = tmp_path / "remote site"
    remote_root.mkdir()
    url = f"ssh://{getpass.getuser()}@127.0.0.1:{port}{remote_root}/"
    create_volume(sites.tracker, {"_id": "vol_remote", "name": "remote", "url": url})
    return remote_root


@pytest.mark.slow
def test_ssh_volume_receives_and_emits(sites, sshd, tmp_path):
    ssh = sshd[1]
    remote_root = remote_volume(sites, sshd, tmp_path)
    paris = sites.agent("paris", ssh_command=ssh)
    sites.run()
    # the remote site's agent: its volume is local to it
    remote = Agent(sites.tracker, "vol_remote", settle=0, ssh_command=ssh)
    (remote_root / "from remote.txt").write_text("r")
    remote.run_once()
    # paris pulls from the ssh volume
    sites.write("paris", "/from paris.txt", "p")
    r = paris.run_once()
    assert "/from remote.txt" in r.received, sites.tracker.read("vol_paris").get("stderr_reception")
    assert sites.path("paris", "/from remote.txt").read_text() == "r"
    # the remote agent is down: paris pushes its own file through ssh
    sites.tracker.update({"_id": "vol_remote", "agentStatus": "stopped"})
    r = paris.run_once()
    assert r.emitted == ["/from paris.txt"], r
    assert (remote_root / "from paris.txt").read_text() == "p"
    el = sites.tracker.read("/from paris.txt")
    assert el["synced_remote"] >= el["time"]


@pytest.mark.slow
def test_an_ssh_volume_is_reached_with_its_own_ssh_keys(sshd, tmp_path):
    """No ssh command given to the agent: the identity, the port, the known hosts and
    the options all come from the volume's ssh_* keys, and the host key is checked."""
    port, _ = sshd  # the fixture's ssh options (no host key check) are not used here
    keys = tmp_path / "sshd"
    known_hosts = keys / "known_hosts"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "impostor")], check=True
    )

    def trust(public_key: Path) -> None:
        kind, key = public_key.read_text().split()[:2]
        known_hosts.write_text(f"[127.0.0.1]:{port} {kind} {key}\n")

    trust(keys / "impostor.pub")  # a known_hosts that names another key for this host
    tracker = damas_core.open(f"lmdb://{tmp_path}/store")
    local_root, remote_root = tmp_path / "paris", tmp_path / "remote"
    local_root.mkdir()
    remote_root.mkdir()
    create_volume(tracker, {"_id": "vol_paris", "name": "paris", "url": f"file://{local_root}/"})
    create_volume(
        tracker,
        {
            "_id": "vol_remote",
            "name": "remote",
            "url": f"ssh://{getpass.getuser()}@127.0.0.1{remote_root}/",
            "ssh_port": port,
            "ssh_identity_file": str(keys / "user"),
            "ssh_known_hosts": str(known_hosts),
            "ssh_options": {"StrictHostKeyChecking": "yes", "ConnectTimeout": 10},
            "rsync_args": "-z",
        },
    )
    set_global_parameters(tracker, {"syncEverywhere": True, "retryDelay": 0})
    paris = Agent(tracker, "vol_paris", settle=0, walker="scandir")
    remote = Agent(tracker, "vol_remote", settle=0, walker="scandir")  # local to its own site
    paris.run_once()
    (remote_root / "from remote.txt").write_text("r")
    remote.run_once()
    # the host does not show the key known_hosts names: nothing moves, nothing is claimed
    r = paris.run_once()
    assert r.received == [] and "/from remote.txt" in r.failed
    assert "Host key verification failed" in tracker.read("vol_paris")["stderr_reception"]
    assert "synced_paris" not in tracker.read("/from remote.txt")
    assert not (local_root / "from remote.txt").exists()
    trust(keys / "host.pub")
    r = paris.run_once()
    assert r.received == ["/from remote.txt"], tracker.read("vol_paris")["stderr_reception"]
    assert (local_root / "from remote.txt").read_text() == "r"
    # the remote agent is down: paris pushes through the same ssh settings
    tracker.update({"_id": "vol_remote", "agentStatus": "stopped"})
    (local_root / "from paris.txt").write_text("p")
    r = paris.run_once()
    assert r.emitted == ["/from paris.txt"], tracker.read("vol_paris")["stderr_emission"]
    assert (remote_root / "from paris.txt").read_text() == "p"
    tracker.close()


@pytest.mark.slow
def test_three_local_sites_and_an_ssh_site_converge_with_incremental_cycles(sites, sshd, tmp_path):
    ssh = sshd[1]
    remote_root = remote_volume(sites, sshd, tmp_path)
    agents = [sites.agent(name, ssh_command=ssh) for name in ("paris", "tokyo", "lyon")]
    agents.append(Agent(sites.tracker, "vol_remote", settle=0, ssh_command=ssh))
    roots = [sites.roots["paris"], sites.roots["tokyo"], sites.roots["lyon"], remote_root]
    for i, root in enumerate(roots):
        for k in range(3):
            (root / f"from{i}").mkdir(exist_ok=True)
            (root / f"from{i}" / f"f{k}.txt").write_text(f"site {i} file {k}")

    def rounds(n: int) -> list:
        return [a.run_once() for _ in range(n) for a in agents]

    rounds(3)
    # a new version at the ssh site travels to the three others
    time.sleep(0.01)
    (remote_root / "from0" / "f1.txt").write_text("changed at the remote site")
    rounds(3)
    expected = {f"/from{i}/f{k}.txt": f"site {i} file {k}" for i in range(4) for k in range(3)}
    expected["/from0/f1.txt"] = "changed at the remote site"
    for root in roots:
        got = {"/" + str(p.relative_to(root)): p.read_text() for p in root.rglob("*.txt")}
        assert got == expected, root
    history = sites.tracker.search_elements("#parent:/from0/f1.txt", sort="time")
    assert [h["comment"] for h in history] == ["scanned at paris", "modified at remote"]
    # converged: the next cycles read no file element and copy nothing
    for report in rounds(2):
        assert report.files_read == 0 and not report.received and not report.emitted, report
