"""``damas hub run --smtp``: the hub runs the notifier beside its agents. A real
``damas serve``, a real hub process, a real SMTP server on loopback (aiosmtpd): an
event recorded on the hub's volume is mailed once, naming the site, and SIGTERM stops
the hub and its notifier with exit 0."""

from __future__ import annotations

import subprocess

import pytest
from damas_core.sync import activity
from damas_core.sync.volumes import create_volume

from tests.sync.conftest import needs_rsync
from tests.sync.processes import ADMIN_PW, DAMAS, Server, credentials, until
from tests.sync.test_notify import Inbox, Smtpd

pytestmark = [needs_rsync, pytest.mark.slow]


def test_hub_run_with_smtp_mails_the_sites_events_and_stops_on_sigterm(tmp_path):
    inbox = Inbox()
    smtpd = Smtpd(inbox)
    smtpd.start()
    server = Server(tmp_path)
    server.start()
    root = tmp_path / "hub"
    root.mkdir()
    with server.admin() as admin:
        create_volume(admin, {"_id": "vol_hub", "name": "hubsite", "url": f"file://{root}/",
                              "notifiedEmails": "hub-ops@example.org"})  # fmt: skip
    creds = credentials(tmp_path / "creds.json", username="admin", password=ADMIN_PW)
    state = tmp_path / "hub-state"
    log = tmp_path / "hub.log"
    hub = subprocess.Popen(
        [DAMAS, "hub", "run", "vol_hub", "--server", server.url, "--credentials", str(creds),
         "--state-dir", str(state), "--log-file", str(log), "--settle", "0",
         "--smtp", f"smtp://127.0.0.1:{smtpd.port}", "--smtp-tls", "none",
         "--from", "damas@test.invalid", "--smtp-retry", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        until(lambda: server.admin().read("vol_hub").get("agentStatus") == "idle", "the hub")
        with server.admin() as admin:
            activity.record(admin, "vol_hub", "brake", {"message": "too many deletions"})
        until(lambda: "brake" in inbox.events(), "the brake mailed", timeout=60)
        [mail] = inbox.mails
        assert mail["Subject"].startswith("[damas] hubsite:"), mail["Subject"]
        assert mail["To"] == "hub-ops@example.org"
        assert mail["From"] == "damas@test.invalid"
        assert (state / "notify").is_dir()  # the notifier's state, under the hub's
        hub.terminate()
        assert hub.wait(30) == 0, log.read_text()
        assert "[notify]" in log.read_text()  # its own thread, named in the log
        assert len(inbox.mails) == 1
    finally:
        if hub.poll() is None:
            hub.kill()
            hub.wait()
        server.stop()
        smtpd.stop()
