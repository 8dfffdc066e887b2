"""Sign-in and sign-out: the rules the HTTP API and the dashboard share.

:class:`SignIn` holds them, so no web layer decides any of them:

- **Limits.** Each ``(username, address)`` may make ``attempts`` sign-in attempts per
  ``window`` seconds, and each address four times as many whatever the username. The
  counts live in the store (:mod:`damas_core.ratelimit`), so every process serving it
  enforces one budget. An attempt counts from the moment it starts (the check and the
  count are one compare-and-set step), so parallel requests cannot pass the limit; a
  successful sign-in forgets its attempt and resets its username's count. ``address``
  is the client's, as the web layer tells it (behind a trusted proxy, from
  ``X-Forwarded-For``: see :func:`damas_core.http.clients.client_address`). Beyond the limit: :class:`TooManyRequests`
  with ``retry_after`` seconds, and no password is checked.
- **Passwords.** Every attempt costs one argon2 verification, whether the account
  exists or not, so the time of an answer does not tell. Unknown login, wrong password
  and disabled account give the same :class:`Unauthorized`. A legacy md5/sha1 hash is
  upgraded to argon2id on success. Which account a login names is
  :func:`damas_core.operations.users.find_account`'s rule (``@name``, damas-core's
  ``username``, or ``email``).
- **Tokens.** A success gives a signed token (:mod:`damas_core.tokens`) valid for
  ``expires_in`` (seconds or ``"2h"``-like; the default lifespan when ``None``).
  ``0``/``"0"`` asks for a token that never expires: admins only (for agents); anyone
  else gets :class:`BadRequest`.
- **Sign-out** revokes the token in every process serving the store.

>>> import damas_core
>>> tracker = damas_core.open("memory://")
>>> _ = tracker.create({"_id": "@alice", "class": "user", "password": "s3cret"})
>>> signin = SignIn(tracker)
>>> answer = signin.sign_in("alice", "s3cret", address="127.0.0.1", expires_in="1h")
>>> answer["user"]["_id"], answer["token_exp"] - answer["token_iat"]
('@alice', 3600)
>>> signin.session(answer["token"]).username
'alice'
>>> signin.sign_out(answer["token"])
>>> signin.sign_in("alice", "wrong", address="127.0.0.1")
Traceback (most recent call last):
  ...
damas_core.errors.Unauthorized: signIn error: invalid username or password
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from damas_core.errors import BadRequest, TooManyRequests, Unauthorized
from damas_core.operations.users import authenticate
from damas_core.permissions import class_of
from damas_core.ratelimit import RateLimiter
from damas_core.tokens import NEVER, Tokens, parse_lifespan

#: How many more attempts an address may make than one username from it.
ADDRESS_FACTOR = 4


class SignIn:
    """Signs users in and out of one tracker (see the module's rules).

    ``tokens`` issues and checks the tokens (a fresh :class:`~damas_core.tokens.Tokens`
    with the default lifespan when ``None``); ``attempts`` per ``window`` seconds per
    username and address; ``clock`` (wall-clock seconds, shared by every process)
    exists for tests.
    """

    def __init__(
        self,
        tracker: Any,
        tokens: Tokens | None = None,
        *,
        attempts: int = 5,
        window: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tracker = tracker
        self.tokens = tokens if tokens is not None else Tokens(tracker)
        if self.tokens.lifespan == NEVER:
            raise ValueError("the default token lifespan cannot be 0 (never)")
        storage = tracker.storage
        self.per_user = RateLimiter(storage, "signin-user", attempts, window, clock=clock)
        self.per_address = RateLimiter(
            storage, "signin-address", attempts * ADDRESS_FACTOR, window, clock=clock
        )
        # Logins are looked up by username and email (damas-core's accounts): indexed,
        # so a sign-in costs the same on a store of a million files as on an empty one.
        for key in ("username", "email"):
            tracker.storage.ensure_index(key)

    def sign_in(
        self,
        username: str,
        password: str,
        address: str = "",
        expires_in: int | str | None = None,
    ) -> dict[str, Any]:
        """``{"token", "token_exp", "token_iat", "user"}`` for a right password.

        ``token_exp`` is ``None`` for a token that never expires; ``user`` is the
        account without its password. Raises :class:`BadRequest` for a missing
        username or password or a bad ``expires_in``, :class:`TooManyRequests` beyond
        the limits, :class:`Unauthorized` otherwise.
        """
        if not isinstance(username, str) or not isinstance(password, str):
            raise BadRequest("signIn error: username and password are required", op="signIn")
        if not username or not password:
            raise BadRequest("signIn error: username and password are required", op="signIn")
        lifespan = None if expires_in in (None, "") else parse_lifespan(expires_in)
        key = (username.removeprefix("@").lower(), address)
        self._acquire(key, address)
        user = authenticate(self.tracker, username, password)
        if user is None:
            # The attempt stays counted.
            raise Unauthorized("signIn error: invalid username or password", op="signIn")
        self.per_user.reset(key)
        self.per_address.release(address)
        if lifespan == NEVER and class_of(user) != "admin":
            raise BadRequest(
                "signIn error: expiresIn 0 (a token that never expires) is for admins only; "
                "ask for a duration such as '7d'",
                op="signIn",
            )
        token, claims = self.tokens.issue(user, lifespan)
        return {
            "token": token,
            "token_exp": claims.get("exp"),
            "token_iat": claims["iat"],
            "user": user,
        }

    def _acquire(self, key: tuple[str, str], address: str) -> None:
        """Count one attempt for the username and the address, or raise
        :class:`TooManyRequests` (counting nothing) when either is at its limit."""
        wait = self.per_user.acquire(key)
        if not wait:
            wait = self.per_address.acquire(address)
            if wait:
                self.per_user.release(key)
        if wait:
            raise TooManyRequests(
                "signIn error: too many failed attempts; try again later",
                op="signIn",
                retry_after=float(math.ceil(wait)),
            )

    def sign_out(self, token: str) -> None:
        """Revoke ``token`` everywhere; :class:`Unauthorized` if it is not valid."""
        self.tokens.revoke(token)

    def session(self, token: str) -> Any:
        """The session of the account a valid ``token`` was issued to;
        :class:`Unauthorized` otherwise (see :meth:`damas_core.tokens.Tokens.session`)."""
        return self.tokens.session(token)


__all__ = ["ADDRESS_FACTOR", "SignIn"]
