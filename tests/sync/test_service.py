"""Agents that run for months, as real processes against a real ``damas serve``: they
survive a tracker restart on the same port (no duplicate publish, no lost record), sign
in again when their token expires or is revoked, refuse unsafe credentials, keep to one
agent per volume (taking over a dead or silent holder), and record ``stopped`` on
SIGTERM after finishing, or on a second SIGTERM aborting, the running rsync bucket
(shown as transferring while it runs, and no longer once the agent has stopped)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from damas_core.sync.service import EXIT_CREDENTIALS, EXIT_HELD
from damas_core.sync.status import status
from damas_core.sync.volumes import create_volume, set_global_parameters

from tests.sync.conftest import needs_rsync
from tests.sync.processes import ADMIN_PW, AgentProcess, Server, credentials, until

pytestmark = [needs_rsync, pytest.mark.slow]

SITES = ("paris", "tokyo", "lyon")


def make_sites(server: Server, tmp: Path, names=SITES, **volume_keys) -> dict[str, Path]:
    roots = {}
    with server.admin() as admin:
        for name in names:
            root = tmp / f"site {name}"
            root.mkdir()
            roots[name] = root
            create_volume(
                admin,
                {"_id": f"vol_{name}", "name": name, "url": f"file://{root}/", **volume_keys},
            )
        set_global_parameters(
            admin, {"syncEverywhere": True, "retryDelay": 0, "sleepBetweenScans": 0.3}
        )
    return roots


def write(root: Path, file_id: str, text: str) -> None:
    path = root / file_id.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def converged(server: Server, roots: dict[str, Path], expected: dict[str, str]) -> bool:
    """Every expected file at every site with its content, and recorded synced there."""
    for root in roots.values():
        for file_id, text in expected.items():
            path = root / file_id.lstrip("/")
            if not path.exists() or path.read_text() != text:
                return False
    with server.admin() as admin:
        files = {e["_id"]: e for e in admin.search_elements("origin:* -#parent:*")}
    if set(files) != set(expected):
        return False
    return all(
        (files[i].get(f"synced_{site}") or 0) >= files[i]["time"] for i in files for site in roots
    )


def volume_of(server: Server, name: str) -> dict:
    with server.admin() as admin:
        return admin.read(f"vol_{name}")


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def agents():
    started: list[AgentProcess] = []
    yield started
    for a in started:
        a.kill()


def test_agents_survive_a_tracker_restart_on_the_same_port(tmp_path, server, agents):
    roots = make_sites(server, tmp_path)
    creds = credentials(tmp_path / "agent.json", username="admin", password=ADMIN_PW)
    expected = {f"/shots/p{i}.exr": f"paris {i}" for i in range(8)}
    expected |= {f"/shots/t{i}.exr": f"tokyo {i}" for i in range(4)}
    for file_id, text in expected.items():
        write(roots["paris" if "/p" in file_id else "tokyo"], file_id, text)
    for name in SITES:
        agents.append(AgentProcess(tmp_path, f"vol_{name}", server.url, creds))
    until(lambda: converged(server, roots, expected), "the first convergence")

    port = server.port
    server.stop()
    more = {"/late/p.exr": "written at paris while the tracker was down"}
    more["/late/l.exr"] = "written at lyon while the tracker was down"
    write(roots["paris"], "/late/p.exr", more["/late/p.exr"])
    write(roots["lyon"], "/late/l.exr", more["/late/l.exr"])
    until(
        lambda: all("the tracker failed" in a.text() for a in agents),
        "every agent to warn that the tracker fails",
    )
    time.sleep(2)  # a few more failed attempts, backing off
    assert [a.proc.poll() for a in agents] == [None, None, None], [a.text() for a in agents]

    server.start()
    assert server.port == port
    expected |= more
    until(lambda: converged(server, roots, expected), "the convergence after the restart")

    with server.admin() as admin:
        for file_id in expected:
            # one publish each: one history child, one element
            assert len(admin.search(f'#parent:"{file_id}"')) == 1, file_id
        assert len(admin.search("origin:* -#parent:*")) == len(expected)
    assert [a.terminate() for a in agents] == [0, 0, 0]
    for name in SITES:
        assert volume_of(server, name)["agentStatus"] == "stopped"
    log = agents[0].text()
    assert " INFO " in log and "cycle in" in log and "published" in log
    assert " WARNING " in log and "trying again in" in log
    assert "going on after" in log


def test_a_second_agent_stops_and_a_dead_or_silent_holder_is_taken_over(tmp_path, server, agents):
    make_sites(server, tmp_path, names=("paris",))
    creds = credentials(tmp_path / "agent.json", username="admin", password=ADMIN_PW)
    first = AgentProcess(tmp_path, "vol_paris", server.url, creds)
    agents.append(first)
    until(lambda: volume_of(server, "paris").get("agentStatus") == "idle", "the first agent")

    # the same state directory: its lock
    second = AgentProcess(tmp_path, "vol_paris", server.url, creds)
    agents.append(second)
    assert second.proc.wait(60) == EXIT_HELD
    assert "another agent already runs with the state directory" in second.text()
    # another state directory: the holder recorded on the volume, alive
    third = AgentProcess(
        tmp_path, "vol_paris", server.url, creds, "--state-dir", str(tmp_path / "b")
    )
    agents.append(third)
    assert third.proc.wait(60) == EXIT_HELD
    assert f"is held by the agent of pid {first.proc.pid}" in third.text()
    assert first.proc.poll() is None

    # the holder dies without a word: its pid is dead here, so it is taken over
    first.kill()
    assert volume_of(server, "paris")["agentStatus"] != "stopped"
    fourth = AgentProcess(
        tmp_path, "vol_paris", server.url, creds, "--state-dir", str(tmp_path / "b")
    )
    agents.append(fourth)
    until(
        lambda: volume_of(server, "paris").get("lastConnectionPid") == fourth.proc.pid,
        "the takeover",
    )
    assert "taking over from the agent of pid" in fourth.text()
    assert fourth.terminate() == 0

    # a holder on another host: alive while its heartbeat is fresh, stale after agentTimeout
    with server.admin() as admin:
        set_global_parameters(admin, {"agentTimeout": 5})
        now = int(time.time() * 1000)
        elsewhere = {"agentStatus": "idle", "lastConnectionHost": "elsewhere"}
        admin.update(
            {"_id": "vol_paris", **elsewhere, "lastConnectionPid": 1, "lastConnection": now}
        )
    fifth = AgentProcess(tmp_path, "vol_paris", server.url, creds)
    agents.append(fifth)
    assert fifth.proc.wait(60) == EXIT_HELD
    assert "on elsewhere" in fifth.text()
    with server.admin() as admin:
        admin.update({"_id": "vol_paris", "lastConnection": now - 60_000})
    sixth = AgentProcess(tmp_path, "vol_paris", server.url, creds)
    agents.append(sixth)
    until(lambda: volume_of(server, "paris").get("lastConnectionPid") == sixth.proc.pid, "takeover")

    # an agent that finds its volume taken over stops and leaves the keys to the new holder
    with server.admin() as admin:
        now = int(time.time() * 1000)
        admin.update(
            {"_id": "vol_paris", **elsewhere, "lastConnectionPid": 9, "lastConnection": now}
        )
    assert sixth.proc.wait(60) == EXIT_HELD
    assert "was taken over by the agent of pid 9 on elsewhere" in sixth.text()
    assert volume_of(server, "paris")["lastConnectionHost"] == "elsewhere"


@pytest.mark.parametrize(
    ("mode", "values", "says"),
    [
        (0o644, {"username": "admin", "password": ADMIN_PW}, "mode 0644 lets others read it"),
        (0o600, {"username": "admin", "password": "wrong"}, "signing in to"),
        (0o600, {"username": "ula", "password": "ula-pw"}, "'ula' is not an admin"),
        (0o600, {"token": "not.a.token"}, "hold no password to sign in again"),
        (0o600, {"username": "admin"}, "username and password go together"),
    ],
)
def test_unusable_credentials_stop_the_agent_saying_why(
    tmp_path, server, agents, mode, values, says
):
    make_sites(server, tmp_path, names=("paris",))
    with server.admin() as admin:
        admin.create({"_id": "@ula", "class": "user", "password": "ula-pw"})
    creds = credentials(tmp_path / "agent.json", mode, **values)
    a = AgentProcess(tmp_path, "vol_paris", server.url, creds)
    agents.append(a)
    assert a.proc.wait(60) == EXIT_CREDENTIALS
    assert says in a.text()


def test_an_expiring_token_is_renewed_with_the_password(tmp_path, agents):
    server = Server(tmp_path, "--token-lifespan", "2")
    server.start()
    try:
        roots = make_sites(server, tmp_path, names=("paris", "tokyo"))
        creds = credentials(tmp_path / "agent.json", username="admin", password=ADMIN_PW)
        for name in ("paris", "tokyo"):
            agents.append(AgentProcess(tmp_path, f"vol_{name}", server.url, creds))
        write(roots["paris"], "/a.exr", "first")
        until(lambda: converged(server, roots, {"/a.exr": "first"}), "the first copy")
        time.sleep(3)  # every token the agents hold has expired
        write(roots["paris"], "/b.exr", "after expiry")
        expected = {"/a.exr": "first", "/b.exr": "after expiry"}
        until(lambda: converged(server, roots, expected), "a copy after the token expired")
        until(lambda: all("signed in again" in a.text() for a in agents), "the renewals")
        assert all(a.proc.poll() is None for a in agents)
    finally:
        server.stop()


def test_a_revoked_token_is_replaced_or_stops_the_agent(tmp_path, server, agents):
    roots = make_sites(server, tmp_path, names=("paris",))
    tokens = []
    for _ in range(2):
        with server.admin() as admin:
            tokens.append(admin.token)
    with_password = credentials(
        tmp_path / "a.json", token=tokens[0], username="admin", password=ADMIN_PW
    )
    token_only = credentials(tmp_path / "b.json", token=tokens[1])
    a = AgentProcess(tmp_path, "vol_paris", server.url, with_password)
    agents.append(a)
    until(lambda: volume_of(server, "paris").get("agentStatus") == "idle", "the agent")
    from damas_core.client import connect

    for token in tokens:
        with connect(server.url, token) as c:
            c.sign_out()
    write(roots["paris"], "/after.exr", "x")
    with server.admin() as admin:
        until(lambda: admin.read("/after.exr"), "a publish after the revocation")
    assert "signed in again" in a.text()
    assert a.terminate() == 0

    b = AgentProcess(tmp_path, "vol_paris", server.url, token_only)
    agents.append(b)
    assert b.proc.wait(60) == EXIT_CREDENTIALS
    assert "refused the agent's token" in b.text()
    assert "hold no password" in b.text()


def _big_file_state(server: Server) -> dict:
    """The state of /big.bin at tokyo, as the dashboard and ``damas sync status`` show it."""
    with server.admin() as admin:
        return status(admin, ["/big.bin"])["files"][0]["states"]["tokyo"]


def _big_file_receiving(tmp_path, server, agents):
    """paris holds a 24 MiB file; tokyo's agent receives it at 2 MiB/s, and its volume
    records the bucket in flight."""
    roots = make_sites(server, tmp_path, names=("paris", "tokyo"))
    with server.admin() as admin:
        from damas_core.sync.volumes import update_volume

        update_volume(admin, {"_id": "vol_tokyo", "rsync_args": ["--bwlimit=2048"]})
        update_volume(admin, {"_id": "vol_paris", "enableEmission": False})  # tokyo fetches it
    (roots["paris"] / "big.bin").write_bytes(os.urandom(24 * 1024 * 1024))
    creds = credentials(tmp_path / "agent.json", username="admin", password=ADMIN_PW)
    paris = AgentProcess(tmp_path, "vol_paris", server.url, creds, "--once")
    agents.append(paris)
    assert paris.proc.wait(120) == 0, paris.text()
    tokyo = AgentProcess(tmp_path, "vol_tokyo", server.url, creds)
    agents.append(tokyo)
    until(
        lambda: volume_of(server, "tokyo").get("agentStatus") == "receiving",
        "the reception",
        every=0.05,
    )
    record = until(lambda: volume_of(server, "tokyo").get("transferring"), "the bucket's record")
    assert (record["site"], record["ids"], record["count"]) == ("tokyo", ["/big.bin"], 1)
    assert _big_file_state(server) == {"state": "queued", "detail": "transferring"}
    return roots, tokyo


def test_sigterm_lets_the_running_bucket_finish_then_records_stopped(tmp_path, server, agents):
    with server.admin() as admin:
        set_global_parameters(admin, {"agentTimeout": 3})
    roots, tokyo = _big_file_receiving(tmp_path, server, agents)
    # the heartbeat keeps the volume held while the bucket runs, longer than agentTimeout
    time.sleep(4)
    creds = tmp_path / "agent.json"
    other = AgentProcess(
        tmp_path, "vol_tokyo", server.url, creds, "--state-dir", str(tmp_path / "b")
    )
    agents.append(other)
    assert other.proc.wait(60) == EXIT_HELD, other.text()
    assert volume_of(server, "tokyo")["agentStatus"] == "receiving"
    tokyo.proc.send_signal(15)
    assert tokyo.proc.wait(120) == 0
    assert (roots["tokyo"] / "big.bin").read_bytes() == (roots["paris"] / "big.bin").read_bytes()
    with server.admin() as admin:
        el = admin.read("/big.bin")
    assert el["synced_tokyo"] >= el["time"]
    assert volume_of(server, "tokyo")["agentStatus"] == "stopped"
    assert "transferring" not in volume_of(server, "tokyo")
    assert _big_file_state(server) == {"state": "ok"}


def test_a_second_sigterm_aborts_the_running_bucket_cleanly(tmp_path, server, agents):
    roots, tokyo = _big_file_receiving(tmp_path, server, agents)
    tokyo.proc.send_signal(15)
    time.sleep(0.5)
    tokyo.proc.send_signal(15)
    assert tokyo.proc.wait(60) == 0
    assert not (roots["tokyo"] / "big.bin").exists()  # rsync stopped before moving it in
    with server.admin() as admin:
        assert "synced_tokyo" not in admin.read("/big.bin")
    assert volume_of(server, "tokyo")["agentStatus"] == "stopped"
    assert "aborting the running step" in tokyo.text()
    # the aborted bucket no longer shows as running: the file waits for the next agent
    assert "transferring" not in volume_of(server, "tokyo")
    assert _big_file_state(server) == {"state": "queued"}


def test_a_tracker_killed_in_the_middle_of_a_first_scan_loses_and_doubles_nothing(
    tmp_path, server, agents
):
    roots = make_sites(server, tmp_path, names=("paris", "tokyo"))
    # published in batches of 4000, then larger ones: the kill comes after the first
    # (about 4800 of 24000 files were tracked when it came, in a run on this machine)
    expected = {f"/seq/{i // 500:02d}/f{i:05d}.exr": f"frame {i}" for i in range(24000)}
    for file_id, text in expected.items():
        write(roots["paris"], file_id, text)
    creds = credentials(tmp_path / "agent.json", username="admin", password=ADMIN_PW)
    for name in ("paris", "tokyo"):
        agents.append(AgentProcess(tmp_path, f"vol_{name}", server.url, creds))

    def some_published() -> bool:
        with server.admin() as admin:
            return admin.search_mongo({"origin": "paris"}, None, 1)["count"] > 0

    until(some_published, "the first publishes", every=0.02)
    server.proc.kill()  # no goodbye: requests in flight are cut
    server.proc.wait(10)
    time.sleep(1.5)
    server.start()
    until(lambda: converged(server, roots, expected), "the convergence", timeout=240, every=1)
    with server.admin() as admin:
        children = admin.search_mongo({"#parent": {"$exists": True}}, None, 0)["count"]
    assert children == len(expected)  # one history child per file: one publish each
    assert [a.terminate() for a in agents] == [0, 0]


def test_once_reports_an_unreachable_tracker_and_credentials_need_a_server(tmp_path):
    import socket
    import subprocess

    from tests.sync.processes import DAMAS

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    creds = credentials(tmp_path / "agent.json", username="admin", password=ADMIN_PW)
    run = ["sync", "agent", "vol_paris", "--credentials", str(creds), "--state-dir", str(tmp_path)]
    once = subprocess.run(
        [DAMAS, *run, "--server", f"http://127.0.0.1:{port}", "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert once.returncode == 3, once.stderr
    assert "cannot connect" in once.stderr
    store = subprocess.run(
        [DAMAS, *run, "--store", f"lmdb://{tmp_path}/store"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert store.returncode == 1
    assert "--credentials is for --server" in store.stderr
