"""Cross-site request forgery protection for the dashboard's forms.

A browser gets a random ``csrf`` cookie (HttpOnly, SameSite=Strict) on its first page;
every form carries ``HMAC(secret, cookie)`` in a hidden ``csrf`` field, and a POST is
accepted only when the field matches the cookie it came with. Another site can make a
browser post a form, but it can neither read the cookie nor compute the field without
the tracker's secret, and a cookie planted by a sibling domain is useless without it.

>>> field = expected("s3cret", "abc")
>>> valid("s3cret", "abc", field), valid("s3cret", "abc", "forged"), valid("s3cret", "", "")
(True, False, False)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

COOKIE = "csrf"


def new_cookie() -> str:
    """A fresh random cookie value."""
    return secrets.token_urlsafe(24)


def expected(secret: str, cookie: str) -> str:
    """The form field that goes with ``cookie``."""
    mac = hmac.new(secret.encode(), b"dashboard-csrf|" + cookie.encode(), hashlib.sha256)
    return mac.hexdigest()


def valid(secret: str, cookie: str | None, field: str | None) -> bool:
    """True when ``field`` is the one :func:`expected` gives for ``cookie``."""
    if not cookie or not field:
        return False
    return hmac.compare_digest(expected(secret, cookie), field)


__all__ = ["COOKIE", "expected", "new_cookie", "valid"]
