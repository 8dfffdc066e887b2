"""Cross-site request forgery protection for the dashboard's forms.

Every form carries a ``csrf`` field: an HMAC, with the tracker's secret, of what the
form is bound to, and a POST is accepted only when its field is the one for the
request's own binding:

- **signed in**: the ``jti`` (the random id) of the request's sign-in token, so a field
  works only with the session it was made for, and a new one comes with each sign-in;
- **not signed in yet** (the sign-in form): a random ``csrf`` cookie (HttpOnly,
  SameSite=Strict), a nonce replaced at each sign-in and sign-out.

Another site can make a browser post a form, but it can neither read the cookies nor
compute a field without the tracker's secret. A field copied from another session
(an anonymous visit's, another user's) does not match. A request carrying two cookies
of one name (one of them planted by a sibling domain) is refused outright
(:func:`single_cookies`), and so is a form a browser says it posted from a page of
another host (:func:`from_here`): a sibling host that planted its own nonce pair in
a browser holding none cannot then post the sign-in form, signing the victim in to
the attacker's account.

>>> field = expected("s3cret", session_binding("jti-1"))
>>> valid("s3cret", session_binding("jti-1"), field)
True
>>> valid("s3cret", session_binding("jti-2"), field), valid("s3cret", nonce_binding("jti-1"), field)
(False, False)
>>> valid("s3cret", None, field)
False
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any
from urllib.parse import urlsplit

COOKIE = "csrf"
#: The cookies of which a request may carry at most one each.
SINGLE = ("csrf", "token")


def from_here(environ: dict[str, Any]) -> bool:
    """False when the browser says the request comes from a page of another host: its
    ``Origin`` names another host than the request's (``Host``, or a proxy's
    ``X-Forwarded-Host``, which a page cannot set), or is ``null``. Ports are not
    compared: cookies are not either, and a proxy may leave the port out of ``Host``.
    A request without ``Origin`` (a client that is not a browser, an older browser)
    is left to its field.

    >>> from_here({"HTTP_HOST": "tracker:8090", "HTTP_ORIGIN": "https://tracker"})
    True
    >>> from_here({"HTTP_HOST": "tracker", "HTTP_ORIGIN": "https://evil.tracker"})
    False
    >>> from_here({"HTTP_HOST": "tracker", "HTTP_ORIGIN": "null"}), from_here({})
    (False, True)
    """
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        return True
    try:
        host = urlsplit(origin.strip()).hostname
    except ValueError:
        return False
    if not host:
        return False
    ours = [environ.get("HTTP_HOST", "")]
    ours += environ.get("HTTP_X_FORWARDED_HOST", "").split(",")
    for name in ours:
        try:
            mine = urlsplit("//" + name.strip()).hostname
        except ValueError:
            continue
        if mine and mine == host:
            return True
    return False


def new_cookie() -> str:
    """A fresh random nonce for the ``csrf`` cookie."""
    return secrets.token_urlsafe(24)


def session_binding(jti: str) -> str:
    """What the forms of a signed-in session are bound to: its token's ``jti``."""
    return f"session|{jti}"


def nonce_binding(nonce: str) -> str:
    """What the forms shown before sign-in are bound to: the ``csrf`` cookie's nonce."""
    return f"nonce|{nonce}"


def expected(secret: str, binding: str) -> str:
    """The form field that goes with ``binding``."""
    mac = hmac.new(secret.encode(), b"dashboard-csrf|" + binding.encode(), hashlib.sha256)
    return mac.hexdigest()


def valid(secret: str, binding: str | None, field: str | None) -> bool:
    """True when ``field`` is the one :func:`expected` gives for ``binding``."""
    if not binding or not field:
        return False
    return hmac.compare_digest(expected(secret, binding), field)


def single_cookies(environ: dict[str, Any]) -> bool:
    """False when the request carries one of :data:`SINGLE` more than once.

    >>> single_cookies({"HTTP_COOKIE": "csrf=a; token=t"}), single_cookies({"HTTP_COOKIE": "csrf=a; csrf=b"})
    (True, False)
    """
    # by hand: the usual parsers keep one value per name, which hides the duplicate
    header = environ.get("HTTP_COOKIE", "")
    if not header:
        return True
    names = [part.split("=", 1)[0].strip() for part in header.split(";")]
    return all(names.count(name) <= 1 for name in SINGLE)


__all__ = [
    "COOKIE",
    "expected",
    "new_cookie",
    "nonce_binding",
    "session_binding",
    "single_cookies",
    "valid",
]
