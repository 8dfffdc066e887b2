"""Several ``damas serve`` behind nginx: what the proxy costs, what a second instance buys.

Two ``damas serve`` processes on one store (the tests' PostgreSQL server when there is
one, then a SQLite file), and Debian's nginx on loopback with
the configuration of docs/deploy.md (:func:`tests.deploy.cluster.nginx_conf`); the
load generator of :mod:`tests.benchmarks.bench_http` (a separate process, keep-alive
client connections) sends ``GET /api/read/ID`` signed in with a JWT:

- two instances behind nginx vs one instance behind nginx (ratio < 1: the second
  instance helps; on a 2-core machine the load generator and nginx share the cores);
- one instance through nginx vs the same instance directly (the proxy's cost).

No goal: figures for the record. Run on its own:
``python -m tests.benchmarks [--quick] deploy``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.benchmarks.bench_http import load
from tests.benchmarks.harness import figure, print_table
from tests.deploy.cluster import ADMIN_PW, Instance, Nginx

AREA = "deploy"
SCALES = {"full": 20_000, "quick": 2_000}
PATH = "/api/read/%2Fbench%2Fa"


def figures(scale: str) -> Iterator[dict]:
    from tests import postgres_server

    n = SCALES[scale]
    stores = {"postgresql": postgres_server.store_url(), "sqlite": None}
    for kind, url in stores.items():
        if kind == "postgresql" and url is None:
            continue  # no PostgreSQL server here
        yield from _figures(kind, url, n)


def _figures(kind: str, url: str | None, n: int) -> Iterator[dict]:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        store = url or f"sqlite://{tmp}/store.db"
        a, b = Instance(tmp, "a", store), Instance(tmp, "b", store)
        proxies: list[Nginx] = []
        try:
            a.start()
            b.start()
            for upstreams, sub in (([a.port, b.port], "two"), ([a.port], "one")):
                (tmp / sub).mkdir()
                proxies.append(Nginx(tmp / sub, upstreams))
                proxies[-1].start()
            two, one = proxies
            signed = requests.post(
                f"{a.url}/api/signIn/", data={"username": "admin", "password": ADMIN_PW}
            )
            token = signed.json()["token"]
            created = requests.post(
                f"{a.url}/api/create/",
                json={"_id": "/bench/a", "file_size": 1234},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert created.status_code == 201, created.text
            for port in (two.port, one.port, a.port):  # warm up
                load(port, "GET", PATH, "", 200, token)
            two_s = load(two.port, "GET", PATH, "", n, token)
            one_s = load(one.port, "GET", PATH, "", n, token)
            direct_s = load(a.port, "GET", PATH, "", n, token)
            yield figure(
                AREA,
                f"GET read ({kind}): 2 instances vs 1, behind nginx",
                n,
                ours_s=two_s,
                raw_s=one_s,
                goal=None,
            )
            yield figure(
                AREA,
                f"GET read ({kind}): through nginx vs direct",
                n,
                ours_s=one_s,
                raw_s=direct_s,
                goal=None,
            )
        finally:
            for proxy in proxies:
                proxy.stop()
            a.stop()
            b.stop()


if __name__ == "__main__":
    import sys

    print_table(list(figures("quick" if "--quick" in sys.argv else "full")))
