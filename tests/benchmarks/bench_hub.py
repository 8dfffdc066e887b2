"""The hub's figures: listing, scanning and relaying through storages reached over ssh.

Each storage runs in its own network namespace with its own sshd and a private tmpfs
(tests/sync/storages.py), so that ssh really crosses a network stack; needs root.

- listing a storage over ssh (:meth:`.SshSite.listing`, parsed into looks) vs
  ``ssh host find … -printf`` alone, its output discarded (goal ≤ 1.5×);
- the scan of an unchanged storage (a storage agent's cycle) vs ``ssh host find``
  alone (goal ≤ 2×);
- the relay of small files A → hub → B vs two ``rsync -a`` over the same ssh paths
  (goal ≤ 1.5×);
- an idle cycle of a hub with 4 storages holding the same project vs one storage's
  (report; goal ≤ 2×). Each storage's agent runs in a process of its own, as
  ``damas hub run`` runs them. The storages run on this machine, their ``find`` and
  sshd sharing its cores with the hub: 4 ``ssh find`` side by side vs one is reported
  (what the storages' own work costs here), and the idle hub of 4 storages vs those
  4 ``ssh find`` (goal ≤ 1.5×: what the hub adds to it).

Every ssh command, ours and the raw ones, goes through one shared connection per
storage (ControlMaster), as a storage's agent's do.

The storages' shell profile is empty, as on a NAS (see tests/sync/storages.py): every
ssh command starts the user's shell, and this machine's root profile takes a tenth of
a second that no storage spends.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from damas_core.sync.find import FORMAT
from damas_core.sync.hub import StorageAgent
from damas_core.sync.rsync import ssh_line
from damas_core.sync.ssh_site import SshSite, remote_command, shared_connection
from damas_core.sync.tree import Rules, Seen
from damas_core.sync.volumes import create_volume, set_global_parameters

import damas_core
from tests.benchmarks.harness import best
from tests.sync.storages import Storages, make_storages, stop_storages


def _fig(figure: str, n: int, ours: float, raw: float, goal: float | None) -> dict:
    ratio = ours / raw if raw else float("inf")
    return {
        "area": "hub",
        "figure": figure,
        "n": n,
        "ours_s": ours,
        "raw_s": raw,
        "ratio": ratio,
        "goal": "report" if goal is None else f"<= {goal}x",
        "ok": None if goal is None else ratio <= goal,
    }


def _files(n: int) -> dict[str, bytes]:
    return {f"d{i // 500}/f{i:06d}.txt": b"%d" % i for i in range(n)}


class _AgentInProcess:
    """A storage's agent in a process of its own, kept between its cycles."""

    def __init__(self, store: str, volume_id: str, ssh: list[str]) -> None:
        self._pool = ProcessPoolExecutor(
            1, mp_context=get_context("spawn"), initializer=_make_agent,
            initargs=(store, volume_id, ssh),
        )  # fmt: skip

    def cycle(self) -> Future:
        return self._pool.submit(_cycle)

    def close(self) -> None:
        self._pool.submit(_close).result()
        self._pool.shutdown()


_AGENT: list[StorageAgent] = []


def _make_agent(store: str, volume_id: str, ssh: list[str]) -> None:
    _AGENT.append(
        StorageAgent(damas_core.open(store), volume_id, "vol_hub", ssh_command=ssh, settle=0)
    )


def _cycle() -> None:
    _AGENT[0].run_once()


def _close() -> None:
    _AGENT[0].close()
    _AGENT[0].tracker.close()


def _relay(base: Path, storages: Storages, ssh: list[str], n: int) -> Iterator[dict]:
    """A → hub → B by their agents (running already: their views current), on a
    tracker of its own, vs two ``rsync -a`` of the same files; each the best of 3
    rounds, each round new files, ours and the raw one in turn."""
    tracker = damas_core.open(f"lmdb://{base}/relay-store")
    hub_root = base / "relay-hub"
    hub_root.mkdir()
    a, b = storages["a"], storages["b"]
    create_volume(tracker, {"_id": "vol_hub", "name": "hub", "url": f"file://{hub_root}/"})
    create_volume(tracker, {"_id": "vol_a", "name": "sta", "url": a.url, "hub": "vol_hub"})
    create_volume(tracker, {"_id": "vol_b", "name": "stb", "url": b.url, "hub": "vol_hub"})
    set_global_parameters(tracker, {"syncEverywhere": True, "retryDelay": 0})
    agent_a = StorageAgent(tracker, "vol_a", "vol_hub", ssh_command=ssh, settle=0)
    agent_b = StorageAgent(tracker, "vol_b", "vol_hub", ssh_command=ssh, settle=0)
    rsh = shlex.join(ssh)
    ours, raw = [], []
    try:
        agent_a.run_once()
        agent_b.run_once()
        for rnd in range(3):
            a.write({f"r{rnd}/f{i:05d}.txt": b"x" * 100 for i in range(n)})
            t = time.perf_counter()
            agent_a.run_once()  # scan, publish, up to the hub
            agent_b.run_once()  # down to b
            ours.append(time.perf_counter() - t)
            assert len([k for k in b.read() if k.startswith(b"r%d/" % rnd)]) == n
            mid = base / f"mid{rnd}"
            t = time.perf_counter()
            subprocess.run(["rsync", "-a", "-e", rsh, f"root@{a.address}:{a.root}r{rnd}/",
                            f"{mid}/"], check=True)  # fmt: skip
            subprocess.run(["rsync", "-a", "-e", rsh, f"{mid}/",
                            f"root@{b.address}:{b.root}raw{rnd}/"], check=True)  # fmt: skip
            raw.append(time.perf_counter() - t)
    finally:
        agent_a.close()
        agent_b.close()
        tracker.close()
    yield _fig("relay A -> hub -> B (scan, up, down) vs two rsync -a", n, min(ours), min(raw), 1.5)


