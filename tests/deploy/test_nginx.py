"""Two ``damas serve`` on one shared store behind Debian's nginx, on loopback.

Load goes through nginx (N clients × M requests: creates, reads, updates), one
instance is killed with SIGKILL half-way, and then:

- no 5xx but nginx's 502 for a write that was in flight on the killed instance (nginx
  sends a write to one instance only: whether it was applied cannot be known, so the
  proxy must not run it twice and says 502; a read in flight there is retried on the
  other instance and succeeds);
- no acknowledged write lost: every create answered 201 is readable afterwards, as
  every update answered 200;
- the feed equals the store: replaying every change from 0 gives the elements read;
- one lock holder per race, an event stream through nginx sees writes made on both
  instances, the sign-in limit and a sign-out hold across instances.

The instances trust nginx's ``X-Forwarded-For`` (``--trusted-proxies``), as
docs/deploy.md configures them.

Stores: a shared SQLite file here; a PostgreSQL server when that backend is present.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.deploy.cluster import ADMIN_PW, Instance, Nginx, have_nginx

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have_nginx(), reason="nginx is not installed (scripts/system-deps.sh)"),
]

CLIENTS = 8  # N clients ...
REQUESTS = 30  # ... × M requests each
USERS = ("alice", "bob")
BROKEN = -1  # a response cut off: its headers went through nginx, then the instance died


def _store_url(kind: str, tmp: Path) -> str:
    if kind == "sqlite":
        return f"sqlite://{tmp}/store.db"
    try:  # the tests' own PostgreSQL server, with the postgresql:// backend
        from tests import postgres_server
    except ImportError:
        pytest.skip("the postgresql:// backend is not part of this tree yet")
    url = postgres_server.store_url()
    if url is None:
        pytest.skip(f"no PostgreSQL server here: {postgres_server.why_not()}")
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def cluster(request, tmp_path_factory):
    """Instances ``a`` and ``b`` on one store, nginx in front; an admin session."""
    tmp = tmp_path_factory.mktemp(f"cluster-{request.param}")
    store = _store_url(request.param, tmp)
    trust = ("--trusted-proxies", "127.0.0.1/32")
    a, b = Instance(tmp, "a", store, *trust), Instance(tmp, "b", store, *trust)
    a.start()  # the first start makes @admin; the second finds it
    b.start()
    proxy = Nginx(tmp, [a.port, b.port])
    proxy.start()
    try:
        admin = requests.Session()
        token = _sign_in(proxy.url, "admin", ADMIN_PW).json()["token"]
        admin.headers["Authorization"] = f"Bearer {token}"
        for name in USERS:
            r = admin.post(
                f"{proxy.url}/api/create/",
                json={"_id": f"@{name}", "class": "user", "password": f"{name}-pw"},
            )
            assert r.status_code == 201, r.text
        yield {"a": a, "b": b, "nginx": proxy, "admin": admin, "tmp": tmp}
    finally:
        proxy.stop()
        a.stop()
        b.stop()


def _sign_in(url: str, name: str, password: str) -> requests.Response:
    return requests.post(f"{url}/api/signIn/", data={"username": name, "password": password})


def _headers(admin: requests.Session) -> dict[str, str]:
    return {"Authorization": admin.headers["Authorization"]}


# -- the tests that need both instances alive come first (the module's order) ----------------


def test_one_lock_holder_per_race(cluster):
    url, admin = cluster["nginx"].url, cluster["admin"]
    tokens = {n: _sign_in(url, n, f"{n}-pw").json()["token"] for n in USERS}
    for race in range(6):
        id_ = f"/race/{race}"
        assert admin.post(f"{url}/api/create/", json={"_id": id_}).status_code == 201
        start = threading.Barrier(len(USERS) * 2)

        def take(name: str, id_=id_, start=start) -> tuple[str, int]:
            start.wait()
            r = requests.put(
                f"{url}/api/lock/", json=id_, headers={"Authorization": f"Bearer {tokens[name]}"}
            )
            return name, r.status_code

        with ThreadPoolExecutor(len(USERS) * 2) as pool:
            answers = list(pool.map(take, [*USERS, *USERS]))
        winners = {name for name, status in answers if status == 200}
        assert len(winners) == 1, answers
        assert {s for _, s in answers} <= {200, 409}
        holder = admin.get(f"{url}/api/read/{id_}").json()["lock"]
        assert holder == winners.pop()


def test_an_event_stream_through_nginx_sees_writes_on_both_instances(cluster):
    url, admin = cluster["nginx"].url, cluster["admin"]
    seen: list[str] = []
    opened = threading.Event()

    def listen() -> None:
        with requests.get(
            f"{url}/api/events/", headers=_headers(admin), stream=True, timeout=30
        ) as r:
            assert r.status_code == 200
            assert r.headers["Content-Type"].startswith("text/event-stream")
            opened.set()
            for line in r.iter_lines(decode_unicode=True):
                if line.startswith("data:"):  # one change per event
                    seen.append(json.loads(line[5:]).get("_id"))
                if {"/sse/a", "/sse/b"} <= set(seen):
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(20)
    for name in ("a", "b"):  # straight to each instance, not through nginx
        r = requests.post(
            f"{cluster[name].url}/api/create/",
            json={"_id": f"/sse/{name}"},
            headers=_headers(admin),
        )
        assert r.status_code == 201
    listener.join(30)
    assert {"/sse/a", "/sse/b"} <= set(seen)


def test_a_sign_out_on_one_instance_is_honoured_by_the_other(cluster):
    a, b = cluster["a"].url, cluster["b"].url
    token = _sign_in(a, "alice", "alice-pw").json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{b}/api/verify/", headers=auth).status_code == 200
    assert requests.post(f"{a}/api/signOut/", headers=auth).status_code == 200
    assert requests.get(f"{b}/api/verify/", headers=auth).status_code == 401


def test_the_sign_in_limit_holds_across_instances(cluster):
    a, b = cluster["a"].url, cluster["b"].url
    statuses = [_sign_in(a, "bob", "wrong").status_code for _ in range(6)]
    assert statuses[-1] == 429, statuses  # the limit, on one instance
    assert _sign_in(b, "bob", "wrong").status_code == 429  # ... and on the other


def test_load_through_nginx_with_one_instance_killed(cluster):
    url, admin = cluster["nginx"].url, cluster["admin"]
    run = uuid.uuid4().hex[:6]
    log: list[tuple[str, str, int, float, float]] = []  # method, id, status, start, end
    lock = threading.Lock()
    killed_at: list[float] = []
    done = [0]

    def client(n: int) -> None:
        http = requests.Session()
        http.headers.update(_headers(admin))
        mine: list[str] = []
        for m in range(REQUESTS):
            id_ = f"/load/{run}/{n}/{m}"
            if m % 3 == 2 and mine:  # a read of one of this client's creates
                method, target = "GET", mine[-1]
                call = lambda t=target: http.get(f"{url}/api/read/{t}")  # noqa: E731
            elif m % 3 == 1 and mine:  # an update
                method, target = "PUT", mine[-1]
                call = lambda t=target, m=m: http.put(  # noqa: E731
                    f"{url}/api/update/", json={"_id": t, "step": m}
                )
            else:
                method, target = "POST", id_
                call = lambda t=target, n=n: http.post(  # noqa: E731
                    f"{url}/api/create/", json={"_id": t, "client": n}
                )
            start = time.monotonic()
            try:
                status = call().status_code
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                status = BROKEN  # the answer broke off half-way (its headers, or its body)
            end = time.monotonic()
            if method == "POST" and status == 201:
                mine.append(target)
            with lock:
                log.append((method, target, status, start, end))
                done[0] += 1
                if done[0] == CLIENTS * REQUESTS // 2:
                    killed_at.append(time.monotonic())
                    cluster["b"].kill()  # half-way: kill -9 one instance

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    assert killed_at, "the instance was never killed"
    kill = killed_at[0]

    # 1. no 5xx but 502 for a POST in flight on the killed instance: nginx's log names
    # each one, a request it had passed to b when b died. nginx retries the others
    # (GET, PUT, DELETE: idempotent in HTTP) on a; a POST it may not send twice. A
    # response b had begun to send when it died is cut off (the client's connection
    # breaks): that too only for a request in flight at the kill.
    bad = [e for e in log if e[2] >= 500]
    for method, target, status, _, end in bad:
        assert (status, method) == (502, "POST"), (method, target, status)
        assert end >= kill, f"{method} {target} got {status} before the kill"
    broken = [e for e in log if e[2] == BROKEN]
    assert all(end >= kill for *_, end in broken), broken
    assert len(bad) + len(broken) <= CLIENTS  # one request in flight per client at most
    # (a POST that found b's port closed was never sent: nginx logs the refused
    # connect() and sends it to a, whose answer the client got)
    died = [
        line
        for line in (cluster["tmp"] / "nginx-error.log").read_text().splitlines()
        if "[error]" in line
        and f":{cluster['b'].port}/" in line
        and 'request: "POST' in line
        and "connect() failed" not in line
    ]
    assert len(bad) == len(died), died
    assert all("from upstream" in line for line in died), died
    others = {e[2] for e in log if 0 < e[2] < 500}
    assert others <= {200, 201}, others

    # 2. every acknowledged write is there
    created = [t for method, t, status, _, _ in log if method == "POST" and status == 201]
    updated = {t for method, t, status, _, _ in log if method == "PUT" and status == 200}
    posts = [e for e in log if e[0] == "POST"]
    assert len(created) == len(posts) - sum(e[2] in (502, BROKEN) for e in posts)
    stored = {e["_id"]: e for e in admin.post(f"{url}/api/read/", json=created).json()}
    assert sorted(stored) == sorted(created)
    assert all("step" in stored[t] for t in updated)

    # 3. the feed replayed from 0 equals the store
    replay: dict[str, dict | None] = {}
    since = 0
    while True:
        page = admin.get(
            f"{url}/api/changes/", params={"since": since, "limit": 500, "elements": 1}
        ).json()
        for change in page["changes"]:
            replay[change["_id"]] = None if change["deleted"] else change.get("element")
        if not page["changes"]:
            break
        since = page["last_seq"]
    ids = [i for i, e in replay.items() if e is not None]
    now = admin.post(f"{url}/api/read/", json=ids).json()
    assert {e["_id"]: e for e in now} == {i: replay[i] for i in ids}
    search = admin.get(f"{url}/api/search/_id:/^\\/load\\/{run}\\//").json()
    assert sorted(search) == sorted(i for i in ids if i.startswith(f"/load/{run}/"))
    assert set(created) <= set(ids)
