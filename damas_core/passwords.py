"""Password hashing: argon2id for everything written, legacy damas-core hashes read.

damas-core stored unsalted md5 or sha1 hex digests; those are recognised by their
length (32 or 40 hex characters), verified, and replaced by an argon2id hash at the
next successful sign-in.

Every :func:`verify_password` call costs one argon2 verification, whether the stored
value is an argon2 hash, a legacy digest or nothing at all (an unknown user): the time
a sign-in takes does not tell whether the account exists or how its password is kept.

>>> h = hash_password("s3cret")
>>> h.startswith("$argon2id$"), verify_password(h, "s3cret"), verify_password(h, "nope")
(True, True, False)
>>> verify_password("5f4dcc3b5aa765d61d8327deb882cf99", "password")  # legacy md5
True
>>> verify_password(None, "password")  # no such user: the same work, then False
False
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_LEGACY = re.compile(r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{40})$")
# argon2's PHC string: $argon2id$v=19$m=…,t=…,p=…$salt$hash (salt and hash in base64)
_ARGON2 = re.compile(
    r"^\$argon2(?:id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$"
)
#: The hasher every hash is made and checked with. Moderate cost: ~20 ms per hash on a
#: server core, enough against offline guessing when combined with a per-hash salt.
hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_dummy: dict[PasswordHasher, str] = {}


def hash_password(password: str) -> str:
    """A salted argon2id hash of ``password``."""
    if not isinstance(password, str) or password == "":
        raise ValueError("a password must be a non-empty string")
    return hasher.hash(password)


def is_legacy(stored: str) -> bool:
    """True for a damas-core md5/sha1 hex digest.

    >>> is_legacy("5f4dcc3b5aa765d61d8327deb882cf99"), is_legacy("password")
    (True, False)
    """
    return bool(_LEGACY.match(stored or ""))


def is_argon2(stored: str) -> bool:
    """True for an argon2 hash in its PHC string form (what :func:`hash_password` makes).

    >>> is_argon2(hash_password("pw")), is_argon2("$argon2id$not a hash")
    (True, False)
    """
    return bool(_ARGON2.match(stored or ""))


def dummy_hash() -> str:
    """An argon2 hash of a random secret, made with :data:`hasher`'s parameters, that no
    password matches: what a sign-in for an unknown user is checked against."""
    current = hasher
    if current not in _dummy:
        _dummy[current] = current.hash(secrets.token_urlsafe(32))
    return _dummy[current]


def _argon2(stored: str, password: str) -> bool:
    try:
        return hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def verify_password(stored: str | None, password: str) -> bool:
    """True when ``password`` matches the ``stored`` hash (argon2id or legacy).

    Always one argon2 verification: against ``stored`` when it is an argon2 hash, else
    against :func:`dummy_hash` (no stored value, or a legacy digest checked besides).
    """
    if not isinstance(password, str):
        password = ""
    if isinstance(stored, str) and stored.startswith("$argon2"):
        return _argon2(stored, password)
    _argon2(dummy_hash(), password)
    if isinstance(stored, str) and is_legacy(stored):
        algo = hashlib.md5 if len(stored) == 32 else hashlib.sha1
        digest = algo(password.encode()).hexdigest()
        return hmac.compare_digest(digest, stored.lower())
    return False


def needs_upgrade(stored: str) -> bool:
    """True when the stored hash should be replaced after a successful check."""
    return is_legacy(stored) or hasher.check_needs_rehash(stored)


def stored_form(password: str, *, keep_hash: bool = False) -> str:
    """What is stored for a ``password`` being written: its argon2id hash, or, with
    ``keep_hash`` (an admin's write), a value that already is a hash kept as it is: a
    legacy md5/sha1 hex digest, so accounts copied from damas-core keep their password
    until the next sign-in upgrades it, or an argon2 hash, which is how tools that take
    a password in clear (``damas user add``, ``damas serve``'s first admin) write it
    without it ever being read as a digest.

    >>> stored_form("5f4dcc3b5aa765d61d8327deb882cf99", keep_hash=True)
    '5f4dcc3b5aa765d61d8327deb882cf99'
    >>> stored_form("5f4dcc3b5aa765d61d8327deb882cf99").startswith("$argon2id$")
    True
    >>> h = hash_password("pw"); stored_form(h, keep_hash=True) == h
    True
    """
    if keep_hash and isinstance(password, str):
        if is_legacy(password):
            return password.lower()
        if is_argon2(password):
            return password
    return hash_password(password)


def fingerprint(stored: str | None) -> str | None:
    """A short digest of the stored hash: changes whenever the password changes."""
    if not stored:
        return None
    return hashlib.sha256(stored.encode()).hexdigest()[:16]
