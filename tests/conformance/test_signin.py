"""Sign-in on every backend (:class:`damas_core.signin.SignIn`): damas-core's accounts,
legacy hashes written by an admin, tokens that never expire, and the limits."""

from __future__ import annotations

import hashlib
import threading

import pytest

from damas_core.cli.serve import ensure_admin
from damas_core.errors import BadRequest, Forbidden, TooManyRequests, Unauthorized
from damas_core.passwords import hash_password
from damas_core.signin import SignIn
from damas_core.tokens import Tokens

OID = "64b7f0c2e4b0a1c2d3e4f5a6"  # a MongoDB ObjectId, as damas-core's users have


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


@pytest.fixture
def accounts(system):
    """Accounts of both forms, written by an admin as damas-core stored them."""
    system.create(
        [
            {"_id": "@ada", "class": "admin", "password": "ada-pw"},
            {"_id": "@ula", "class": "user", "password": "ula-pw", "email": "ula@x.org"},
            {
                "_id": OID,
                "username": "bob",
                "email": "bob@x.org",
                "class": "user",
                "password": md5("bob-pw"),
            },
        ]
    )
    return system


def test_an_admin_legacy_hash_is_kept_then_upgraded(accounts):
    system = accounts
    assert system.storage.get(OID)["password"] == md5("bob-pw")
    system.update({"_id": "@ula", "password": sha1("new-pw").upper()})
    assert system.storage.get("@ula")["password"] == sha1("new-pw")
    signin = SignIn(system)
    # The hex string is the hash, not the password.
    with pytest.raises(Unauthorized):
        signin.sign_in("bob", md5("bob-pw"))
    for login, password, uid in [("bob", "bob-pw", OID), ("ula", "new-pw", "@ula")]:
        assert signin.sign_in(login, password)["user"]["_id"] == uid
        assert system.storage.get(uid)["password"].startswith("$argon2id$")
        assert signin.sign_in(login, password)["user"]["_id"] == uid


def test_a_non_admin_hex_password_is_a_password(accounts):
    ula = accounts.as_user("ula")
    hex_password = md5("whatever")
    ula.update({"_id": "@ula", "password": hex_password})
    assert accounts.storage.get("@ula")["password"].startswith("$argon2id$")
    assert SignIn(accounts).sign_in("ula", hex_password)["user"]["_id"] == "@ula"


def test_an_admin_argon2_hash_is_kept_and_a_users_is_a_password(accounts):
    hashed = hash_password("kept-pw")
    accounts.update({"_id": "@ula", "password": hashed})  # what damas user add sends
    assert accounts.storage.get("@ula")["password"] == hashed
    assert SignIn(accounts).sign_in("ula", "kept-pw")["user"]["_id"] == "@ula"
    accounts.as_user("ula").update({"_id": "@ula", "password": hashed})
    assert accounts.storage.get("@ula")["password"] != hashed  # hashed again: a password
    assert SignIn(accounts).sign_in("ula", hashed)["user"]["_id"] == "@ula"


def test_the_first_admin_of_damas_serve_signs_in_with_a_hex_looking_password(system):
    hexlike = md5("anything")
    assert ensure_admin(system, hexlike) == hexlike
    assert SignIn(system).sign_in("admin", hexlike)["user"]["_id"] == "@admin"


def test_damas_core_accounts_sign_in_by_username_or_email(accounts):
    signin = SignIn(accounts)
    for login in ("bob", "bob@x.org"):
        answer = signin.sign_in(login, "bob-pw")
        assert answer["user"]["_id"] == OID and answer["user"]["username"] == "bob"
        assert "password" not in answer["user"]
        session = signin.session(answer["token"])
        assert session.username == "bob" and session.user_class == "user"
    # @name accounts answer to their email too; a login that is not a username is one.
    assert signin.sign_in("ula@x.org", "ula-pw")["user"]["_id"] == "@ula"
    with pytest.raises(Unauthorized):
        signin.sign_in("Bob", "bob-pw")  # not a username (jwt.js): an email, unknown
    bob = accounts.as_user("bob")
    assert bob.create({"_id": "/by-bob"})["author"] == "bob"
    assert bob.lock("/by-bob") and accounts.read("/by-bob")["lock"] == "bob"


