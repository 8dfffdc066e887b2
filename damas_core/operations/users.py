"""Accounts: password checks and the user elements read paths may show."""

from __future__ import annotations

from typing import TYPE_CHECKING

from damas_core.backends.base import Patch
from damas_core.elements import Element
from damas_core.operations.common import public
from damas_core.passwords import fingerprint, hash_password, needs_upgrade, verify_password

if TYPE_CHECKING:
    from damas_core.tracker import Session


def user_id(name: str) -> str:
    """``alice`` or ``@alice`` → ``@alice``."""
    return name if name.startswith("@") else f"@{name}"


def user(session: Session, name: str) -> Element | None:
    """The user element without its password, or ``None``."""
    return public(session.storage.get(user_id(name)))


def check_password(session: Session, name: str, password: str) -> bool:
    """True when ``password`` is the user's; unknown and disabled users give False.
    A legacy or outdated hash is replaced by a fresh argon2id hash on success."""
    if not isinstance(name, str) or not name or not isinstance(password, str):
        return False
    uid = user_id(name)
    stored_user = session.storage.get(uid)
    if stored_user is None or stored_user.get("disabled") is True:
        return False
    stored = stored_user.get("password")
    if not verify_password(stored, password):
        return False
    if needs_upgrade(stored):
        session.storage.patch_many(
            [Patch(uid, set={"password": hash_password(password)}, expect={"password": stored})]
        )
    return True


def password_fingerprint(session: Session, name: str) -> str | None:
    """A digest that changes whenever the user's password changes (for tokens)."""
    stored_user = session.storage.get(user_id(name))
    return None if stored_user is None else fingerprint(stored_user.get("password"))
