"""Random sequences of file changes and agent runs keep the sync invariant.

Invariant: a site is never marked synced with a copy that does not match the
element's version; after enough quiet rounds every wanted copy matches.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from damas_core.sync.scanner import (
    Scanner,
    changed_since,
    holds_current,
    look_matches,
)
from damas_core.sync.site import LocalSite
from damas_core.sync.volumes import tracked_files
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import damas_core

from .conftest import Sites, needs_rsync

SITES = ("paris", "tokyo", "lyon")
NAMES = ("/a.txt", "/d/b.txt", "/d/e/c.bin")


class SyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="damas-sync-"))
        self.tracker = damas_core.open("memory://")
        self.sites = Sites(self.tmp, self.tracker, SITES)
        self.counter = 0

    def teardown(self) -> None:
        self.tracker.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(site=st.sampled_from(SITES), name=st.sampled_from(NAMES), size=st.integers(0, 300))
    def write(self, site, name, size):
        self.counter += 1
        self.sites.write(site, name, f"{self.counter}:".encode() + b"x" * size)

    @rule(site=st.sampled_from(SITES), name=st.sampled_from(NAMES))
    def delete(self, site, name):
        path = self.sites.path(site, name)
        if path.exists():
            path.unlink()

    @rule(site=st.sampled_from(SITES))
    def run_agent(self, site):
        self.sites.agent(site).run_once()

    @invariant()
    def synced_only_when_the_copy_matches(self):
        for file_id, el in tracked_files(self.tracker).items():
            for site in SITES:
                synced = el.get(f"synced_{site}")
                if synced is not None and synced >= (el.get("time") or 0) and not el.get("deleted"):
                    if el.get(f"modified_{site}") == el.get("time") or el.get("origin") == site:
                        continue  # the writer's own copy may change again before its next scan
                    here = LocalSite(str(self.sites.roots[site])).look(file_id)
                    assert (
                        here is None
                        or look_matches(here, el)
                        or self._changed_locally(el, site, here)
                    ), (file_id, site, el)

    def _changed_locally(self, el, site, here):
        return changed_since(here[1], el.get(f"synced_{site}") or 0)

    def teardown_check(self):
        pass


def quiet_rounds_converge(machine: SyncMachine) -> None:
    for _ in range(4):
        for site in SITES:
            machine.sites.agent(site).run_once()
    for file_id, el in tracked_files(machine.tracker).items():
        if el.get("deleted") or any(el.get(f"conflict_{s}") for s in SITES):
            continue
        for site in SITES:
            assert holds_current(el, site), (file_id, site, el)
            assert look_matches(LocalSite(str(machine.sites.roots[site])).look(file_id), el), (
                file_id,
                site,
            )


class ConvergingMachine(SyncMachine):
    def teardown(self) -> None:
        try:
            quiet_rounds_converge(self)
        finally:
            super().teardown()


def machine_settings(steps: int) -> settings:
    """Examples from ``SYNC_EXAMPLES`` (default 8), ``steps`` steps each."""
    return settings(
        max_examples=int(__import__("os").environ.get("SYNC_EXAMPLES", "8")),
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


TestSync = pytest.mark.slow(needs_rsync(ConvergingMachine.TestCase))
TestSync.settings = machine_settings(12)


class ScanOnlyMachine(SyncMachine):
    """``paris`` neither receives nor emits, so its scans compare only what may have
    changed: after each of them, comparing every file finds nothing left to write."""

    def __init__(self) -> None:
        super().__init__()
        self.tracker.update({"_id": "vol_paris", "enableReception": False, "enableEmission": False})

    @rule(name=st.sampled_from(NAMES), size=st.integers(0, 300))
    def write_at_paris(self, name, size):
        self.write("paris", name, size)

    @rule(name=st.sampled_from(NAMES))
    def delete_at_paris(self, name):
        self.delete("paris", name)

    @rule()
    def paris_scans_keep_up(self):
        self.sites.agent("paris").run_once()
        vol = self.tracker.read("vol_paris")
        fresh = Scanner("paris", str(self.sites.roots["paris"]) + "/", settle=0)
        changes = fresh.compare(vol, tracked_files(self.tracker))
        assert not changes.publish and not changes.update, (changes.publish, changes.update)


TestScanOnly = pytest.mark.slow(needs_rsync(ScanOnlyMachine.TestCase))
TestScanOnly.settings = machine_settings(20)
