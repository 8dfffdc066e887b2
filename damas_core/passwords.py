"""Password hashing: argon2id for everything written, legacy damas-core hashes read.

damas-core stored unsalted md5 or sha1 hex digests; those are recognised by their
length (32 or 40 hex characters), verified, and replaced by an argon2id hash at the
next successful sign-in.

>>> h = hash_password("s3cret")
>>> h.startswith("$argon2id$"), verify_password(h, "s3cret"), verify_password(h, "nope")
(True, True, False)
>>> verify_password("5f4dcc3b5aa765d61d8327deb882cf99", "password")  # legacy md5
True
"""

from __future__ import annotations

import hashlib
import hmac
import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_LEGACY = re.compile(r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{40})$")
# Moderate cost: ~20 ms per hash on a server core, enough against offline guessing
# when combined with a per-hash salt.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


def hash_password(password: str) -> str:
    """A salted argon2id hash of ``password``."""
    if not isinstance(password, str) or password == "":
        raise ValueError("a password must be a non-empty string")
    return _hasher.hash(password)


def is_legacy(stored: str) -> bool:
    """True for a damas-core md5/sha1 hex digest."""
    return bool(_LEGACY.match(stored or ""))


def verify_password(stored: str | None, password: str) -> bool:
    """True when ``password`` matches the ``stored`` hash (argon2id or legacy)."""
    if not isinstance(stored, str) or not isinstance(password, str):
        return False
    if is_legacy(stored):
        algo = hashlib.md5 if len(stored) == 32 else hashlib.sha1
        digest = algo(password.encode()).hexdigest()
        return hmac.compare_digest(digest, stored.lower())
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_upgrade(stored: str) -> bool:
    """True when the stored hash should be replaced after a successful check."""
    return is_legacy(stored) or _hasher.check_needs_rehash(stored)


def fingerprint(stored: str | None) -> str | None:
    """A short digest of the stored hash: changes whenever the password changes."""
    if not stored:
        return None
    return hashlib.sha256(stored.encode()).hexdigest()[:16]
