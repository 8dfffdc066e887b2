"""Sites on one machine: a tracker, volume directories, and helpers to run agents."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from damas_core.sync import Agent
from damas_core.sync.find import gnu_find
from damas_core.sync.volumes import create_volume, set_global_parameters

import damas_core


def write_tree(root: Path, n: int, per_dir: int = 100) -> None:
    """``n`` small files under ``root``, ``per_dir`` to a folder (``d0/f0000.txt``, …)."""
    for i in range(n):
        d = root / f"d{i // per_dir}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:04d}.txt").write_text(str(i))


needs_rsync = pytest.mark.skipif(
    shutil.which("rsync") is None,
    reason="rsync is not installed (scripts/system-deps.sh installs it)",
)


class Sites:
    """Volumes ``paris``, ``tokyo``, ``lyon`` (``file://``) on one tracker."""

    def __init__(
        self, tmp: Path, tracker, names=("paris", "tokyo", "lyon"), walker: str = "auto"
    ) -> None:
        self.tracker = tracker
        self.walker = walker
        self.roots: dict[str, Path] = {}
        self.agents: dict[str, Agent] = {}
        for name in names:
            root = tmp / f"site {name}"  # a space in every root
            root.mkdir()
            self.roots[name] = root
            create_volume(tracker, {"_id": f"vol_{name}", "name": name, "url": f"file://{root}/"})
        set_global_parameters(tracker, {"syncEverywhere": True, "retryDelay": 0})

    def agent(self, name: str, **options) -> Agent:
        if name not in self.agents:
            options.setdefault("settle", 0)
            options.setdefault("walker", self.walker)
            self.agents[name] = Agent(self.tracker, f"vol_{name}", **options)
        return self.agents[name]

    def run(self, *names: str, rounds: int = 1):
        reports = []
        for _ in range(rounds):
            for name in names or tuple(self.roots):
                reports.append(self.agent(name).run_once())
        return reports

    def write(self, site: str, file_id: str, data: bytes | str, mtime: float | None = None) -> Path:
        path = self.roots[site] / file_id.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        return path

    def path(self, site: str, file_id: str) -> Path:
        return self.roots[site] / file_id.lstrip("/")


@pytest.fixture(autouse=True)
def agent_state(tmp_path, monkeypatch):
    """Agents started by a test keep their state (and their lock) in its own folder."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


@pytest.fixture
def tracker(tmp_path):
    t = damas_core.open(f"lmdb://{tmp_path}/store")
    yield t
    t.close()


@pytest.fixture(params=["find", "scandir"])
def sites(request, tmp_path, tracker):
    """Three sites; every test using them runs with each walker."""
    if request.param == "find" and gnu_find() is None:
        pytest.skip("GNU find is not installed")
    return Sites(tmp_path, tracker, walker=request.param)