def test_a_damas_core_account_changes_its_own_password(accounts):
    bob = accounts.as_user("bob")
    bob.update({"_id": OID, "password": "fresh-pw"})
    assert SignIn(accounts).sign_in("bob", "fresh-pw")["user"]["_id"] == OID
    with pytest.raises(Forbidden):
        bob.update({"_id": OID, "class": "admin"})


@pytest.mark.parametrize("who", ["user", "editor"])
def test_non_admins_cannot_make_or_change_damas_core_accounts(accounts, who):
    accounts.create({"_id": "@someone", "class": who})
    session = accounts.as_user("someone")
    for write in (
        lambda: session.create({"_id": "/x", "username": "eve", "password": "eve-pw"}),
        lambda: session.create({"_id": "/y", "username": "bob"}),
    ):
        with pytest.raises(Forbidden):
            write()
    assert accounts.read(["/x", "/y"]) == [None, None]
    if who == "editor":
        accounts.create({"_id": "/z", "k": 1})
        for write in (
            lambda: session.update({"_id": OID, "email": "mine@x.org"}),
            lambda: session.update({"_id": "/z", "username": "eve"}),
            lambda: session.upsert({"_id": "/z", "username": "eve", "password": "p"}),
        ):
            with pytest.raises(Forbidden):
                write()
        assert accounts.read(OID)["email"] == "bob@x.org"
        assert "username" not in accounts.read("/z")


def test_ambiguous_logins_sign_nobody_in(accounts):
    accounts.create(
        [
            {"_id": "dup1", "username": "carl", "password": "carl-pw"},
            {"_id": "dup2", "username": "carl", "password": "carl-pw"},
            {"_id": "dup3", "username": "ula", "email": "other@x.org", "password": "p"},
            {"_id": "dup4", "username": "dora", "email": "bob@x.org", "password": "p"},
        ]
    )
    signin = SignIn(accounts)
    for login, password in [
        ("carl", "carl-pw"),  # two accounts named carl
        ("ula", "ula-pw"),  # @ula and a damas-core ula
        ("other@x.org", "p"),  # its account's name is ula's too
        ("bob@x.org", "bob-pw"),  # two accounts with that email
    ]:
        with pytest.raises(Unauthorized):
            signin.sign_in(login, password)


def test_disabled_accounts_of_both_forms(accounts):
    accounts.update([{"_id": OID, "disable": True}, {"_id": "@ula", "disabled": True}])
    signin = SignIn(accounts)
    for login, password in [("bob", "bob-pw"), ("ula", "ula-pw")]:
        with pytest.raises(Unauthorized):
            signin.sign_in(login, password)


def test_tokens_that_never_expire_are_for_admins(accounts):
    far = [0.0]
    tokens = Tokens(accounts, clock=lambda: 1_700_000_000 + far[0])
    signin = SignIn(accounts, tokens)
    for zero in ("0", 0):
        answer = signin.sign_in("ada", "ada-pw", expires_in=zero)
        assert answer["token_exp"] is None
        far[0] = 20 * 366 * 86400  # twenty years on
        assert signin.session(answer["token"]).username == "ada"
        far[0] = 0.0
    signin.sign_out(answer["token"])
    with pytest.raises(Unauthorized, match="revoked"):
        signin.session(answer["token"])
    for login, password in [("ula", "ula-pw"), ("bob", "bob-pw")]:
        with pytest.raises(BadRequest, match="admins only"):
            signin.sign_in(login, password, expires_in="0")
    # Other lifespans are for everyone; a bad one is a bad request.
    assert signin.sign_in("ula", "ula-pw", expires_in="2h")["token_exp"] == 1_700_000_000 + 7200
    with pytest.raises(BadRequest):
        signin.sign_in("ula", "ula-pw", expires_in="-1")


def test_the_limits_hold_under_threads(accounts):
    signin = SignIn(accounts, attempts=3)
    outcomes: list[str] = []
    start = threading.Barrier(12)

    def attempt() -> None:
        start.wait()
        try:
            signin.sign_in("ula", "wrong", address="10.0.0.1")
        except Unauthorized:
            outcomes.append("401")
        except TooManyRequests as e:
            assert e.retry_after and e.retry_after >= 1
            outcomes.append("429")

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["401"] * 3 + ["429"] * 9
    # Another address is not locked out; the same one is, even with the right password.
    assert signin.sign_in("ula", "ula-pw", address="10.0.0.2")["user"]["_id"] == "@ula"
    with pytest.raises(TooManyRequests):
        signin.sign_in("ula", "ula-pw", address="10.0.0.1")
