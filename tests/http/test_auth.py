"""Sign-in, tokens and permissions over HTTP (``auth="jwt"`` and a host callable)."""

from __future__ import annotations

import threading
import time
from urllib.parse import quote

import jwt
import pytest
import requests
from argon2 import PasswordHasher

import damas_core
from damas_core.client import connect
from damas_core.errors import Unauthorized
from damas_core.permissions import CLASSES, RANK, REQUIRED
from damas_core.query.ast import All
from damas_core.tokens import Tokens
from damas_core.wsgi import make_app
from tests.http.conftest import USERS, add_users


@pytest.fixture
def jwt_api(shared_server):
    """``(tracker, url, app)``: a fresh memory tracker with users, served with jwt."""
    switch, url = shared_server
    tracker = damas_core.open("memory://")
    add_users(tracker)
    switch.app = make_app(tracker, auth="jwt")
    yield tracker, url, switch.app
    tracker.close()


def token_for(url: str, name: str) -> str:
    r = requests.post(f"{url}/api/signIn/", data={"username": name, "password": f"{name}-pw"})
    assert r.status_code == 200, r.text
    return r.json()["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def snapshot(tracker) -> dict:
    ids = tracker.storage.find(All())
    return {
        e["_id"]: e for e in tracker.storage.get_many(ids) if e and not e["_id"].startswith("~")
    }


# -- sign-in -------------------------------------------------------------------------


def test_sign_in_with_a_form_or_json(jwt_api):
    _tracker, url, _ = jwt_api
    r = requests.post(f"{url}/api/signIn", data={"username": "ula", "password": "ula-pw"})
    assert r.status_code == 200
    body = r.json()
    assert body["user"]["_id"] == "@ula" and "password" not in body["user"]
    assert body["token_exp"] - body["token_iat"] == 24 * 3600
    r = requests.post(
        f"{url}/api/signIn/", json={"username": "ula", "password": "ula-pw", "expiresIn": "1h"}
    )
    assert r.json()["token_exp"] - r.json()["token_iat"] == 3600
    r = requests.get(f"{url}/api/verify/", headers=bearer(r.json()["token"]))
    assert r.status_code == 200 and r.json()["_id"] == "@ula" and "password" not in r.json()
    assert (
        requests.post(
            f"{url}/api/signIn/",
            json={"username": "ula", "password": "ula-pw", "expiresIn": "soon"},
        ).status_code
        == 400
    )
    assert requests.post(f"{url}/api/signIn/", json={"username": "ula"}).status_code == 400


def test_failures_do_not_say_whether_the_user_exists(jwt_api):
    _, url, _ = jwt_api
    wrong = requests.post(f"{url}/api/signIn/", data={"username": "ula", "password": "nope"})
    unknown = requests.post(f"{url}/api/signIn/", data={"username": "nobody", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {"error": "signIn error: invalid username or password", "status": 401}
    )


def test_sign_in_is_rate_limited_per_user_and_address(jwt_api):
    _, url, _ = jwt_api
    for _ in range(5):
        assert (
            requests.post(
                f"{url}/api/signIn/", data={"username": "ula", "password": "x"}
            ).status_code
            == 401
        )
    r = requests.post(f"{url}/api/signIn/", data={"username": "ula", "password": "ula-pw"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    # Another user from the same address is not locked out by ula's failures.
    assert (
        requests.post(
            f"{url}/api/signIn/", data={"username": "eddie", "password": "eddie-pw"}
        ).status_code
        == 200
    )


def test_the_secret_is_never_returned(jwt_api):
    tracker, url, _ = jwt_api
    token = token_for(url, "ada")
    secret = tracker.get_setting("jwt_secret")
    assert secret
    h = bearer(token)
    answers = [
        requests.get(f"{url}/api/search/*", headers=h),
        requests.get(f"{url}/api/read/~damas", headers=h),
        requests.post(f"{url}/api/search_mongo/", json={"query": {}}, headers=h),
        requests.get(f"{url}/api/verify/", headers=h),
    ]
    assert "~damas" not in answers[0].json() and answers[1].status_code == 404
    assert all(secret not in a.text for a in answers)
    assert (
        requests.put(
            f"{url}/api/update/", json={"_id": "~damas", "jwt_secret": "x"}, headers=h
        ).status_code
        == 400
    )
    assert tracker.get_setting("jwt_secret") == secret


def test_reading_a_user_never_returns_its_password(jwt_api):
    _, url, _ = jwt_api
    h = bearer(token_for(url, "ada"))
    for r in (
        requests.get(f"{url}/api/read/@ula,@ada", headers=h),
        requests.get(f"{url}/api/graph/0/@ula", headers=h),
        requests.get(f"{url}/api/search_one/_id:@ula", headers=h),
        requests.put(f"{url}/api/update/", json={"_id": "@ula", "email": "u@x"}, headers=h),
        requests.post(f"{url}/api/upsert/", json={"_id": "@new", "password": "pw"}, headers=h),
    ):
        assert r.status_code < 300 and "password" not in r.text and "argon2" not in r.text


# -- tokens ----------------------------------------------------------------------------


def claims(name: str = "ula", **more) -> dict:
    now = int(time.time())
    return {"sub": name, "iat": now, "exp": now + 3600, "jti": "x", **more}


@pytest.mark.parametrize("kind", ["forged", "alg-none", "garbage", "expired", "no-jti", "hs512"])
def test_bad_tokens_get_401(jwt_api, kind):
    tracker, url, _app = jwt_api
    token_for(url, "ula")  # makes the secret exist
    secret = tracker.get_setting("jwt_secret")
    tokens = {
        "forged": lambda: jwt.encode(
            claims(), "not-the-secret-but-as-long-as-one-32", algorithm="HS256"
        ),
        "alg-none": lambda: jwt.encode(claims(), None, algorithm="none"),
        "garbage": lambda: "not.a.token",
        "expired": lambda: Tokens(tracker, clock=lambda: time.time() - 3 * 86400).issue("ula")[0],
        "no-jti": lambda: jwt.encode(
            {"sub": "ula", "iat": 1, "exp": int(time.time()) + 60}, secret, algorithm="HS256"
        ),
        "hs512": lambda: jwt.encode(claims(), secret, algorithm="HS512"),
    }
    before = snapshot(tracker)
    h = bearer(tokens[kind]())
    assert requests.get(f"{url}/api/verify/", headers=h).status_code == 401
    r = requests.post(f"{url}/api/create/", json={"_id": "/x"}, headers=h)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert snapshot(tracker) == before


@pytest.mark.parametrize("change", ["sign-out", "password", "disabled", "deleted"])
def test_tokens_die(jwt_api, change):
    tracker, url, _ = jwt_api
    client = connect(url)
    client.sign_in("ula", "ula-pw")
    token = client.token
    assert client.verify()["_id"] == "@ula"
    if change == "sign-out":
        client.sign_out()
        client.use_token(token)
    elif change == "password":
        tracker.update({"_id": "@ula", "password": "new-pw"})
    elif change == "disabled":
        tracker.update({"_id": "@ula", "disabled": True})
    else:
        tracker.delete("@ula")
    with pytest.raises(Unauthorized):
        client.verify()
    with pytest.raises(Unauthorized):
        client.create({"_id": "/x"})
    assert tracker.read("/x") is None


def test_token_cookie(jwt_api):
    tracker, url, _ = jwt_api
    token = token_for(url, "ula")
    cookies = {"token": token}
    assert requests.get(f"{url}/api/verify/", cookies=cookies).json()["_id"] == "@ula"
    # A cross-site form can carry the cookie but not a JSON content type: refused.
    r = requests.post(
        f"{url}/api/create/",
        data='{"_id": "/x"}',
        cookies=cookies,
        headers={"Content-Type": "text/plain"},
    )
    assert r.status_code == 403 and tracker.read("/x") is None
    assert (
        requests.post(f"{url}/api/create/", json={"_id": "/x"}, cookies=cookies).status_code == 201
    )


def test_no_credentials_get_401_on_every_private_route(jwt_api):
    from damas_core.http.routes import ROUTES

    tracker, url, _ = jwt_api
    before = snapshot(tracker)
    for route in ROUTES:
        if route.public:
            continue
        path = route.path.format(ids="%2Fa", id="%2Fa", query="*", depth="0")
        r = requests.request(route.method, url + path, json={"_id": "/a"})
        assert r.status_code == 401, (route.method, route.path, r.text)
    assert snapshot(tracker) == before


def test_host_callable_auth(memory_tracker, serve):
    url = serve(make_app(memory_tracker, auth=lambda environ: environ.get("HTTP_X_USER")))
    assert (
        requests.post(f"{url}/api/create/", json={"_id": "/a"}, headers={"X-User": "ula"}).json()[
            "author"
        ]
        == "ula"
    )
    assert requests.post(f"{url}/api/create/", json={"_id": "/b"}).status_code == 401
    assert (
        requests.post(
            f"{url}/api/create/", json={"_id": "/b"}, headers={"X-User": "nobody"}
        ).status_code
        == 401
    )
    assert (
        requests.delete(f"{url}/api/delete/", json="/a", headers={"X-User": "ula"}).status_code
        == 403
    )
    assert memory_tracker.read("/b") is None and memory_tracker.read("/a") is not None


# -- permissions: every class x every route --------------------------------------------------

REQUESTS = {
    "create": ("POST", "/api/create/", {"_id": "/new"}),
    "read": ("GET", "/api/read/%2Ft", None),
    "read_body": ("POST", "/api/read/", "/t"),
    "update": ("PUT", "/api/update/", {"_id": "/t", "k": 2}),
    "upsert": ("POST", "/api/upsert/", {"_id": "/t", "k": 3}),
    "delete": ("DELETE", "/api/delete/", "/t"),
    "graph": ("GET", "/api/graph/0/%2Ft", None),
    "graph_body": ("POST", "/api/graph/0/", ["/t"]),
    "search": ("GET", "/api/search/k:1", None),
    "search_elements": ("GET", "/api/search_elements/k:1", None),
    "search_one": ("GET", "/api/search_one/k:1", None),
    "search_mongo": ("POST", "/api/search_mongo/", {"query": {"k": 1}}),
    "publish": ("POST", "/api/publish/", {"_id": "/p", "comment": "c", "origin": "o"}),
    "lock": ("PUT", "/api/lock/", "/t"),
    "unlock": ("PUT", "/api/unlock/", "/mine"),
    "comment": ("POST", "/api/comment/", {"#parent": "/t", "comment": "hi"}),
    "version": ("POST", "/api/version/%2Ft", {"note": "v2"}),
    "verify": ("GET", "/api/verify/", None),
    "changes": ("GET", "/api/changes/", None),
}
#: Routes whose operation is not in REQUIRED: the operation whose right they need.
NEEDS = {"changes": "read"}
#: GET /api/events/ is an endless stream: tests/http/test_changes.py checks its 401 and
#: that a guest reads it.
STREAMS = {("GET", "/api/events")}


def required_class(case: str) -> str:
    op = case.removesuffix("_body")
    return REQUIRED[NEEDS.get(op, op)]


def test_the_table_covers_every_private_route():
    from damas_core.http.routes import ROUTES

    covered = {(m, p.rstrip("/")) for m, p, _ in REQUESTS.values()}
    for route in ROUTES:
        if route.public:
            continue
        path = route.path.format(ids="%2Ft", id="%2Ft", query="k:1", depth="0").rstrip("/")
        assert (route.method, path) in covered | STREAMS, route.path


@pytest.mark.parametrize("name", list(USERS))
@pytest.mark.parametrize("case", list(REQUESTS))
def test_permission_table(jwt_api, name, case):
    tracker, url, app = jwt_api
    tracker.create([{"_id": "/t", "k": 1}, {"_id": "/mine", "lock": name}])
    user_class = USERS[name]
    op = case.removesuffix("_body")
    allowed = RANK[user_class] >= RANK[required_class(case)]
    method, path, body = REQUESTS[case]
    token = app.tokens.issue(name)[0]  # signing in is tested above; argon2 is slow
    before = snapshot(tracker)
    r = requests.request(method, url + path, json=body, headers=bearer(token))
    if allowed:
        assert r.status_code in (200, 201), (case, name, r.text)
    else:
        assert r.status_code == 403, (case, name, r.text)
        assert r.json()["error"].startswith(f"{op} error")
        assert snapshot(tracker) == before


@pytest.mark.parametrize(
    "key,value", [("author", "someone"), ("time", 1), ("class", "admin"), ("lock", "eddie")]
)
@pytest.mark.parametrize("how", ["create", "update", "upsert", "upsert-new"])
def test_non_admins_cannot_set_restricted_keys(jwt_api, key, value, how):
    tracker, url, _ = jwt_api
    tracker.create({"_id": "/t", "k": 1})
    before = snapshot(tracker)
    h = bearer(token_for(url, "eddie"))
    requests_by_how = {
        "create": ("POST", "/api/create/", {"_id": "/n", key: value}),
        "update": ("PUT", "/api/update/", {"_id": "/t", key: value}),
        "upsert": ("POST", "/api/upsert/", {"_id": "/t", key: value}),
        "upsert-new": ("POST", "/api/upsert/", {"_id": "/n", key: value}),
    }
    method, path, body = requests_by_how[how]
    r = requests.request(method, url + path, json=body, headers=h)
    assert r.status_code == 403 and repr(key) in r.json()["error"]
    assert snapshot(tracker) == before


def test_guest_tries_every_write(jwt_api):
    tracker, url, _ = jwt_api
    tracker.create({"_id": "/t", "k": 1})
    before = snapshot(tracker)
    h = bearer(token_for(url, "gus"))
    for case, (method, path, body) in REQUESTS.items():
        if RANK["guest"] >= RANK[required_class(case)]:
            continue
        assert requests.request(method, url + path, json=body, headers=h).status_code == 403, case
    assert (
        requests.put(
            f"{url}/api/unlock/?force=1", json="/t", headers=bearer(token_for(url, "ula"))
        ).status_code
        == 403
    )
    assert snapshot(tracker) == before


def test_author_mode_over_http(shared_server):
    switch, url = shared_server
    tracker = damas_core.open("memory://", author_mode=True)
    add_users(tracker)
    switch.app = make_app(tracker, auth="jwt")
    tracker.create({"_id": "/theirs", "author": "someone"})
    h = bearer(token_for(url, "eddie"))
    assert (
        requests.put(f"{url}/api/update/", json={"_id": "/theirs", "k": 1}, headers=h).status_code
        == 403
    )
    assert requests.post(f"{url}/api/create/", json={"_id": "/own"}, headers=h).status_code == 201
    assert (
        requests.put(f"{url}/api/update/", json={"_id": "/own", "k": 1}, headers=h).status_code
        == 200
    )
    assert "k" not in tracker.read("/theirs")
    tracker.close()


def test_classes_list_is_what_the_table_uses():
    assert set(USERS.values()) == set(CLASSES)


def test_quote_helper_matches_server_decoding(jwt_api):
    tracker, url, _ = jwt_api
    tracker.create({"_id": "/a b"})
    h = bearer(token_for(url, "gus"))
    assert requests.get(f"{url}/api/read/{quote('/a b', safe='')}", headers=h).status_code == 200


# -- sign-in limits under parallel requests ---------------------------------------------


def parallel_sign_ins(url: str, forms: list[dict]) -> list[int]:
    """POST every form to signIn at once, from as many threads; the statuses."""
    from concurrent.futures import ThreadPoolExecutor

    start = threading.Barrier(len(forms))

    def one(form: dict) -> int:
        with requests.Session() as http:
            start.wait()
            return http.post(f"{url}/api/signIn/", data=form).status_code

    with ThreadPoolExecutor(len(forms)) as pool:
        return list(pool.map(one, forms))


def test_parallel_wrong_passwords_for_one_user_stop_at_the_limit(memory_tracker, serve):
    url = serve(make_app(memory_tracker, auth="jwt"), threads=16)
    statuses = parallel_sign_ins(url, [{"username": "ula", "password": "x"}] * 40)
    assert statuses.count(401) == 5 and statuses.count(429) == 35, statuses
    # The right password is refused too until the window has passed.
    r = requests.post(f"{url}/api/signIn/", data={"username": "ula", "password": "ula-pw"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert r.json() == {
        "error": "signIn error: too many failed attempts; try again later",
        "status": 429,
    }


def test_parallel_wrong_passwords_from_one_address_stop_at_its_limit(memory_tracker, serve):
    url = serve(make_app(memory_tracker, auth="jwt", sign_in_attempts=2), threads=16)
    forms = [{"username": f"user{i}", "password": "x"} for i in range(40)]
    statuses = parallel_sign_ins(url, forms)
    # Two per username, eight (four times as many) per address.
    assert statuses.count(401) == 8 and statuses.count(429) == 32, statuses


def test_successful_sign_ins_do_not_use_up_the_address_limit(jwt_server):
    _, url = jwt_server
    for _ in range(25):  # more than the address's 20 attempts per minute
        assert token_for(url, "ula")


class CountingHasher(PasswordHasher):
    """A real argon2 hasher that counts its verifications."""

    def __init__(self) -> None:
        super().__init__(time_cost=2, memory_cost=19456, parallelism=1)
        self.verified = 0

    def verify(self, hash, password):
        self.verified += 1
        return super().verify(hash, password)


def test_an_unknown_user_costs_the_same_argon2_work(jwt_server, monkeypatch):
    from damas_core import passwords

    tracker, url = jwt_server
    counting = CountingHasher()
    monkeypatch.setattr(passwords, "hasher", counting)
    tracker.create({"_id": "@old", "password": "5f4dcc3b5aa765d61d8327deb882cf99"})  # md5
    for name, password in [
        ("nobody", "x"),
        ("ula", "x"),
        ("ula", "ula-pw"),
        ("old", "x"),
        ("no@where.org", "x"),
    ]:
        before = counting.verified
        requests.post(f"{url}/api/signIn/", data={"username": name, "password": password})
        assert counting.verified - before == 1, name


def test_sign_out_by_cookie_needs_json(jwt_api):
    _, url, _ = jwt_api
    token = token_for(url, "ula")
    cookies = {"token": token}
    # What a cross-site form can send: the cookie, a text/plain body. Refused.
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        r = requests.post(
            f"{url}/api/signOut/",
            data="{}",
            cookies=cookies,
            headers={"Content-Type": content_type},
        )
        assert r.status_code == 403 and "Content-Type: application/json" in r.json()["error"]
        assert requests.get(f"{url}/api/verify/", headers=bearer(token)).status_code == 200
    r = requests.post(f"{url}/api/signOut/", json={}, cookies=cookies)
    assert r.status_code == 200 and "token=;" in r.headers["Set-Cookie"]
    assert requests.get(f"{url}/api/verify/", headers=bearer(token)).status_code == 401
    # With the token in the Authorization header the content type does not matter.
    other = token_for(url, "ula")
    r = requests.post(f"{url}/api/signOut/", data="", headers=bearer(other))
    assert r.status_code == 200
    assert requests.get(f"{url}/api/verify/", headers=bearer(other)).status_code == 401


# -- damas-core's accounts, legacy hashes, tokens that never expire ------------------------

OID = "64b7f0c2e4b0a1c2d3e4f5a6"


def test_damas_core_accounts_over_http(jwt_api):
    import hashlib

    tracker, url, _ = jwt_api
    admin = bearer(token_for(url, "ada"))
    legacy = hashlib.md5(b"bob-pw").hexdigest()
    account = {"_id": OID, "username": "bob", "email": "bob@x.org", "class": "user"}
    r = requests.post(f"{url}/api/create/", json={**account, "password": legacy}, headers=admin)
    assert r.status_code == 201 and "password" not in r.json()
    assert tracker.storage.get(OID)["password"] == legacy  # kept as the hash it is
    # A user cannot make an account.
    r = requests.post(
        f"{url}/api/create/",
        json={"_id": "/eve", "username": "eve", "password": "eve-pw"},
        headers=bearer(token_for(url, "ula")),
    )
    assert r.status_code == 403 and tracker.read("/eve") is None
    for login in ("bob", "bob@x.org"):
        r = requests.post(f"{url}/api/signIn/", data={"username": login, "password": "bob-pw"})
        assert r.status_code == 200 and r.json()["user"]["_id"] == OID
        h = bearer(r.json()["token"])
        assert requests.get(f"{url}/api/verify/", headers=h).json()["username"] == "bob"
        created = requests.post(f"{url}/api/create/", json={"_id": f"/{login}"}, headers=h)
        assert created.json()["author"] == "bob"
    assert tracker.storage.get(OID)["password"].startswith("$argon2id$")  # upgraded
    # An admin's sha1 hex through update, too.
    legacy = hashlib.sha1(b"second-pw").hexdigest()
    r = requests.put(f"{url}/api/update/", json={"_id": OID, "password": legacy}, headers=admin)
    assert r.status_code == 200 and tracker.storage.get(OID)["password"] == legacy
    r = requests.post(f"{url}/api/signIn/", json={"username": "bob", "password": "second-pw"})
    assert r.status_code == 200


def test_expires_in_zero_is_for_admins(jwt_api):
    _tracker, url, _ = jwt_api
    r = requests.post(
        f"{url}/api/signIn/", json={"username": "ada", "password": "ada-pw", "expiresIn": "0"}
    )
    assert r.status_code == 200 and r.json()["token_exp"] is None
    token = r.json()["token"]
    assert "exp" not in jwt.decode(token, options={"verify_signature": False})
    assert requests.get(f"{url}/api/verify/", headers=bearer(token)).json()["_id"] == "@ada"
    for name in ("ula", "eddie"):
        r = requests.post(
            f"{url}/api/signIn/",
            data={"username": name, "password": f"{name}-pw", "expiresIn": "0"},
        )
        assert r.status_code == 400 and "admins only" in r.json()["error"]
    # Signing out revokes it like any other.
    assert requests.post(f"{url}/api/signOut/", headers=bearer(token)).status_code == 200
    assert requests.get(f"{url}/api/verify/", headers=bearer(token)).status_code == 401


def test_elements_that_share_an_email_do_not_lock_its_account_out(jwt_api):
    # Anyone who may create may give elements any email: they are not accounts, so
    # they neither answer to that email nor hide the account that has it.
    tracker, url, _ = jwt_api
    tracker.update({"_id": "@ada", "email": "ada@example.com"})
    ula = bearer(token_for(url, "ula"))
    for _ in range(3):
        r = requests.post(f"{url}/api/create/", json={"email": "ada@example.com"}, headers=ula)
        assert r.status_code == 201  # ULIDs: ids that sort before '@ada'
    r = requests.post(
        f"{url}/api/signIn/", data={"username": "ada@example.com", "password": "ada-pw"}
    )
    assert r.status_code == 200 and r.json()["user"]["_id"] == "@ada"


def test_an_at_account_may_carry_its_own_username(jwt_api):
    # A damas-core user copied under an @ id keeps its username key: that is the same
    # account, not a second one answering to the name; another account with it is.
    _tracker, url, _ = jwt_api
    admin = bearer(token_for(url, "ada"))
    account = {"_id": "@erin", "username": "erin", "class": "user", "password": "erin-pw"}
    assert requests.post(f"{url}/api/create/", json=account, headers=admin).status_code == 201
    for login in ("erin", "@erin"):
        r = requests.post(f"{url}/api/signIn/", data={"username": login, "password": "erin-pw"})
        assert r.status_code == 200 and r.json()["user"]["_id"] == "@erin"
        assert requests.get(f"{url}/api/verify/", headers=bearer(r.json()["token"])).ok
    other = {"_id": OID, "username": "erin", "class": "user", "password": "other-pw"}
    assert requests.post(f"{url}/api/create/", json=other, headers=admin).status_code == 201
    for login, password in (("erin", "erin-pw"), ("@erin", "erin-pw"), ("erin", "other-pw")):
        r = requests.post(f"{url}/api/signIn/", data={"username": login, "password": password})
        assert r.status_code == 401
