"""``damas notify`` as an operator runs it: a real ``damas serve``, a real agent process
killed with SIGKILL and started again, a real SMTP server on loopback (aiosmtpd) that
goes down and comes back, and the notifier itself stopped and started again. Every
event is mailed once: none lost, none twice."""

from __future__ import annotations

import email
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from damas_core.sync import activity
from damas_core.sync.volumes import create_volume, set_global_parameters

from tests.sync.conftest import needs_rsync
from tests.sync.processes import ADMIN_PW, DAMAS, AgentProcess, Server, credentials, until

aiosmtpd = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd (the dev extra)")

pytestmark = [needs_rsync, pytest.mark.slow]
INTERVAL = 3  # notifyInterval of the volume, seconds


class Inbox:
    """What the SMTP server received, as parsed messages."""

    def __init__(self) -> None:
        self.mails: list[email.message.Message] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        with self.lock:
            self.mails.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def events(self) -> list[str]:
        with self.lock:
            return [e for m in self.mails for e in m["X-Damas-Events"].split()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Smtpd:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.port = _free_port()
        self.controller = None

    def start(self) -> None:
        self.controller = aiosmtpd.Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


class NotifyProcess:
    def __init__(self, tmp: Path, url: str, creds: Path, smtp_port: int) -> None:
        self.log = tmp / f"notify-{len(list(tmp.glob('notify-*.log')))}.log"
        command = [DAMAS, "notify", "--server", url, "--credentials", str(creds),
                   "--smtp", f"smtp://127.0.0.1:{smtp_port}", "--smtp-tls", "none",
                   "--from", "damas@test.invalid", "--state-dir", str(tmp / "notify-state"),
                   "--every", "0.5", "--smtp-retry", "1", "--log-file", str(self.log)]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def terminate(self) -> int:
        self.proc.terminate()
        return self.proc.wait(20)


def test_events_are_mailed_once_through_agent_deaths_smtp_outages_and_restarts(tmp_path):
    inbox = Inbox()
    smtpd = Smtpd(inbox)
    smtpd.start()
    server = Server(tmp_path)
    server.start()
    root = tmp_path / "paris"
    root.mkdir()
    with server.admin() as admin:
        create_volume(admin, {"_id": "vol_paris", "name": "paris", "url": f"file://{root}/",
                              "notifiedEmails": "paris-ops@example.org, ",
                              "notifyInterval": INTERVAL})  # fmt: skip
        set_global_parameters(admin, {"agentTimeout": 3, "sleepBetweenScans": 0.5,
                                      "notifiedEmails": ["it@example.org"]})  # fmt: skip
    creds = credentials(tmp_path / "creds.json", username="admin", password=ADMIN_PW)
    agent = AgentProcess(tmp_path, "vol_paris", server.url, creds)
    notify = NotifyProcess(tmp_path, server.url, creds, smtpd.port)
    try:
        until(lambda: server.admin().read("vol_paris").get("agentStatus") == "idle", "the agent")
        # killed: no heartbeat for agentTimeout; the notifier sees it and mails it once
        agent.kill()
        until(lambda: "agent_down" in inbox.events(), "agent_down mailed", timeout=60)
        first = inbox.mails[0]
        assert first["Subject"] == "[damas] paris: agent down"
        assert first["To"] == "paris-ops@example.org, it@example.org"
        with server.admin() as admin:
            assert [e["event"] for e in activity.log(admin, ["vol_paris"])] == ["agent_down"]

        agent = AgentProcess(tmp_path, "vol_paris", server.url, creds)
        until(lambda: "agent_up" in inbox.events(), "agent_up mailed", timeout=60)
        assert inbox.events().count("agent_down") == 1

        # events within the interval after a mail go out together, as one digest
        with server.admin() as admin:
            activity.record(admin, "vol_paris", "brake", {"message": "too many deletions"})
        until(lambda: "brake" in inbox.events(), "the brake mailed")
        with server.admin() as admin:
            activity.record(admin, "vol_paris", "conflict", {"count": 1, "ids": ["/a"]})
            activity.record(admin, "vol_paris", "errors", {"count": 2, "ids": ["/b", "/c"]})
        until(lambda: "errors" in inbox.events(), "the digest")
        digest = inbox.mails[-1]
        assert digest["X-Damas-Events"] == "conflict errors"
        assert digest["Subject"] == "[damas] paris: conflicts (and 1 more event)"
        assert "/b" in digest.get_payload()

        # the SMTP server down: the mail waits in the state directory, then goes once
        smtpd.stop()
        with server.admin() as admin:
            activity.record(admin, "vol_paris", "disabled", {"switches": ["enableScans"]})
        until(lambda: "failed" in notify.text(), "a failed attempt", timeout=60)
        smtpd.start()
        until(lambda: "disabled" in inbox.events(), "the mail after the outage", timeout=60)

        # the notifier restarted: nothing sent again; what comes next is sent
        assert notify.terminate() == 0
        mails = len(inbox.mails)
        notify = NotifyProcess(tmp_path, server.url, creds, smtpd.port)
        with server.admin() as admin:
            activity.record(admin, "vol_paris", "enabled", {"switches": ["enableScans"]})
        until(lambda: "enabled" in inbox.events(), "the mail after the restart", timeout=60)
        assert len(inbox.mails) == mails + 1
        events = inbox.events()
        assert sorted(events) == sorted(set(events)), events  # every event mailed once
        assert events[-1] == "enabled"
    finally:
        notify.proc.kill()
        agent.kill()
        server.stop()
        smtpd.stop()
