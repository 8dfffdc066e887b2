"""The exceptions every layer of damas-core raises.

Data outcomes are return values (``None`` for an item that failed, ``False`` for a
refused lock); exceptions are for wrong input, missing rights and broken storage.
Each carries the HTTP ``status`` the WSGI adapter answers with, so the mapping from
errors to status codes lives here and nowhere else.

>>> from damas_core.errors import BadRequest
>>> try:
...     raise BadRequest("update error: an element needs an _id", op="update")
... except ValueError as e:
...     (e.status, str(e))
(400, 'update error: an element needs an _id')
"""

from __future__ import annotations

from typing import Any


class DamasError(Exception):
    """Base class. ``status`` is the HTTP status; ``op``, ``id`` and ``key`` say where."""

    status: int = 500

    def __init__(
        self,
        message: str,
        *,
        op: str | None = None,
        id: str | None = None,
        key: str | None = None,
        position: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.op = op
        self.id = id
        self.key = key
        self.position = position

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body: ``{"error": message, "status": N}``."""
        return {"error": self.message, "status": self.status}


class BadRequest(DamasError, ValueError):
    """Malformed input: a bad element, a bad id, a query that does not parse (400)."""

    status = 400


class Unauthorized(DamasError):
    """No valid credentials: missing, wrong, expired or revoked token (401)."""

    status = 401


class Forbidden(DamasError, PermissionError):
    """The caller is known but may not do this (403)."""

    status = 403


class NotFound(DamasError, LookupError):
    """A named thing the call depends on does not exist, e.g. an unknown user (404)."""

    status = 404


class Conflict(DamasError):
    """The request conflicts with the current state (409). A refused lock or unlock
    sets ``locked``, ``{id: "@holder"}`` for the ids someone else holds, and the JSON
    body carries it."""

    status = 409
    locked: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        if self.locked is not None:
            body["locked"] = self.locked
        return body


class PayloadTooLarge(DamasError):
    """A request body over the configured limit (413)."""

    status = 413


class TooManyRequests(DamasError):
    """Too many attempts (failed sign-ins) from here: wait ``retry_after`` seconds (429)."""

    status = 429

    def __init__(self, message: str, *, retry_after: float | None = None, **where: Any) -> None:
        super().__init__(message, **where)
        self.retry_after = retry_after


class NotImplementedByBackend(DamasError, NotImplementedError):
    """Valid input that this backend or this build does not support (501)."""

    status = 501


class TooManyStreams(DamasError):
    """Every slot for an open event stream or long-poll is taken: try again later (503)."""

    status = 503


class StorageError(DamasError):
    """The storage failed; the original exception is the ``__cause__`` (500)."""

    status = 500


__all__ = [
    "BadRequest",
    "Conflict",
    "DamasError",
    "Forbidden",
    "NotFound",
    "NotImplementedByBackend",
    "PayloadTooLarge",
    "StorageError",
    "TooManyRequests",
    "TooManyStreams",
    "Unauthorized",
]
