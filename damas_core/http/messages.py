"""Request and response types of the HTTP layer: what a handler reads (:class:`Call`)
and returns (:class:`Answer`). Nothing here knows a route or an operation.

>>> Answer(201, {"_id": "/a"}).status
201
>>> raw_path({"SCRIPT_NAME": "/t", "PATH_INFO": "/api/read/a/b", "REQUEST_URI": "/t/api/read/a%2Fb"})
'/api/read/a%2Fb'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, unquote

import orjson
from werkzeug.wrappers import Request

from damas_core.errors import BadRequest, PayloadTooLarge

#: JSON bodies may nest this deep; the core caps elements lower (64 levels).
MAX_JSON_DEPTH = 100
# Characters a raw path keeps when it has to be rebuilt from PATH_INFO.
_PATH_SAFE = "/,;:@!$&'()*+=~"


class Services(Protocol):
    """What the application offers its handlers beyond the request itself."""

    max_body_size: int
    #: The open event streams and long-polls (:class:`damas_core.http.streams.Streams`).
    streams: Any

    def openapi(self, base: str) -> bytes:
        """The OpenAPI document for a mount prefix, as JSON."""
        ...


@dataclass
class Answer:
    """What a handler returns: a status and a JSON-encodable payload (or raw bytes, or
    a ``stream``: a body written over time, see :mod:`damas_core.http.streams`)."""

    status: int
    payload: Any = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"
    raw: bytes | None = None
    stream: Any = None


def check_depth(value: Any, op: str, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`BadRequest` if a parsed JSON value nests more than ``limit``
    objects and arrays deep.

    It goes one level at a time: the objects and arrays of a level are the next
    level's, so a body of many flat elements costs one pass over their values.

    >>> check_depth([{"a": [1]}], "x", limit=3)
    >>> check_depth([{"a": [[1]]}], "x", limit=3)
    Traceback (most recent call last):
    ...
    damas_core.errors.BadRequest: x error: the JSON body nests deeper than 3 levels
    """
    level = [value] if type(value) in _NESTING else []
    depth = 1
    while level:
        if depth > limit:
            raise BadRequest(f"{op} error: the JSON body nests deeper than {limit} levels", op=op)
        values: list[Any] = []
        for item in level:
            values.extend(item.values() if type(item) is dict else item)
        level = [v for v in values if type(v) in _NESTING]
        depth += 1


# what a parsed JSON value nests in (orjson gives these exact types)
_NESTING = (dict, list)


class Call:
    """One request being answered: its parts, parsed on demand."""

    def __init__(self, app: Services, environ: dict[str, Any]) -> None:
        self.app = app
        self.environ = environ
        self.method: str = environ.get("REQUEST_METHOD", "GET").upper()
        self.base: str = environ.get("SCRIPT_NAME", "").rstrip("/")
        self.path: str = raw_path(environ)
        self.route: Any = None
        self.op = "request"
        self.params: dict[str, str] = {}
        self.session: Any = None
        self._request: Request | None = None

    @property
    def request(self) -> Request:
        if self._request is None:
            self._request = Request(self.environ)
            self._request.max_content_length = self.app.max_body_size
            self._request.max_form_memory_size = self.app.max_body_size
        return self._request

    @property
    def args(self) -> Any:
        """The query-string arguments."""
        return self.request.args

    @property
    def mimetype(self) -> str:
        return self.request.mimetype

    def content_length(self) -> int:
        raw = self.environ.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            raise BadRequest(f"request error: bad Content-Length {raw!r}") from None
        if length < 0:
            raise BadRequest(f"request error: bad Content-Length {raw!r}")
        return length

    def data(self) -> bytes:
        """The request body, at most ``max_body_size`` bytes (413 beyond)."""
        from werkzeug.exceptions import RequestEntityTooLarge

        try:
            data = self.request.get_data(cache=True)
        except RequestEntityTooLarge:
            raise PayloadTooLarge(
                f"{self.op} error: the body is over the limit of {self.app.max_body_size} bytes",
                op=self.op,
            ) from None
        if len(data) > self.app.max_body_size:
            raise PayloadTooLarge(
                f"{self.op} error: the body is over the limit of {self.app.max_body_size} bytes",
                op=self.op,
            )
        return data

    def parse_json(self, data: bytes) -> Any:
        """Parse JSON; a malformed body is a 400 naming the position."""
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise BadRequest(
                f"{self.op} error: malformed JSON at line {e.lineno} column {e.colno} (char {e.pos}): {e.msg}",
                op=self.op,
                position=e.pos,
            ) from None
        check_depth(value, self.op)
        return value

    def body(self, *, required: bool = True) -> Any:
        """The JSON body (whatever the Content-Type says, as damas-core clients vary)."""
        data = self.data()
        if not data.strip():
            if required:
                raise BadRequest(f"{self.op} error: the request needs a JSON body", op=self.op)
            return None
        return self.parse_json(data)

    def credentials(self) -> dict[str, Any]:
        """Sign-in fields from a form (``username=…&password=…``) or a JSON object."""
        if self.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

            try:
                return dict(self.request.form.items())
            except RequestEntityTooLarge:
                raise PayloadTooLarge("signIn error: the form is too large", op="signIn") from None
            except HTTPException as e:
                raise BadRequest(
                    f"signIn error: unreadable form ({e.description})", op="signIn"
                ) from None
        body = self.body()
        if not isinstance(body, dict):
            raise BadRequest(
                "signIn error: send a form or a JSON object {username, password}", op="signIn"
            )
        return body

    def token(self) -> tuple[str | None, bool]:
        """The bearer token (header first, then the ``token`` cookie) and whether it came
        from the cookie."""
        header = self.environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value and value != "null":
            return value, False
        cookie = self.request.cookies.get("token")
        if cookie and cookie != "null":
            return cookie, True
        return None, False


def raw_path(environ: dict[str, Any]) -> str:
    """The request path below the mount point, still percent-encoded.

    WSGI's ``PATH_INFO`` is already decoded (``%2F`` became ``/``), so the raw request
    line (``REQUEST_URI`` or ``RAW_URI``, set by waitress, gunicorn and Werkzeug) is used
    when it agrees with ``PATH_INFO``; otherwise ``PATH_INFO`` is re-encoded, which only
    loses the difference between ``,`` and ``%2C``.
    """
    script = environ.get("SCRIPT_NAME", "")
    path_info = environ.get("PATH_INFO", "")
    uri = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if uri:
        path = uri.split("?", 1)[0]
        if not path.startswith("/"):  # absolute form: http://host/path
            scheme_end = path.find("://")
            slash = path.find("/", scheme_end + 3) if scheme_end >= 0 else -1
            path = path[slash:] if slash >= 0 else "/"
        rest = _below(path, script)
        if rest is not None and unquote(rest, encoding="latin-1") == path_info:
            return rest
    return quote(path_info.encode("latin-1"), safe=_PATH_SAFE)


def _below(path: str, script: str) -> str | None:
    """``path`` without the raw prefix that decodes to ``script``; None if there is none."""
    if not script:
        return path
    if path.startswith(script) and (len(path) == len(script) or path[len(script)] == "/"):
        return path[len(script) :]
    for i, ch in enumerate(path):
        if ch == "/" and i and unquote(path[:i], encoding="latin-1") == script:
            return path[i:]
    return "" if unquote(path, encoding="latin-1") == script else None


__all__ = ["MAX_JSON_DEPTH", "Answer", "Call", "Services", "check_depth", "raw_path"]