def figures(scale: str) -> Iterator[dict]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise RuntimeError("bench_hub needs root and iproute2 (network namespaces)")
    n_list = 100_000 if scale == "full" else 3_000
    n_relay = 1000 if scale == "full" else 100
    base = Path(tempfile.mkdtemp(prefix="damas-bench-hub-"))
    storages = make_storages(
        base, {f"s{k}": "find" for k in range(1, 5)} | {"a": "find", "b": "find"}
    )
    try:
        ssh = storages.ssh
        s1 = storages["s1"]
        for k in range(1, 5):
            # the same project at each storage, as synced storages hold it
            storages[f"s{k}"].write(_files(n_list), mtime=1_700_000_000.5)
        # ssh alone and ours on one shared connection per storage, as a storage's agent
        # has (the handshake is not what is measured)
        shared, _ = shared_connection(str(base / "raw"))
        raw_finds = []
        for k in range(1, 5):
            s = storages[f"s{k}"]
            raw_finds.append(
                [*ssh_line([*ssh, *shared]), f"root@{s.address}",
                 remote_command(["find", s.root.rstrip("/"), "-printf", FORMAT])]
            )  # fmt: skip
        site = SshSite({"_id": "v", "url": s1.url}, ssh_command=[*ssh, *shared])
        site.kind = "find"

        def find_alone(k: int = 0) -> None:
            subprocess.run(raw_finds[k], stdout=subprocess.DEVNULL, check=True)

        def our_listing() -> None:
            n = sum(len(p) for p in site.walk_parts(Rules(), Seen()))
            assert n == n_list, n

        raw = best(find_alone, 3)
        yield _fig("listing a storage over ssh vs ssh find", n_list, best(our_listing, 3), raw, 1.5)

        # the scan of an unchanged storage: a storage agent's cycle after two cycles
        tracker = damas_core.open(f"lmdb://{base}/store")
        hub_root = base / "hubroot"
        hub_root.mkdir()
        create_volume(tracker, {"_id": "vol_hub", "name": "hub", "url": f"file://{hub_root}/"})
        for k in range(1, 5):
            s = storages[f"s{k}"]
            create_volume(
                tracker,
                {"_id": f"vol_s{k}", "name": f"sto{k}", "url": s.url, "hub": "vol_hub",
                 "enableReception": False, "enableEmission": False},
            )  # fmt: skip
        set_global_parameters(tracker, {"syncEverywhere": False, "retryDelay": 0})
        tracker.close()
        # each storage's agent in a process of its own, as damas hub run runs them
        store = f"lmdb://{base}/store"
        agents = [_AgentInProcess(store, f"vol_s{k}", ssh) for k in range(1, 5)]
        try:
            for ag in agents:  # the first cycles publish and settle, in turn
                ag.cycle().result()
                ag.cycle().result()
            ours = best(lambda: agents[0].cycle().result(), 3)
            yield _fig("scan of an unchanged storage vs ssh find", n_list, ours, raw, 2.0)

            def idle_four() -> None:
                for done in [ag.cycle() for ag in agents]:
                    done.result()

            four = best(idle_four, 3)
            yield _fig("idle hub cycle, 4 storages vs 1", n_list * 4, four, ours, 2.0)

            # the storages' own work alone: they share this machine's cores with the hub
            def four_finds() -> None:
                for p in [subprocess.Popen(f, stdout=subprocess.DEVNULL) for f in raw_finds]:
                    p.wait()

            finds = best(four_finds, 3)
            yield _fig("4 ssh find side by side vs 1 (this machine)", n_list * 4, finds, raw, None)
            yield _fig("idle hub cycle, 4 storages vs 4 ssh find side by side", n_list * 4,
                       four, finds, 1.5)  # fmt: skip
        finally:
            for ag in agents:
                ag.close()
        yield from _relay(base, storages, ssh, n_relay)
    finally:
        stop_storages(storages)
        shutil.rmtree(base, ignore_errors=True)
