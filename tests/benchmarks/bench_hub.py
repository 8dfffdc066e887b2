"""The hub's figures: listing, scanning and relaying through storages reached over ssh.

Each storage runs in its own network namespace with its own sshd and a private tmpfs
(tests/sync/storages.py), so that ssh really crosses a network stack; needs root.

- listing a storage over ssh (:meth:`.SshSite.listing`, parsed into looks) vs
  ``ssh host find … -printf`` alone, its output discarded (goal ≤ 1.5×);
- the scan of an unchanged storage (a storage agent's cycle) vs ``ssh host find``
  alone (goal ≤ 2×);
- the relay of small files A → hub → B vs two ``rsync -a`` over the same ssh paths
  (goal ≤ 1.5×);
- an idle cycle of a hub with 4 storages vs one storage's (report; goal ≤ 2×).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from damas_core.sync.find import FORMAT
from damas_core.sync.hub import StorageAgent
from damas_core.sync.ssh_site import SshSite, remote_command
from damas_core.sync.tree import Rules, Seen
from damas_core.sync.volumes import create_volume, set_global_parameters

import damas_core
from tests.benchmarks.harness import best
from tests.sync.storages import make_storages, stop_storages


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
            storages[f"s{k}"].write(_files(n_list))
        site = SshSite({"_id": "v", "url": s1.url}, ssh_command=ssh)
        site.kind = "find"
        raw_find = [*site.ssh_base(), f"root@{s1.address}"]
        raw_find.append(remote_command(["find", s1.root.rstrip("/"), "-printf", FORMAT]))

        def find_alone() -> None:
            subprocess.run(raw_find, stdout=subprocess.DEVNULL, check=True)

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
                tracker, {"_id": f"vol_s{k}", "name": f"sto{k}", "url": s.url, "hub": "vol_hub"}
            )
        a, b = storages["a"], storages["b"]
        create_volume(tracker, {"_id": "vol_a", "name": "sta", "url": a.url, "hub": "vol_hub"})
        create_volume(tracker, {"_id": "vol_b", "name": "stb", "url": b.url, "hub": "vol_hub"})
        # scan-only storages for the scan figures; a and b relay with syncEverywhere
        for k in range(1, 5):
            tracker.update({"_id": f"vol_s{k}", "enableReception": False, "enableEmission": False})
        set_global_parameters(tracker, {"syncEverywhere": False, "retryDelay": 0})
        agent = StorageAgent(tracker, "vol_s1", "vol_hub", ssh_command=ssh, settle=0)
        agent.run_once()
        agent.run_once()
        ours = best(lambda: agent.run_once(), 3)
        yield _fig("scan of an unchanged storage vs ssh find", n_list, ours, raw, 2.0)
        agents = [agent] + [
            StorageAgent(tracker, f"vol_s{k}", "vol_hub", ssh_command=ssh, settle=0)
            for k in range(2, 5)
        ]
        for ag in agents[1:]:
            ag.run_once()
            ag.run_once()

        def idle_four() -> None:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda ag: ag.run_once(), agents))

        yield _fig("idle hub cycle, 4 storages vs 1", n_list * 4, best(idle_four, 3), ours, 2.0)
        for ag in agents:
            ag.close()

        # the relay: A -> hub -> B by their agents, running already (their views current)
        tracker.update([{"_id": f"vol_s{k}", "enableScans": False} for k in range(1, 5)])
        set_global_parameters(tracker, {"syncEverywhere": True})
        agent_a = StorageAgent(tracker, "vol_a", "vol_hub", ssh_command=ssh, settle=0)
        agent_b = StorageAgent(tracker, "vol_b", "vol_hub", ssh_command=ssh, settle=0)
        agent_a.run_once()
        agent_b.run_once()
        a.write({f"r/f{i:05d}.txt": b"x" * 100 for i in range(n_relay)})
        t = time.perf_counter()
        agent_a.run_once()  # scan, publish, up to the hub
        agent_b.run_once()  # down to b
        ours = time.perf_counter() - t
        assert len([k for k in b.read() if k.startswith(b"r/")]) == n_relay
        agent_a.close()
        agent_b.close()
        rsh = shlex.join(ssh)
        mid = base / "mid"

        def two_rsyncs() -> None:
            shutil.rmtree(mid, ignore_errors=True)
            subprocess.run(["rsync", "-a", "-e", rsh, f"root@{a.address}:{a.root}r/", f"{mid}/"],
                           check=True)  # fmt: skip
            subprocess.run(["rsync", "-a", "-e", rsh, f"{mid}/", f"root@{b.address}:{b.root}r2/"],
                           check=True)  # fmt: skip

        raw = best(two_rsyncs, 1)
        yield _fig("relay A -> hub -> B (scan, up, down) vs two rsync -a", n_relay, ours, raw, 1.5)
        tracker.close()
    finally:
        stop_storages(storages)
        shutil.rmtree(base, ignore_errors=True)
