"""The tracker's HTTP API as a plain WSGI application (PEP 3333).

:func:`make_app` wraps an open :class:`~damas_core.Tracker`; the result can be served
by any WSGI server (``damas serve`` uses waitress) or mounted under a prefix of a host
application, e.g. with Werkzeug's ``DispatcherMiddleware``. The routes, bodies and
status codes are damas-core 2.x's (see :mod:`damas_core.http.routes` and ``docs/http.md``).

Authentication (``auth``, required):

- ``"jwt"``: a token from ``POST /api/signIn/``, sent as ``Authorization: Bearer …``
  or in a ``token`` cookie (see :mod:`damas_core.tokens`);
- ``"none"``: every request acts as the tracker itself, an anonymous admin. For local
  use only;
- a callable ``(environ) -> username | None`` for host applications that authenticate
  requests themselves (``None`` means not signed in: 401).

Each request acts through ``tracker.as_user(name)``, so the core applies the user's
class permissions and ``author_mode`` on every route.

>>> import damas_core
>>> from werkzeug.test import Client
>>> app = make_app(damas_core.open("memory://"), auth="none")
>>> answer = Client(app).post("/api/create/", json={"_id": "/a", "n": 1})
>>> answer.status_code, answer.json["n"]
(201, 1)
>>> Client(app).get("/api/read/%2Fa,%2Fb").status_code
207
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from damas_core.authcache import AuthCache
from damas_core.dashboard.app import Dashboard
from damas_core.errors import (
    DamasError,
    Forbidden,
    NotFound,
    NotImplementedByBackend,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
)
from damas_core.http import openapi, routes
from damas_core.http.clients import client_address, proxies
from damas_core.http.messages import Answer, Call
from damas_core.http.streams import HEARTBEAT, MAX_STREAMS, Streams
from damas_core.signin import SignIn
from damas_core.tokens import Tokens, parse_lifespan

log = logging.getLogger("damas_core.http")

#: Default request body limit: 50 MB.
MAX_BODY_SIZE = 50 * 1024 * 1024

StartResponse = Callable[..., Any]
AuthCallable = Callable[[dict[str, Any]], "str | None"]

_REASONS = {
    200: "OK", 201: "Created", 207: "Multi-Status", 303: "See Other", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
    413: "Content Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
    501: "Not Implemented", 503: "Service Unavailable",
}  # fmt: skip
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def make_app(
    tracker: Any,
    *,
    auth: str | AuthCallable,
    max_body_size: int = MAX_BODY_SIZE,
    token_lifespan: int | str = 24 * 3600,
    sign_in_attempts: int = 5,
    sign_in_window: float = 60.0,
    max_streams: int = MAX_STREAMS,
    metrics_token: str | None = None,
    stream_check: float = HEARTBEAT,
    trusted_proxies: str | Sequence[str] | None = None,
) -> DamasApp:
    """A WSGI application serving ``tracker``'s HTTP API.

    ``max_streams`` bounds the event streams (``GET /api/events/``) and waiting
    long-polls open at once (503 beyond; see :mod:`damas_core.http.streams`);
    ``stream_check`` is the most seconds an idle event stream goes without a heartbeat
    and a check of its token (a change of its account is seen at the next write).
    ``trusted_proxies`` (CIDRs, comma-separated or a list) are the proxies whose
    ``X-Forwarded-For`` names the client the sign-in limits count against (see
    :mod:`damas_core.http.clients`).

    ``GET /healthz`` (under any mount prefix, no sign-in) answers 200
    ``{"status": "ok"}`` when the store answers one small read, 503 otherwise.

    ``auth`` is ``"jwt"``, ``"none"`` or a callable ``(environ) -> username | None``.
    ``max_body_size`` (bytes) bounds request bodies (413 beyond); ``token_lifespan`` is
    the default token validity (seconds or ``"2h"``-like); ``sign_in_attempts`` sign-in
    attempts per username and address are allowed per ``sign_in_window`` seconds (see
    :class:`damas_core.signin.SignIn`, whose rules the API applies).
    ``GET /metrics`` (:mod:`damas_core.http.metrics`) answers admins, and requests
    bearing ``metrics_token`` when one is given.
    """
    return DamasApp(
        tracker,
        auth=auth,
        max_body_size=max_body_size,
        token_lifespan=parse_lifespan(token_lifespan),
        sign_in_attempts=sign_in_attempts,
        sign_in_window=sign_in_window,
        max_streams=max_streams,
        metrics_token=metrics_token,
        stream_check=stream_check,
        trusted_proxies=trusted_proxies,
    )


class DamasApp:
    """The WSGI callable returned by :func:`make_app`."""

    def __init__(
        self,
        tracker: Any,
        *,
        auth: str | AuthCallable,
        max_body_size: int,
        token_lifespan: int,
        sign_in_attempts: int,
        sign_in_window: float,
        max_streams: int = MAX_STREAMS,
        metrics_token: str | None = None,
        stream_check: float = HEARTBEAT,
        trusted_proxies: str | Sequence[str] | None = None,
    ) -> None:
        if auth not in ("jwt", "none") and not callable(auth):
            raise ValueError(
                f"auth must be 'jwt', 'none' or a callable (environ) -> username, not {auth!r}"
            )
        if auth == "none":
            log.warning(
                "auth='none': every request acts as an anonymous admin; use it locally only"
            )
        self.tracker = tracker
        self.auth = auth
        self.max_body_size = max_body_size
        self.trusted_proxies = proxies(trusted_proxies)
        #: Revocations and accounts, current through the change feed (one per app).
        self.auth_cache = AuthCache(tracker.storage)
        self.tokens = Tokens(tracker, lifespan=token_lifespan, cache=self.auth_cache)
        self.signin = SignIn(tracker, self.tokens, attempts=sign_in_attempts, window=sign_in_window)
        self._openapi: dict[str, bytes] = {}
        self.streams = Streams(tracker.feed, limit=max_streams, heartbeat=stream_check)
        self.dashboard = Dashboard(self, Answer)
        self._cache_lock = threading.Lock()
        self.metrics: Any = None
        try:  # the server extra has it; without it /metrics says what to install
            from damas_core.http.metrics import Metrics

            self.metrics = Metrics(self, metrics_token)
        except ImportError:
            log.warning("prometheus_client is not installed: GET /metrics answers 501")

    # -- WSGI -------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        call = Call(self, environ)
        try:
            answer = self.dispatch(call)
        except DamasError as e:
            answer = Answer(e.status, e.to_dict())
            if isinstance(e, Unauthorized):
                answer.headers.append(("WWW-Authenticate", 'Bearer realm="damas"'))
            elif isinstance(e, TooManyRequests) and e.retry_after is not None:
                answer.headers.append(("Retry-After", str(max(1, math.ceil(e.retry_after)))))
            if e.status >= 500 and e.status not in (501, 503):  # expected, not failures
                log.error("%s %s: %s", call.method, call.path, e, exc_info=e)
        except Exception as e:  # a bug: answer 500 and keep serving
            log.exception("%s %s failed", call.method, call.path)
            answer = Answer(
                500,
                {"error": f"{call.op} error: internal error ({type(e).__name__})", "status": 500},
            )
        if self.metrics is not None:
            self.metrics.observe(call, answer.status, started)
        return self.respond(answer, start_response)

    def dispatch(self, call: Call) -> Answer:
        length = call.content_length()
        if length > self.max_body_size:
            # Refused before reading a byte of it.
            raise PayloadTooLarge(
                f"request error: the body ({length} bytes) is over the limit of {self.max_body_size} bytes"
            )
        if call.path == "/metrics":
            return self.serve_metrics(call)
        if call.path == "/healthz":
            return self.health(call)
        found = routes.match(call.path)
        if not found and not call.path.startswith("/api/"):
            return self.dashboard(call)  # every other path is a page of the dashboard
        if not found:
            raise NotFound(
                f"request error: no route {call.path!r} (see {call.base}/api/openapi.json)"
            )
        for route, params in found:
            if route.method == call.method:
                call.route, call.op, call.params = route, route.op, params
                if not route.public:
                    call.session = self.authenticate(call)
                return route.handler(call)
        allowed = sorted({route.method for route, _ in found})
        answer = Answer(
            405,
            {
                "error": f"request error: {call.method} not allowed here; use {', '.join(allowed)}",
                "status": 405,
            },
        )
        answer.headers.append(("Allow", ", ".join(allowed)))
        return answer

    def respond(self, answer: Answer, start_response: StartResponse) -> Iterable[bytes]:
        if answer.stream is not None:  # written over time, so without a length
            headers = [
                ("Content-Type", answer.content_type),
                ("Cache-Control", "no-store"),
                *answer.headers,
            ]
            start_response(f"{answer.status} {_REASONS.get(answer.status, 'Unknown')}", headers)
            return answer.stream
        body = answer.raw if answer.raw is not None else orjson.dumps(answer.payload)
        headers = [
            ("Content-Type", answer.content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *answer.headers,
        ]
        start_response(f"{answer.status} {_REASONS.get(answer.status, 'Unknown')}", headers)
        return [body]

    def openapi(self, base: str) -> bytes:
        """The OpenAPI document for the mount prefix ``base``, as JSON (made once)."""
        with self._cache_lock:
            if base not in self._openapi:
                self._openapi[base] = orjson.dumps(openapi.document(base))
            return self._openapi[base]

    def serve_metrics(self, call: Call) -> Answer:
        """``GET /metrics``: for the metrics token (``Authorization: Bearer``) or an
        admin (token or cookie); 401 without credentials, 403 for others."""
        call.op = "metrics"
        if call.method not in ("GET", "HEAD"):
            answer = Answer(405, {"error": "metrics error: use GET", "status": 405})
            answer.headers.append(("Allow", "GET"))
            return answer
        if self.metrics is None:
            raise NotImplementedByBackend(
                "metrics error: prometheus_client is not installed (pip install "
                "'damas-core[server]')",
                op="metrics",
            )
        bearer = call.environ.get("HTTP_AUTHORIZATION", "")
        if not (bearer[:7].lower() == "bearer " and self.metrics.token_matches(bearer[7:].strip())):
            session = self.authenticate(call)
            if not getattr(session, "is_admin", False):
                raise Forbidden(
                    "metrics error: for admins, or the token of damas serve --metrics-token-file",
                    op="metrics",
                )
        from damas_core.http.metrics import CONTENT_TYPE

        return Answer(200, raw=self.metrics.exposition(), content_type=CONTENT_TYPE)

    def health(self, call: Call) -> Answer:
        """``GET /healthz``: 200 when the store answers one small read (its feed
        position), 503 otherwise; for load balancers, so no sign-in and nothing more."""
        if call.method not in ("GET", "HEAD"):
            answer = Answer(405, {"error": "healthz error: use GET", "status": 405})
            answer.headers.append(("Allow", "GET, HEAD"))
            return answer
        try:
            self.tracker.storage.last_seq()
        except Exception as e:  # whatever the store raised, the answer is "not now"
            log.warning("healthz: the store does not answer: %s", e)
            return Answer(503, {"status": "unavailable", "error": f"healthz error: {e}"})
        return Answer(200, {"status": "ok"})

    def client_address(self, environ: dict[str, Any]) -> str:
        """The client's address (``X-Forwarded-For`` only from a trusted proxy)."""
        return client_address(environ, self.trusted_proxies)

    # -- authentication ---------------------------------------------------------------------

    def authenticate(self, call: Call) -> Any:
        """The session the request acts through; :class:`Unauthorized` if there is none."""
        if self.auth == "none":
            return self.tracker
        if self.auth == "jwt":
            token, from_cookie = call.token()
            if token is None:
                raise Unauthorized(
                    f"{call.op} error: authentication required (sign in with POST /api/signIn/)",
                    op=call.op,
                )
            if from_cookie:
                self.check_cookie_write(call)
            return self.signin.session(token)
        else:
            name = self.auth(call.environ)  # type: ignore[operator]
            if not name:
                raise Unauthorized(f"{call.op} error: authentication required", op=call.op)
        try:
            return self.tracker.as_user(name)
        except NotFound:
            raise Unauthorized(f"{call.op} error: unknown user {name!r}", op=call.op) from None
        except Forbidden:
            raise Unauthorized(f"{call.op} error: user {name!r} is disabled", op=call.op) from None

    @staticmethod
    def check_cookie_write(call: Call) -> None:
        """Refuse a write authenticated by the ``token`` cookie unless it is JSON: a
        cross-site form can send the cookie, but not a JSON content type."""
        if call.method not in _SAFE_METHODS and call.mimetype != "application/json":
            raise Forbidden(
                f"{call.op} error: a write authenticated by cookie needs Content-Type: application/json "
                "(or send the token in an Authorization header)",
                op=call.op,
            )

    def sign_in(self, call: Call) -> Answer:
        """``POST /api/signIn/``: ``{token, token_exp, token_iat, user}`` (see
        :meth:`damas_core.signin.SignIn.sign_in`)."""
        form = call.credentials()
        answer = self.signin.sign_in(
            form.get("username"),  # type: ignore[arg-type]
            form.get("password"),  # type: ignore[arg-type]
            address=self.client_address(call.environ),
            expires_in=form.get("expiresIn"),
        )
        return Answer(200, answer)

    def sign_out(self, call: Call) -> Answer:
        """``POST /api/signOut/``: revoke the request's token (200 ``true``)."""
        token, from_cookie = call.token()
        if token is None:
            if self.auth != "jwt":
                return Answer(200, True)
            raise Unauthorized("signOut error: no token to revoke", op="signOut")
        if from_cookie:
            self.check_cookie_write(call)
        self.signin.sign_out(token)
        answer = Answer(200, True)
        answer.headers.append(("Set-Cookie", "token=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"))
        return answer


__all__ = ["MAX_BODY_SIZE", "DamasApp", "make_app"]
