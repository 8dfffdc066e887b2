"""``damas notify``: watch the sites and mail their events to the people who care.

A :class:`Notifier` follows a tracker's change feed and its agents' heartbeats. Each
:meth:`Notifier.run_once`:

1. reads the feed from where it stopped. Every event of the activity log
   (:mod:`.activity`) goes to its volume's outbox; a volume whose ``enable…``
   switches changed gets a ``disabled`` or ``enabled`` event (``detail``: the switches
   and ``by``, who changed them when the change came through the dashboard or
   ``damas volume``: their ``switchedBy``);
2. looks at each volume's heartbeat: an agent silent for more than ``agentTimeout``
   seconds (and not stopped on purpose) gets ``agent_down``, once; its first heartbeat
   afterwards gets ``agent_up``. Only a watcher can see an agent die;
3. mails each volume's outbox to its ``notifiedEmails`` and the global
   ``notifiedEmails`` (:func:`.activity.recipients`): at most one mail per volume per
   ``notifyInterval`` seconds (the volume's, else the global one, default 300), the
   events gathered meanwhile as one digest whose subject names the site and the worst
   event (:data:`.activity.SEVERITY`).

Nothing is lost and nothing is sent twice: the feed position, the outboxes, what each
agent was last seen as and when each volume was last mailed live in one state file
(``notifier.json`` in the state directory, mode 0600, written atomically), saved
before anything is mailed and again after each mail. A mail the SMTP server refuses or
cannot take stays in its outbox and is tried again with back-off (doubling from 10 s
up to 10 min); a restarted notifier goes on from its state file.

>>> import damas_core, tempfile
>>> t = damas_core.open("memory://")
>>> _ = t.create({"_id": "vol_paris", "name": "paris", "url": "file:///p/",
...               "notifiedEmails": "ops@example.org"})
>>> sent = []
>>> n = Notifier(t, tempfile.mkdtemp() + "/n", send=sent.append)
>>> _ = n.run_once()
>>> _ = activity.record(t, "vol_paris", "brake", {"message": "too many deletions"})
>>> n.run_once()["mails"], sent[0]["Subject"], sent[0]["To"]
(1, '[damas] paris: deletion brake', 'ops@example.org')
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from damas_core.errors import DamasError, Unauthorized
from damas_core.query.parser import parse
from damas_core.query.predicate import to_predicate

from . import activity
from .statefile import StateDir
from .tracker_api import TrackerAPI
from .volumes import GLOBAL_ID, VOLUMES_QUERY, global_parameters, volumes

log = logging.getLogger(__name__)

STATE_FILE = "notifier.json"
#: seconds between two mails of one volume, unless ``notifyInterval`` says otherwise
DEFAULT_INTERVAL = 300.0
#: back-off after a failed mail: doubling from ``RETRY_BASE`` up to ``RETRY_CAP`` seconds
RETRY_BASE = 10.0
RETRY_CAP = 600.0
#: events kept per volume while its mail waits; beyond, the oldest are counted, not kept
MAX_OUTBOX = 200
_BATCH = 500
_is_volume = to_predicate(parse(VOLUMES_QUERY))


# -- SMTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Smtp:
    """Where mail goes: ``smtp://[user@]host:port``, ``tls`` one of ``starttls`` (the
    default), ``tls`` (implicit, port 465) or ``none`` (a relay on this machine).

    >>> s = Smtp.parse("smtp://alerts@mail.example.org:587")
    >>> (s.host, s.port, s.user, s.tls)
    ('mail.example.org', 587, 'alerts', 'starttls')
    >>> Smtp.parse("http://x")
    Traceback (most recent call last):
    ...
    ValueError: --smtp: 'http://x' is not smtp://[user@]host:port
    """

    host: str
    port: int
    user: str | None = None
    password: str | None = None
    tls: str = "starttls"
    timeout: float = 30.0

    @classmethod
    def parse(cls, url: str, *, tls: str = "starttls", password: str | None = None) -> Smtp:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme != "smtp" or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"--smtp: {url!r} is not smtp://[user@]host:port")
        if parts.password:
            raise ValueError("--smtp: put the password in --smtp-password-file, not the URL")
        if tls not in ("starttls", "tls", "none"):
            raise ValueError(f"--smtp-tls: starttls, tls or none, not {tls!r}")
        return cls(
            host=parts.hostname,
            port=port or (465 if tls == "tls" else 587 if tls == "starttls" else 25),
            user=unquote(parts.username) if parts.username else None,
            password=password,
            tls=tls,
        )

    def send(self, message: EmailMessage) -> None:
        """Send ``message``; raises ``OSError`` or ``smtplib.SMTPException`` on failure."""
        context = ssl.create_default_context()
        server: smtplib.SMTP
        if self.tls == "tls":
            server = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            server = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with server:
            if self.tls == "starttls":
                server.starttls(context=context)
            if self.user:
                server.login(self.user, self.password or "")
            server.send_message(message)


# -- the mail ---------------------------------------------------------------------------------

_WORDS = {
    "agent_down": "agent down", "agent_up": "agent back", "unreachable": "unreachable",
    "reachable": "reachable again", "errors": "files failing", "errors_fixed": "errors fixed",
    "brake": "deletion brake", "conflict": "conflicts", "disabled": "disabled",
    "enabled": "enabled",
}  # fmt: skip


def _stamp(ms: Any) -> str:
    if not isinstance(ms, int | float) or isinstance(ms, bool):
        return "?"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def digest(site: str, events: list[dict[str, Any]], dropped: int = 0) -> tuple[str, str]:
    """The subject and text of one volume's mail.

    >>> subject, text = digest("paris", [{"event": "agent_up", "time": 0, "detail": {}},
    ...                                   {"event": "agent_down", "time": 0, "detail": {}}])
    >>> subject
    '[damas] paris: agent down (and 1 more event)'
    """
    worst = activity.worst(e["event"] for e in events) or "event"
    more = len(events) + dropped - 1
    subject = f"[damas] {site}: {_WORDS.get(worst, worst)}"
    if more:
        subject += f" (and {more} more event{'s' if more > 1 else ''})"
    lines = [f"Site {site}: {len(events) + dropped} event(s).", ""]
    if dropped:
        lines.append(f"({dropped} older events left out; see damas sync log {site})")
    for e in events:
        detail = orjson.dumps(e.get("detail") or {}).decode()
        who = f" (seen by {e['author']})" if e.get("author") else ""
        lines.append(f"{_stamp(e.get('time'))}  {_WORDS.get(e['event'], e['event'])}{who}")
        lines.append(f"    {detail}")
    lines += ["", f"The whole log: damas sync log {site}"]
    return subject, "\n".join(lines) + "\n"


# -- the notifier -----------------------------------------------------------------------------


class Notifier:
    """Follows ``tracker`` (a Tracker or a server's Client, an admin's) and mails the
    sites' events (see the module).

    ``state_dir``: where it keeps its state (made 0700). ``send``: how a mail goes out
    (an :class:`Smtp`'s ``send``; ``None`` records the events and mails nothing).
    ``sender``: the ``From`` address. ``clock``: seconds since the epoch (tests).
    ``retry``: seconds before a failed mail is tried again (doubling, up to
    :data:`RETRY_CAP`).
    """

    def __init__(
        self,
        tracker: TrackerAPI,
        state_dir: str | Path,
        *,
        send: Callable[[EmailMessage], None] | None = None,
        sender: str | None = None,
        clock: Callable[[], float] = time.time,
        retry: float = RETRY_BASE,
    ) -> None:
        self.tracker = tracker
        self.state = StateDir(state_dir)
        self.send = send
        self.sender = sender or f"damas@{socket.getfqdn() or 'localhost'}"
        self.clock = clock
        self.retry = retry
        self._memory: dict[str, Any] | None = None
        self._vols: dict[str, dict[str, Any]] = {}
        self._params: dict[str, Any] = {}
        self._dirty = False

    # -- state ------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        if self._memory is None:
            self.state.check()
            kept = self.state.read(STATE_FILE)
            self._vols = {v["_id"]: v for v in volumes(self.tracker)}
            self._params = global_parameters(self.tracker)
            if not isinstance(kept, dict) or not isinstance(kept.get("seq"), int):
                # a first start: what happened before it is history, not news
                kept = {"seq": self.tracker.changes(0, 1)["last_seq"], "agents": {},
                        "switches": {}, "outbox": {}, "dropped": {}, "last_sent": {},
                        "retry": {}}  # fmt: skip
                for vid, v in self._vols.items():
                    kept["switches"][vid] = _switches(v)
                self._memory = kept
                self._save()
            self._memory = kept
        return self._memory

    def _save(self) -> None:
        self.state.write(STATE_FILE, self._memory)
        self._dirty = False

    # -- one round --------------------------------------------------------------------------

    def run_once(self, wait: float = 0.0) -> dict[str, int]:
        """Read the feed (long-polling up to ``wait`` seconds when nothing is new),
        record the agents that died or came back, mail what is due. Returns counts:
        ``events`` queued, ``recorded`` (agent_down/up, disabled/enabled), ``mails``
        sent, ``failures``."""
        memory = self._load()
        counts = {"events": 0, "recorded": 0, "mails": 0, "failures": 0}
        self._follow(memory, counts, wait)
        self._heartbeats(memory, counts)
        if counts["recorded"]:
            self._follow(memory, counts, 0.0)  # what was just recorded goes out this round
        if self._dirty:
            self._save()  # the position and the outbox are safe before anything is mailed
        self._flush(memory, counts)
        return counts

    def run(
        self,
        stop: threading.Event,
        every: float = 5.0,
        renew: Callable[[Unauthorized], None] | None = None,
    ) -> None:
        """Rounds until ``stop`` is set, each long-polling the feed up to ``every``
        seconds. A refused token is handed to ``renew`` (which signs in again, or raises
        to stop); any other failure (the tracker unreachable, a 5xx) is logged and tried
        again after a wait doubling from 1 s to 5 min."""
        failures = 0
        while not stop.is_set():
            try:
                self.run_once(wait=every)
                failures = 0
            except Unauthorized as e:
                if renew is None:
                    raise
                renew(e)
            except (DamasError, OSError) as e:
                failures += 1
                delay = min(300.0, 2.0 ** min(failures - 1, 9))
                log.warning("notify: the round failed (%s: %s); again in %.0f s",
                            type(e).__name__, e, delay)  # fmt: skip
                stop.wait(delay)

    def _follow(self, memory: dict[str, Any], counts: dict[str, int], wait: float) -> None:
        while True:
            got = self.tracker.changes(memory["seq"], _BATCH, elements=True, wait=wait)
            wait = 0.0
            if got.get("reset"):
                # the feed no longer holds our position: read the sites again
                self._vols = {v["_id"]: v for v in volumes(self.tracker)}
                self._params = global_parameters(self.tracker)
            for change in got["changes"]:
                self._apply(change, memory, counts)
            if got["last_seq"] != memory["seq"]:
                memory["seq"] = got["last_seq"]
                self._dirty = True
            if len(got["changes"]) < _BATCH and not got.get("more"):
                return

    def _apply(
        self, change: Mapping[str, Any], memory: dict[str, Any], counts: dict[str, int]
    ) -> None:
        cid, element = change["_id"], change.get("element")
        if cid == GLOBAL_ID:
            self._params = global_parameters(self.tracker)  # the defaults under what is set
            return
        if change["deleted"] or element is None:
            self._vols.pop(cid, None)
            return
        if activity.is_event(element):
            self._queue(memory, element)
            counts["events"] += 1
        elif _is_volume(element):
            self._vols[cid] = dict(element)
            self._switched(memory, element, counts)
        elif cid in self._vols:
            self._vols.pop(cid)  # no longer a volume

    def _queue(self, memory: dict[str, Any], event: Mapping[str, Any]) -> None:
        box = memory["outbox"].setdefault(event["#parent"], [])
        if any(e["_id"] == event["_id"] for e in box):
            return
        box.append({k: event.get(k) for k in ("_id", "event", "time", "detail", "author")})
        self._dirty = True
        if len(box) > MAX_OUTBOX:
            del box[0]
            dropped = memory["dropped"]
            dropped[event["#parent"]] = dropped.get(event["#parent"], 0) + 1

    def _switched(
        self, memory: dict[str, Any], vol: Mapping[str, Any], counts: dict[str, int]
    ) -> None:
        vid = vol["_id"]
        now = _switches(vol)
        before = memory["switches"].get(vid)
        memory["switches"][vid] = now
        self._dirty = self._dirty or now != before
        if before is None:
            return  # a new volume: nothing switched
        by = vol.get("switchedBy") if vol.get("switchedAt") != before.get("#at") else None
        off = sorted(k for k, v in now.items() if k != "#at" and not v and before.get(k, True))
        on = sorted(k for k, v in now.items() if k != "#at" and v and not before.get(k, True))
        for name, keys in (("disabled", off), ("enabled", on)):
            if keys:
                activity.record(self.tracker, vid, name, {"switches": keys, "by": by})
                counts["recorded"] += 1

    def _heartbeats(self, memory: dict[str, Any], counts: dict[str, int]) -> None:
        now = int(self.clock() * 1000)
        timeout_s = float(self._params.get("agentTimeout", 300))
        agents = memory["agents"]
        for vid, vol in list(self._vols.items()):
            status = vol.get("agentStatus")
            if status is None:
                continue  # no agent ever ran there
            last = vol.get("lastConnection")
            fresh = isinstance(last, int | float) and now - last <= timeout_s * 1000
            before = agents.get(vid)
            if fresh and status != "stopped":
                seen = "up"
            elif status == "stopped":
                seen = "stopped"
            else:
                seen = "down"
            if seen == before:
                continue
            agents[vid] = seen
            if seen == "down":
                detail = {"last_heartbeat": last, "agentTimeout": timeout_s,
                          "host": vol.get("lastConnectionHost"), "pid": vol.get("lastConnectionPid"),
                          "agentStatus": status}  # fmt: skip
                activity.record(self.tracker, vid, "agent_down", detail)
                counts["recorded"] += 1
            elif seen == "up" and before == "down":
                detail = {
                    "host": vol.get("lastConnectionHost"),
                    "pid": vol.get("lastConnectionPid"),
                }
                activity.record(self.tracker, vid, "agent_up", detail)
                counts["recorded"] += 1
            self._dirty = True

    def _flush(self, memory: dict[str, Any], counts: dict[str, int]) -> None:
        now = int(self.clock() * 1000)
        for vid in sorted(memory["outbox"]):
            events = memory["outbox"][vid]
            if not events:
                memory["outbox"].pop(vid)
                continue
            vol = self._vols.get(vid, {})
            interval = _number(vol.get("notifyInterval"), _number(
                self._params.get("notifyInterval"), DEFAULT_INTERVAL))  # fmt: skip
            last = memory["last_sent"].get(vid)
            if last is not None and now - last < interval * 1000:
                continue
            retry = memory["retry"].get(vid)
            if retry is not None and now < retry["next"]:
                continue
            to = activity.recipients(vol, self._params)
            if not to or self.send is None:
                if not to:
                    log.info("notify: %d event(s) of %s: nobody to mail (notifiedEmails)",
                             len(events), vid)  # fmt: skip
                memory["outbox"].pop(vid)
                memory["dropped"].pop(vid, None)
                self._save()
                continue
            site = str(vol.get("name") or vid)
            dropped = memory["dropped"].get(vid, 0)
            message = self._message(vid, site, events, dropped, to)
            try:
                self.send(message)
            except (OSError, smtplib.SMTPException) as e:
                failures = (retry or {}).get("failures", 0) + 1
                delay = min(RETRY_CAP, self.retry * 2 ** min(failures - 1, 10))
                memory["retry"][vid] = {"failures": failures, "next": now + int(delay * 1000)}
                counts["failures"] += 1
                log.warning("notify: mail for %s failed (%s: %s); again in %.0f s",
                            site, type(e).__name__, e, delay)  # fmt: skip
                self._save()
                continue
            memory["outbox"].pop(vid)
            memory["dropped"].pop(vid, None)
            memory["retry"].pop(vid, None)
            memory["last_sent"][vid] = now
            counts["mails"] += 1
            self._save()
            log.info("notify: mailed %d event(s) of %s to %s", len(events), site, ", ".join(to))

    def _message(
        self, vid: str, site: str, events: list[dict[str, Any]], dropped: int, to: list[str]
    ) -> EmailMessage:
        subject, text = digest(site, events, dropped)
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.sender
        message["To"] = ", ".join(to)
        message["Date"] = formatdate(localtime=False)
        # the same events make the same id: a mail sent twice is one to a careful reader
        message["Message-ID"] = f"<{events[0]['_id']}.{len(events)}.{_safe(vid)}@damas>"
        message["X-Damas-Volume"] = vid
        message["X-Damas-Events"] = " ".join(e["event"] for e in events)
        message.set_content(text)
        return message


def _switches(vol: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: v is not False for k, v in vol.items() if k.startswith("enable")}
    out["#at"] = vol.get("switchedAt")
    return out


def _number(value: Any, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return default


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text)[:64]


__all__ = ["DEFAULT_INTERVAL", "Notifier", "Smtp", "digest"]
