"""`damas sync agent` and `damas sync status` on a store, as an administrator runs them."""

from __future__ import annotations

import json

from click.testing import CliRunner

from damas_core.cli import main

from .conftest import needs_rsync


def _damas(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@needs_rsync
def test_agents_and_status_from_the_command_line(sites, tmp_path):
    store = f"lmdb://{tmp_path}/store"
    sites.tracker.update({"_id": "vol_paris", "enableEmission": False})  # lyon waits for its agent
    sites.write("paris", "/shots/a.exr", "frame a")
    sites.write("paris", "/shots/b c.exr", "frame b")
    run = _damas("sync", "agent", "vol_paris", "--once", "--settle", "0", "--store", store)
    assert run.exit_code == 0, run.output
    assert sorted(json.loads(run.output)["published"]) == ["/shots/a.exr", "/shots/b c.exr"]
    run = _damas(
        "sync", "agent", "vol_tokyo", "--once", "--settle", "0", "--walker", "scandir",
        "--store", store,
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    assert sorted(json.loads(run.output)["received"]) == ["/shots/a.exr", "/shots/b c.exr"]
    assert sites.path("tokyo", "/shots/b c.exr").read_text() == "frame b"

    shown = _damas("sync", "status", "--json", "--store", store)
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["sites"] == ["lyon", "paris", "tokyo"]
    states = {row["_id"]: row["states"] for row in data["files"]}
    assert states["/shots/a.exr"] == {
        "lyon": {"state": "queued"},
        "paris": {"state": "ok"},
        "tokyo": {"state": "ok"},
    }
    assert data["completion"]["lyon"] == {
        "files_ok": 0, "files_wanted": 2, "bytes_ok": 0, "bytes_wanted": 14,
    }  # fmt: skip
    table = _damas("sync", "status", "--store", store, "/shots/a.exr")
    assert table.exit_code == 0, table.output
    assert "/shots/a.exr" in table.output and "b c.exr" not in table.output
    assert "queued" in table.output and "ok" in table.output


def test_agent_command_errors_are_clear(sites, tmp_path):
    store = f"lmdb://{tmp_path}/store"
    run = CliRunner().invoke(main, ["sync", "agent", "vol_nowhere", "--once", "--store", store])
    assert run.exit_code != 0 and "no volume 'vol_nowhere'" in run.output
    run = CliRunner().invoke(
        main, ["sync", "agent", "vol_paris", "--walker", "ls", "--store", store]
    )
    assert run.exit_code != 0 and "'ls' is not one of" in run.output
