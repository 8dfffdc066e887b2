"""``GET /metrics``: the tracker in the Prometheus text format (``prometheus_client``).

Each application has its own registry. A scrape reads what the dashboard already keeps
current through the change feed (its :class:`~damas_core.sync.completion.CompletionCache`
and :class:`~damas_core.sync.status.SitesCache`): after the first one, a scrape costs the
changes since the last one, never a read of every file.

Metrics (``site`` is a volume's ``name``, ``volume`` its ``_id``):

- ``damas_site_files{site,state}``, ``damas_site_bytes{site,state}``: files, and their
  bytes, in each state at each site (ok, outdated, error, queued, waiting, conflict,
  unwanted; deleted files count nowhere);
- ``damas_site_missing_files{site}``, ``damas_site_missing_bytes{site}``: wanted there
  and not held in their current version; ``damas_site_rate_bytes_per_second{site}``:
  the rate the site last received at; ``damas_site_eta_seconds{site}``: missing bytes
  over that rate (absent while no rate was measured);
- ``damas_sync_errors{site}``: files whose last copy to the site failed;
- ``damas_volume_up{volume}``: 1 when the storage is reached (its hub's
  ``connectionStatus`` is ``ok``, or its agent's heartbeat is fresh and not unmounted);
- ``damas_volume_capacity_bytes{volume,kind}``: ``total``, ``used``, ``remaining``, as
  the agent or the hub measured them;
- ``damas_agent_last_cycle_timestamp_seconds{volume}``: the end of the agent's last
  scan or transfer;
- ``damas_transfer_bytes_total{site,direction}``: bytes the site's agent copied
  (``reception``, ``emission``), ever;
- ``damas_feed_last_seq``: the change feed's position;
- ``damas_http_requests_total{method,route,status}`` and
  ``damas_http_request_duration_seconds{route}`` (a histogram): ``route`` is the
  route's template (``/api/read/{ids}``) or the dashboard page, never the raw path.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from damas_core.sync.eta import KINDS, etas
from damas_core.sync.status import STATES, agent_state

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: the request duration histogram's buckets (seconds): 8 lines per route, not the
#: default 16, since a scrape's cost follows its lines (make bench ops)
BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10.0)
#: the route label of the dashboard's pages; any other path counts as "other"
PAGES = frozenset(
    {"/", "/folders", "/sites", "/site", "/file", "/cells", "/signin", "/signout", "/metrics"}
)


def route_label(call: Any) -> str:
    """The bounded ``route`` label of a request: its route's template, a dashboard
    page, ``/static``, or ``other``."""
    if call.route is not None:
        return call.route.path
    path = call.path.rstrip("/") or "/"
    if path in PAGES:
        return path
    if path.startswith("/static/"):
        return "/static"
    return "other"


class Metrics:
    """The metrics of one application (``app``: its tracker and its dashboard's caches)."""

    def __init__(self, app: Any, token: str | None = None) -> None:
        self.app = app
        self.token = token
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "damas_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "damas_http_request_duration_seconds",
            "Time to answer an HTTP request (until its body starts), by route template",
            ["route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.tracker = _Tracker(app)
        # the tracker's families as last rendered, with their samples: a scrape renders
        # them again only when a sample changed (most scrapes: the HTTP families alone)
        self._rendered: tuple[list[Any], bytes] = ([], b"")

    def observe(self, call: Any, status: int, started: float) -> None:
        """Count one answered request."""
        route = route_label(call)
        self.requests.labels(call.method, route, str(status)).inc()
        self.duration.labels(route).observe(time.perf_counter() - started)

    def token_matches(self, given: str | None) -> bool:
        """True when ``given`` is the metrics token (compared in constant time)."""
        return (
            self.token is not None
            and given is not None
            and hmac.compare_digest(given.encode(), self.token.encode())
        )

    def exposition(self) -> bytes:
        """The text a scrape gets."""
        return generate_latest(self.registry) + self._tracker_text()

    def _tracker_text(self) -> bytes:
        families = list(self.tracker.collect())
        samples = [(f.name, f.samples) for f in families]
        last, text = self._rendered
        if samples != last:
            text = generate_latest(_Families(families))
            self._rendered = (samples, text)  # one assignment: scrapes may run at once
        return text


class _Families:
    """Metric families already collected, for ``generate_latest``."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


class _Tracker:
    """Reads the dashboard's caches at each scrape."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        dashboard = self.app.dashboard
        vols, params = dashboard.known_sites.get()
        done = dashboard.counts.completion()
        files = GaugeMetricFamily(
            "damas_site_files", "Files in each state at each site", labels=["site", "state"]
        )
        size = GaugeMetricFamily(
            "damas_site_bytes", "Bytes of the files in each state at each site",
            labels=["site", "state"],
        )  # fmt: skip
        errors = GaugeMetricFamily(
            "damas_sync_errors", "Files whose last copy to the site failed", labels=["site"]
        )
        missing_files = GaugeMetricFamily(
            "damas_site_missing_files",
            "Files wanted at the site and not held there in their current version",
            labels=["site"],
        )
        missing_bytes = GaugeMetricFamily(
            "damas_site_missing_bytes", "Bytes of the missing files", labels=["site"]
        )
        rate = GaugeMetricFamily(
            "damas_site_rate_bytes_per_second",
            "The rate the site last received at",
            labels=["site"],
        )
        eta = GaugeMetricFamily(
            "damas_site_eta_seconds",
            "Seconds until the site holds every file it should, at its last rate",
            labels=["site"],
        )
        for site, c in done.items():
            for state in STATES:
                files.add_metric([site, state], c["states"][state])
                size.add_metric([site, state], c["state_bytes"][state])
            errors.add_metric([site], c["states"]["error"])
        for site, e in etas(done, vols).items():
            missing_files.add_metric([site], e["files"])
            missing_bytes.add_metric([site], e["bytes"])
            if e["rate"] is not None:
                rate.add_metric([site], e["rate"])
            if e["eta_seconds"] is not None:
                eta.add_metric([site], e["eta_seconds"])
        yield from (files, size, errors, missing_files, missing_bytes, rate, eta)

        now = int(time.time() * 1000)
        up = GaugeMetricFamily(
            "damas_volume_up", "1 when the storage is reached by its agent or hub",
            labels=["volume"],
        )  # fmt: skip
        capacity = GaugeMetricFamily(
            "damas_volume_capacity_bytes", "The storage's size, used and remaining bytes",
            labels=["volume", "kind"],
        )  # fmt: skip
        last_cycle = GaugeMetricFamily(
            "damas_agent_last_cycle_timestamp_seconds",
            "When the agent last ended a scan or a transfer (seconds since the epoch)",
            labels=["volume"],
        )
        moved = CounterMetricFamily(
            "damas_transfer_bytes", "Bytes the site's agent copied, by direction",
            labels=["site", "direction"],
        )  # fmt: skip
        for v in vols:
            vid, site = v["_id"], str(v.get("name"))
            up.add_metric([vid], 1.0 if _reached(v, params, now) else 0.0)
            for kind, key in (("total", "bytesTotal"), ("used", "bytesUsed"),
                              ("remaining", "bytesRemaining")):  # fmt: skip
                if _number(v.get(key)):
                    capacity.add_metric([vid, kind], v[key])
            ends = [
                v[k] for k in ("last_scan", "last_reception", "last_emission") if _number(v.get(k))
            ]
            if ends:
                last_cycle.add_metric([vid], max(ends) / 1000)
            for kind in KINDS:
                total = v.get(f"bytes_{kind}_total")
                moved.add_metric([site, kind], total if _number(total) else 0)
        seq = GaugeMetricFamily("damas_feed_last_seq", "The change feed's last position")
        seq.add_metric([], self.app.tracker.storage.last_seq())
        yield from (up, capacity, last_cycle, moved, seq)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _reached(volume: dict[str, Any], params: Any, now: int) -> bool:
    status = volume.get("connectionStatus")
    if status is not None:  # a storage driven by a hub: its connection says
        return status == "ok"
    return agent_state(volume, params, now) in ("on", "idle")


__all__ = ["CONTENT_TYPE", "Metrics", "route_label"]
