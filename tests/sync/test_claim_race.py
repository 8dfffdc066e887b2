"""Agents racing for one volume, in separate processes on one store (LMDB, SQLite,
PostgreSQL) or through one server: taking the volume is a compare-and-set, so exactly
one wins and the others stop with EXIT_HELD."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from damas_core.sync.service import EXIT_HELD, Service, ServiceError
from damas_core.sync.volumes import create_volume, volume

import damas_core
from damas_core.client import connect
from damas_core.wsgi import make_app
from tests import postgres_server
from tests.http.conftest import serving

RACERS = 4


def _race(url: str, state_dir: str, start, done, results) -> None:
    tracker = connect(url) if url.startswith("http") else damas_core.open(url)
    service = Service(tracker, "vol_paris", lambda t: None, state_dir=state_dir)
    seen = volume(tracker, "vol_paris")  # every racer read it free
    start.wait()
    outcome: object = "no answer"
    try:
        service._claim(seen)
        outcome = "won"
    except ServiceError as e:
        outcome = e.exit_code
    except Exception as e:
        outcome = repr(e)
    finally:
        results.put(outcome)
        done.wait(timeout=60)  # the winner stays alive while the others look
        tracker.close()


@pytest.mark.parametrize("backend", ["lmdb", "sqlite", "postgresql", "http"])
def test_exactly_one_of_racing_agents_takes_the_volume(tmp_path: Path, backend: str):
    if backend == "postgresql":
        url = postgres_server.store_url()
        if url is None:
            pytest.skip(f"no PostgreSQL server here: {postgres_server.why_not()}")
    else:
        url = {
            "lmdb": f"lmdb://{tmp_path}/store",
            "sqlite": f"sqlite://{tmp_path}/store.db",
            "http": f"lmdb://{tmp_path}/store",  # served: the racers are its clients
        }[backend]
    with damas_core.open(url) as tracker:
        create_volume(tracker, {"_id": "vol_paris", "name": "paris", "url": f"file://{tmp_path}/"})
        if backend == "http":
            with serving(make_app(tracker, auth="none")) as served:
                outcomes = _run_racers(served, tmp_path)
        else:  # the racers open the store themselves
            outcomes = _run_racers(url, tmp_path)
    assert outcomes == [EXIT_HELD] * (RACERS - 1) + ["won"]
    with damas_core.open(url) as tracker:
        assert tracker.read("vol_paris")["agentStatus"] == "starting"


def _run_racers(url: str, tmp_path: Path) -> list[object]:
    ctx = multiprocessing.get_context("spawn")
    start, done, results = ctx.Barrier(RACERS), ctx.Barrier(RACERS), ctx.Queue()
    racers = [
        ctx.Process(target=_race, args=(url, str(tmp_path / f"state{n}"), start, done, results))
        for n in range(RACERS)
    ]
    for p in racers:
        p.start()
    outcomes = sorted((results.get(timeout=60) for _ in racers), key=str)
    for p in racers:
        p.join(timeout=30)
    return outcomes
