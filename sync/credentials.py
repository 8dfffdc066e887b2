"""What an agent signs in with, and the connection that signs in again when its token
is refused.

>>> Credentials.parse('{"token": "t"}', "f").token
't'
"""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass

from damas_core.errors import BadRequest, Unauthorized

from .exits import EXIT_CREDENTIALS, ServiceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Credentials:
    """What an agent signs in with: a ``token``, a ``username`` and ``password``, or
    both (the token is used first, the password when it is refused). ``expires_in``
    (the file's ``expiresIn``) is the lifespan asked for at each sign-in; ``"0"`` (a
    token that never expires) is for admins.

    >>> Credentials.parse('{"username": "agent", "password": "pw"}', "f").username
    'agent'
    >>> Credentials.parse('{"user": "agent"}', "f")
    Traceback (most recent call last):
    ...
    damas_core.sync.exits.ServiceError: credentials f: unknown key 'user' (use token, username, password, expiresIn)
    """

    username: str | None = None
    password: str | None = None
    token: str | None = None
    expires_in: str | int | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Credentials:
        """Read a credentials file, refusing one that others may read or that is not
        its reader's (:class:`ServiceError`, :data:`EXIT_CREDENTIALS`, saying why)."""
        try:
            # a symlinked secret is fine: its target is checked; O_NONBLOCK: a FIFO
            # opens at once (and is refused below) instead of waiting for a writer
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise ServiceError(
                f"credentials {path}: cannot open ({e.strerror or e})", EXIT_CREDENTIALS
            ) from None
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ServiceError(
                    f"credentials {path}: not a regular file (a FIFO, a device or a folder "
                    f"would be read forever or not at all); give a file of mode 0600",
                    EXIT_CREDENTIALS,
                )
            os.set_blocking(fd, True)
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                raise ServiceError(
                    f"credentials {path}: mode {mode:04o} lets others read it; it must be "
                    f"0600 (chmod 600 {path})",
                    EXIT_CREDENTIALS,
                )
            if info.st_uid != os.geteuid():
                raise ServiceError(
                    f"credentials {path}: owned by uid {info.st_uid}, not by the agent's "
                    f"user (uid {os.geteuid()})",
                    EXIT_CREDENTIALS,
                )
            text = f.read().decode("utf-8", "replace")
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, where: str) -> Credentials:
        """Credentials from the JSON text of a file named ``where`` (for messages)."""
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ServiceError(f"credentials {where}: not JSON ({e})", EXIT_CREDENTIALS) from None
        if not isinstance(data, dict):
            raise ServiceError(f"credentials {where}: not a JSON object", EXIT_CREDENTIALS)
        known = {"token": "token", "username": "username", "password": "password"}
        for key, value in data.items():
            if key == "expiresIn":
                if not isinstance(value, str | int) or isinstance(value, bool):
                    raise ServiceError(
                        f"credentials {where}: expiresIn is seconds or a duration like '7d'",
                        EXIT_CREDENTIALS,
                    )
            elif key not in known:
                raise ServiceError(
                    f"credentials {where}: unknown key {key!r} (use token, username, "
                    "password, expiresIn)",
                    EXIT_CREDENTIALS,
                )
            elif not isinstance(value, str) or not value:
                raise ServiceError(
                    f"credentials {where}: {key} must be a non-empty string", EXIT_CREDENTIALS
                )
        if ("username" in data) != ("password" in data):
            raise ServiceError(
                f"credentials {where}: username and password go together", EXIT_CREDENTIALS
            )
        if "token" not in data and "username" not in data:
            raise ServiceError(
                f"credentials {where}: give a token, or a username and password",
                EXIT_CREDENTIALS,
            )
        return cls(
            data.get("username"), data.get("password"), data.get("token"), data.get("expiresIn")
        )


class Connection:
    """A client of the server at ``url`` signed in with ``credentials``, that signs in
    again when its token is refused (:meth:`renew`)."""

    def __init__(self, url: str, credentials: Credentials, *, timeout: float = 300.0) -> None:
        from damas_core.client import connect

        self.credentials = credentials
        self.client = connect(url, credentials.token, timeout=timeout)
        self.where = url

    def ensure(self) -> None:
        """Sign in unless the client has a token (raises as :meth:`renew`)."""
        if self.client.token is None:
            self.renew(None)

    def renew(self, refusal: Unauthorized | None) -> None:
        """Sign in with the password; :class:`ServiceError` when there is none or it is
        refused. Errors reaching the server propagate (the caller retries)."""
        c = self.credentials
        if c.username is None or c.password is None:
            raise ServiceError(
                f"the server {self.where} refused the agent's token ({refusal}) and the "
                "credentials hold no password to sign in again",
                EXIT_CREDENTIALS,
            )
        try:
            answer = self.client.sign_in(c.username, c.password, c.expires_in)
        except (Unauthorized, BadRequest) as e:
            raise ServiceError(
                f"signing in to {self.where} as {c.username!r} failed: {e}", EXIT_CREDENTIALS
            ) from e
        if refusal is not None:
            log.info("signed in again as %s (%s)", c.username, refusal)
        if answer["user"].get("class") != "admin":
            raise ServiceError(
                f"{c.username!r} is not an admin: an agent writes the control keys of its "
                "files and volume, which only admins may",
                EXIT_CREDENTIALS,
            )


__all__ = ["Connection", "Credentials"]
