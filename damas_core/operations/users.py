"""Accounts: finding the account a login names, password checks, and the user elements
read paths may show.

Two forms of account sign in:

- ``@name`` elements, this project's own form (``_id`` is ``@`` + the username);
- damas-core's form: any ``_id`` (often a MongoDB ObjectId string) with a ``username``
  key, as damas-core's server stores its users.

A login names an account by its ``@name`` id first; otherwise, as damas-core's
``jwt.js`` does, a login that looks like a username (``^[a-z][-a-z0-9_]*$``) is looked
up by ``username``, and any other login by ``email``. A login or a username that more
than one account answers to signs nobody in.

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> _ = t.create([{"_id": "@alice", "class": "user", "password": "pw", "email": "a@x.org"},
...               {"_id": "64b7f0c2e4b0a1", "username": "bob", "password": "pw"}])
>>> [find_account(t, login)["_id"] for login in ("alice", "@alice", "a@x.org", "bob")]
['@alice', '@alice', '@alice', '64b7f0c2e4b0a1']
>>> find_account(t, "carol") is None
True
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from damas_core.backends.base import Patch
from damas_core.elements import Element
from damas_core.operations.common import public
from damas_core.passwords import fingerprint, hash_password, needs_upgrade, verify_password
from damas_core.query.ast import And, Eq, Exists, Or, Regex

if TYPE_CHECKING:
    from damas_core.tracker import Session

#: damas-core's jwt.js: a login matching this is a username, any other an email.
LOGIN_NAME = re.compile(r"^[a-z][-a-z0-9_]*$")


def user_id(name: str) -> str:
    """``alice`` or ``@alice`` → ``@alice``."""
    return name if name.startswith("@") else f"@{name}"


def name_of(account: Element) -> str:
    """The username of an account: ``@alice`` → ``alice``; a damas-core account's
    ``username``.

    >>> name_of({"_id": "@alice"}), name_of({"_id": "64b7f0c2e4b0a1", "username": "bob"})
    ('alice', 'bob')
    """
    element_id = account["_id"]
    if element_id.startswith("@"):
        return element_id[1:]
    return account["username"]


def is_account(element: Element | None) -> bool:
    """True for an element that is an account: an ``@name`` id, or a ``username`` string."""
    if element is None:
        return False
    return element["_id"].startswith("@") or isinstance(element.get("username"), str)


def is_disabled(account: Element) -> bool:
    """True for a disabled account (``disabled``, or damas-core's ``disable``)."""
    return account.get("disabled") is True or account.get("disable") is True


#: The elements :func:`is_account` may be true of, as a query.
_ACCOUNTS = Or((Regex(("_id",), "^@"), Exists(("username",))))


def _by_key(session: Session, key: str, value: str) -> list[Element]:
    """The accounts whose ``key`` is exactly ``value`` (two at most: enough to tell).

    Only accounts are looked for: other elements with that value (anyone who may
    create can give an element any ``email``) neither count nor hide an account."""
    ids = session.storage.find(And((Eq((key,), value), _ACCOUNTS)), limit=3)
    found = [e for e in session.storage.get_many(ids) if e is not None]
    return [e for e in found if e.get(key) == value and is_account(e)][:2]


def account(session: Session, name: str, *, unique: bool = False) -> Element | None:
    """The stored account (with its password hash) whose username is ``name`` (``alice``
    or ``@alice``): the ``@alice`` element, else the only element with ``username``
    ``alice``; ``None`` if there is none, or if ``alice`` is ambiguous. With ``unique``
    (for sign-in), ``@alice`` is ambiguous too when a damas-core account also has that
    username; without it, ``@alice`` is found by its id alone."""
    if not isinstance(name, str) or not name.strip("@"):
        return None
    by_id = session.storage.get(user_id(name))
    if by_id is not None and not unique:
        return by_id
    others = _by_key(session, "username", name.removeprefix("@"))
    if by_id is not None:
        # ``@alice`` may carry ``username: "alice"`` itself (a damas-core user copied
        # under an ``@`` id): only another account with that username makes it ambiguous.
        others = [e for e in others if e["_id"] != by_id["_id"]]
        return by_id if not others else None
    return others[0] if len(others) == 1 else None


def find_account(session: Session, login: str) -> Element | None:
    """The stored account a sign-in ``login`` names (see the module's rules), or ``None``."""
    if not isinstance(login, str) or not login.strip("@"):
        return None
    if login.startswith("@") or LOGIN_NAME.match(login) or session.storage.get(user_id(login)):
        return account(session, login, unique=True)
    found = _by_key(session, "email", login)
    if len(found) != 1:
        return None
    # The email's account must also be the only one with its username.
    match = account(session, name_of(found[0]), unique=True)
    return match if match is not None and match["_id"] == found[0]["_id"] else None


def user(session: Session, name: str) -> Element | None:
    """The user element without its password, or ``None``."""
    return public(account(session, name), session)


def authenticate(session: Session, login: str, password: str) -> Element | None:
    """The account (without its password) that ``login`` names when ``password`` is its
    password; ``None`` for an unknown login, a wrong password or a disabled account.

    Every call costs one argon2 verification, whether the account exists or not (see
    :func:`damas_core.passwords.verify_password`). A legacy or outdated hash is replaced
    by a fresh argon2id hash on success.
    """
    found = find_account(session, login) if isinstance(login, str) else None
    stored = found.get("password") if found is not None else None
    if not verify_password(stored, password) or found is None or is_disabled(found):
        return None
    if needs_upgrade(stored):
        session.storage.patch_many(
            [
                Patch(
                    found["_id"],
                    set={"password": hash_password(password)},
                    expect={"password": stored},
                )
            ]
        )
    return public(found, session)


def check_password(session: Session, name: str, password: str) -> bool:
    """True when ``password`` is the password of the account ``name`` names."""
    return authenticate(session, name, password) is not None


def password_fingerprint(session: Session, name: str) -> str | None:
    """A digest that changes whenever the user's password changes (for tokens)."""
    found = account(session, name)
    return None if found is None else fingerprint(found.get("password"))
