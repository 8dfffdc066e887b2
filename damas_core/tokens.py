"""Sign-in tokens: signed JWTs that expire, can be revoked, and die with a password change.

A token is an HS256 JWT (PyJWT) with the claims ``sub`` (the username, without ``@``),
``uid`` (the account's ``_id``: ``@alice``, or a damas-core account's ObjectId),
``iat``, ``exp`` (absent from a token that never expires, which only admins get: see
:mod:`damas_core.signin`), ``jti`` (a random id, the handle for revocation) and ``pwd``
(the user's password fingerprint when the token was issued). :meth:`Tokens.verify`
accepts a token only if all of these hold:

- it is signed with this store's secret, with HS256 (``alg: none`` and every other
  algorithm are refused), and has not expired;
- its ``jti`` was not revoked (see :meth:`Tokens.revoke`);
- its account still exists under the same username, is not disabled, and has the same
  password fingerprint (so changing a password signs out every session of that user).

The secret lives in the store's internal settings (``tracker.get_setting``): it is
generated at first use, shared by every process serving the same store, and never
returned by the API. Revocations and accounts are looked up in an
:class:`~damas_core.authcache.AuthCache`, kept current through the change feed, so a
sign-out or an account change made by any process serving the store holds at once.

>>> import damas_core
>>> tracker = damas_core.open("memory://")
>>> tracker.create({"_id": "@alice", "class": "user", "password": "s3cret"})["_id"]
'@alice'
>>> tokens = Tokens(tracker)
>>> token, claims = tokens.issue("alice")
>>> tokens.verify(token)
'alice'
>>> tokens.revoke(token)
>>> tokens.verify(token)
Traceback (most recent call last):
  ...
damas_core.errors.Unauthorized: token error: this token was revoked (sign in again)
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jwt

from damas_core.authcache import AuthCache
from damas_core.errors import BadRequest, Unauthorized
from damas_core.operations.users import account, is_account, is_disabled, name_of
from damas_core.passwords import fingerprint
from damas_core.tracker import Session

SECRET_SETTING = "jwt_secret"
ALGORITHM = "HS256"
DEFAULT_LIFESPAN = 24 * 3600
MAX_LIFESPAN = 366 * 24 * 3600

# jsonwebtoken (the NodeJS library damas-core used) accepts "expiresIn" as seconds or a
# "vercel/ms" string such as "2h", "7d" or "10 minutes": accept the same forms.
_UNITS = {
    "ms": 0.001, "msec": 0.001, "msecs": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
    "y": 31557600, "yr": 31557600, "yrs": 31557600, "year": 31557600, "years": 31557600,
}  # fmt: skip
_LIFESPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


#: The lifespan of a token that never expires (``expiresIn: "0"``, as in damas-core).
NEVER = 0


def parse_lifespan(value: Any) -> int:
    """Seconds from an ``expiresIn`` value: a number of seconds or a string like ``"2h"``;
    ``0`` or ``"0"`` is :data:`NEVER` (a token that does not expire).

    Raises :class:`BadRequest` for anything else and for more than a year.

    >>> parse_lifespan("7d"), parse_lifespan(3600), parse_lifespan("90 minutes"), parse_lifespan("0")
    (604800, 3600, 5400, 0)
    """
    if isinstance(value, bool):
        raise BadRequest(
            f"signIn error: expiresIn must be seconds or a duration like '2h', not {value!r}"
        )
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _LIFESPAN.match(value)):
        number, unit = match.groups()
        factor = _UNITS.get(unit.lower() or "s")
        if factor is None:
            raise BadRequest(f"signIn error: unknown time unit {unit!r} in expiresIn")
        seconds = float(number) * factor
    else:
        raise BadRequest(
            f"signIn error: expiresIn must be seconds or a duration like '2h', not {value!r}"
        )
    if seconds == 0:
        return NEVER
    if not 1 <= seconds <= MAX_LIFESPAN:
        raise BadRequest(
            "signIn error: expiresIn must be between 1 second and 366 days (or 0: never)"
        )
    return int(seconds)


class Tokens:
    """Issues, verifies and revokes the sign-in tokens of one tracker.

    ``lifespan`` is the default validity in seconds (one day); ``cache`` holds the
    revocations and accounts (a fresh :class:`~damas_core.authcache.AuthCache` when
    ``None``); ``clock`` returns the current time in seconds and exists for tests.
    """

    def __init__(
        self,
        tracker: Any,
        *,
        lifespan: int = DEFAULT_LIFESPAN,
        cache: AuthCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tracker = tracker
        self.lifespan = lifespan
        self.cache = cache if cache is not None else AuthCache(tracker.storage)
        self.clock = clock
        self._secret: str | None = None
        self._lock = threading.Lock()
        # Checking a signature costs more than the rest of a read: remember the claims
        # of tokens whose signature was checked. Expiry, revocation and the user are
        # still checked on every call.
        self._signed: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._signed_max = 4096

    # -- the secret -------------------------------------------------------------------

    @property
    def secret(self) -> str:
        """The signing secret, generated and stored atomically on first use."""
        if self._secret is None:
            with self._lock:
                if self._secret is None:
                    fresh = secrets.token_urlsafe(48)
                    # update_setting is atomic: two processes starting together agree
                    # on whichever secret was stored first.
                    self.tracker.update_setting(SECRET_SETTING, lambda old: old or fresh)
                    self._secret = self.tracker.get_setting(SECRET_SETTING)
        return self._secret

    # -- issue / verify / revoke ------------------------------------------------------

    def issue(
        self, username: str | dict[str, Any], lifespan: int | None = None
    ) -> tuple[str, dict[str, Any]]:
        """A new token and its claims for an account: a username (with or without ``@``)
        or the stored account element. ``lifespan`` in seconds (``None``: the default;
        :data:`NEVER`: no ``exp``, a token that does not expire).

        The caller has checked the password and who may have which lifespan; this only
        signs. Raises :class:`Unauthorized` for an unknown account.
        """
        if isinstance(username, str):
            found = account(self.tracker, username)
        else:  # read again: the element given may be the public one, without its hash
            found = self.tracker.storage.get(username["_id"])
        if not is_account(found):
            raise Unauthorized(f"token error: no account {username!r}")
        now = int(self.clock())
        claims: dict[str, Any] = {"sub": name_of(found), "uid": found["_id"], "iat": now}
        if lifespan != NEVER:
            claims["exp"] = now + (lifespan or self.lifespan)
        claims["jti"] = secrets.token_urlsafe(16)
        claims["pwd"] = fingerprint(found.get("password"))
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM), claims

    def decode(self, token: str) -> dict[str, Any]:
        """The claims of a well-signed, unexpired, unrevoked token, else :class:`Unauthorized`.

        This does not look at the user: :meth:`verify` does.
        """
        cached = self._signed.get(token)
        claims = dict(cached) if cached is not None else self._check_signature(token)
        if "exp" in claims and claims["exp"] <= self.clock():
            raise Unauthorized("token error: this token has expired (sign in again)")
        if self.cache.is_revoked(claims["jti"]):
            raise Unauthorized("token error: this token was revoked (sign in again)")
        return claims

    def _check_signature(self, token: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                # Times are checked below against self.clock, not PyJWT's own clock.
                options={
                    "require": ["sub", "iat", "jti"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as e:
            raise Unauthorized(f"token error: invalid token ({e})") from None
        if (
            not isinstance(claims.get("sub"), str)
            or not isinstance(claims.get("jti"), str)
            or not isinstance(claims.get("exp", 0), int | float)
            or isinstance(claims.get("exp"), bool)
            or not isinstance(claims.get("uid", ""), str)
        ):
            raise Unauthorized("token error: invalid token (bad claims)")
        with self._lock:
            self._signed[token] = dict(claims)
            while len(self._signed) > self._signed_max:
                self._signed.popitem(last=False)
        return claims

    def session(self, token: str) -> Any:
        """The session of the user a valid token was issued to; :class:`Unauthorized` if
        the token is invalid, or its user was deleted, disabled or changed password.

        The session's :meth:`~damas_core.tracker.Session.renewed` checks the token
        again and follows the account's class (what a stream does at each step)."""
        claims = self.decode(token)
        name = claims["sub"]
        # One look-up of the account answers existence, "disabled" and the password
        # fingerprint; decode has just brought the cache up to date.
        user = self.cache.account(claims.get("uid") or f"@{name}", refresh=False)
        if not is_account(user) or name_of(user) != name:
            raise Unauthorized("token error: the user of this token no longer exists")
        if is_disabled(user):
            raise Unauthorized("token error: the user of this token is disabled")
        if claims.get("pwd") != fingerprint(user.get("password")):
            raise Unauthorized("token error: the password changed since this token was issued")
        return Session(self.tracker, user, renew=lambda: self._renewed(token))

    def _renewed(self, token: str) -> Any:
        # A stream asks at its own pace: read the store's position whatever max_age says.
        self.cache.refresh(force=True)
        return self.session(token)

    def verify(self, token: str) -> str:
        """The username a valid token was issued to; :class:`Unauthorized` otherwise."""
        return self.session(token).username

    def revoke(self, token: str) -> None:
        """Refuse ``token`` from now on, in every process serving this store.

        Raises :class:`Unauthorized` if the token is not valid to begin with. Entries
        are kept until the token would have expired anyway, then dropped.
        """
        claims = self.decode(token)
        # A token that never expires stays revoked (None) for good.
        self.cache.revoke(claims["jti"], int(claims["exp"]) if "exp" in claims else None)


__all__ = ["DEFAULT_LIFESPAN", "NEVER", "Tokens", "parse_lifespan"]
