"""The OpenAPI 3.1 document of the HTTP API, generated from :data:`damas_core.http.routes.ROUTES`.

Served at ``GET /api/openapi.json``; every route the application answers is in it
because both come from the same table.

>>> doc = document("")
>>> doc["openapi"], sorted(doc["paths"]["/api/read/{ids}"])
('3.1.0', ['get'])
"""

from __future__ import annotations

import re
from typing import Any

import damas_core
from damas_core.http.routes import ROUTES, Route

_ELEMENT = {"$ref": "#/components/schemas/Element"}
_NULLABLE_ELEMENT = {"anyOf": [_ELEMENT, {"type": "null"}]}
_ID = {"type": "string", "minLength": 1}

SCHEMAS: dict[str, Any] = {
    "Element": {
        "type": "object",
        "description": "A JSON element; `_id` is its unique id (files: a path from the project root).",
        "properties": {"_id": {"type": "string"}},
        "additionalProperties": True,
    },
    "Error": {
        "type": "object",
        "description": "What went wrong: `<op> error: <reason>` and the HTTP status.",
        "required": ["error", "status"],
        "properties": {
            "error": {"type": "string"},
            "status": {"type": "integer"},
            "locked": {
                "type": "object",
                "description": "A refused lock or unlock (409): who holds each id, `{id: '@user'}`.",
                "additionalProperties": {"type": "string"},
            },
        },
    },
}

#: Request body forms, by :attr:`Route.body`.
BODIES: dict[str, dict[str, Any]] = {
    "elements": {
        "description": "One element or an array; `{_id: [a, b], …}` unfolds into one element per id.",
        "schema": {"anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]},
        "example": {"_id": "/shots/a.exr", "status": "wip"},
    },
    "ids": {
        "description": "One id (a bare JSON string) or an array of ids.",
        "schema": {"anyOf": [_ID, {"type": "array", "items": _ID}]},
        "example": ["/shots/a.exr", "/shots/b.exr"],
    },
    "files": {
        "description": "One file or an array: `_id` (a path starting with `/`), `comment` and `origin`.",
        "schema": {
            "anyOf": [
                {"$ref": "#/components/schemas/FileToPublish"},
                {"type": "array", "items": {"$ref": "#/components/schemas/FileToPublish"}},
            ]
        },
        "example": {"_id": "/shots/a.exr", "comment": "first take", "origin": "paris"},
    },
    "comments": {
        "description": '`{"#parent": id or [ids], "comment": text}` or an array of them.',
        "schema": {"anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]},
        "example": {"#parent": "/shots/a.exr", "comment": "looks good"},
    },
    "keys": {
        "description": "Keys to set on the new head (`null` removes a key); may be empty.",
        "schema": {"type": "object"},
        "example": {"file": "/shots/a_v2.exr"},
        "required": False,
    },
    "search_mongo": {
        "description": "A MongoDB-style query; `REGEX_x` and `RX_x_RXflags` strings are regexes.",
        "schema": {
            "type": "object",
            "properties": {
                "query": {"type": "object"},
                "sort": {},
                "limit": {"type": "integer", "minimum": 0},
                "skip": {"type": "integer", "minimum": 0},
            },
        },
        "example": {"query": {"origin": "paris"}, "sort": {"_id": 1}, "limit": 10, "skip": 0},
    },
}

SCHEMAS["Change"] = {
    "type": "object",
    "description": "One entry of the change feed; `element` only when asked for, never on a deletion.",
    "required": ["seq", "_id", "deleted"],
    "properties": {
        "seq": {"type": "integer", "minimum": 1},
        "_id": {"type": "string"},
        "deleted": {"type": "boolean"},
        "element": _ELEMENT,
    },
}

SCHEMAS["FileToPublish"] = {
    "type": "object",
    "required": ["_id", "comment", "origin"],
    "properties": {
        "_id": {"type": "string", "pattern": "^/"},
        "comment": {"type": "string", "minLength": 1},
        "origin": {"type": "string", "minLength": 1},
    },
}

_SIGNIN_FIELDS = {
    "type": "object",
    "required": ["username", "password"],
    "properties": {
        "username": {"type": "string"},
        "password": {"type": "string"},
        "expiresIn": {
            "description": (
                "Token lifespan: seconds, or a duration such as `2h` or `7d` (default 1 day); "
                '`0` or `"0"`: a token that never expires, for admins only (400 otherwise).'
            ),
            "anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}],
        },
    },
}

#: Success payloads, by :attr:`Route.result`.
RESULTS: dict[str, dict[str, Any]] = {
    "element": _ELEMENT,
    "elements": {
        "description": "One element for one item in, else an array in input order with `null` holes.",
        "anyOf": [_ELEMENT, {"type": "array", "items": _NULLABLE_ELEMENT}],
    },
    "ids": {
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": ["string", "null"]}}]
    },
    "graph": {
        "type": "array",
        "items": _NULLABLE_ELEMENT,
        "description": (
            "Nodes, then the links walked. For a list of ids, each distinct id asked has "
            "its place first, in order, `null` where it does not exist (207)."
        ),
    },
    "id_list": {"type": "array", "items": {"type": "string"}},
    "element_list": {"type": "array", "items": _ELEMENT},
    "element_or_null": _NULLABLE_ELEMENT,
    "count_ids": {
        "type": "object",
        "required": ["count", "ids"],
        "properties": {
            "count": {"type": "integer"},
            "ids": {"type": "array", "items": {"type": "string"}},
        },
    },
    "true": {"type": "boolean", "const": True},
    "user": _ELEMENT,
    "signin": {
        "type": "object",
        "required": ["token", "user"],
        "properties": {
            "token": {"type": "string", "description": "Send as `Authorization: Bearer <token>`."},
            "token_exp": {
                "type": ["integer", "null"],
                "description": '`null` for a token that never expires (`expiresIn: "0"`, admins only).',
            },
            "token_iat": {"type": "integer"},
            "user": _ELEMENT,
        },
    },
    "openapi": {"type": "object"},
    "changes": {
        "type": "object",
        "description": (
            "The latest change of each id after `since`, in seq order; read on from "
            "`last_seq`. `reset: true`: read every element again, then go on from `last_seq`. "
            "`more: true`: the answer stopped early at its size bound (8 MB by default): "
            "read on from `last_seq` at once."
        ),
        "required": ["last_seq", "changes"],
        "properties": {
            "last_seq": {"type": "integer", "minimum": 0},
            "reset": {"type": "boolean"},
            "more": {"type": "boolean"},
            "changes": {"type": "array", "items": {"$ref": "#/components/schemas/Change"}},
        },
    },
    "events": {
        "type": "string",
        "description": (
            "Server-Sent Events: `event: change`, `id:` the seq, `data:` a Change as JSON; "
            "`event: reset` (read everything again); `:` comment lines as heartbeats."
        ),
    },
}

_PARAMS = {
    "ids": "Comma-separated ids, each percent-encoded (`%2C` is a comma inside an id).",
    "id": "One id, percent-encoded.",
    "query": "A query in the search language, percent-encoded (e.g. `origin:paris%20file_size>10`).",
    "depth": "How many levels of links to walk; 0 walks them all.",
}
_QUERY = {
    "sort": ({}, 'Sort key(s): `key`, `-key`, or JSON such as `{"time": -1}`.'),
    "skip": ({"type": "integer", "minimum": 0}, "Results to skip."),
    "limit": ({"type": "integer", "minimum": 0}, "At most this many results."),
    "force": ({"type": "boolean"}, "Unlock whoever holds the lock (admins only)."),
    "expect": (
        {"type": "string"},
        "JSON object of keys and the values the element must hold (`null`: absent) for a "
        "one-element update to be written (compare-and-set); 409 when it does not. For a "
        "list of elements, a JSON array as long: each element's expectation or `null`; "
        "207 with `null` for those not written.",
    ),
    "since": (
        {"type": "integer", "minimum": 0},
        "Read the changes after this position: the `last_seq` of the previous answer "
        "(changes: default 0, the start; events: default now, and a `Last-Event-ID` header wins).",
    ),
    "elements": ({"type": "boolean"}, "Add each live entry's current element."),
    "wait": (
        {"type": "number", "minimum": 0, "maximum": 60},
        "Seconds to wait for a change when there is none yet (long-poll; at most 60).",
    ),
}
_STATUS_TEXT = {
    200: "OK", 201: "Created", 207: "Multi-Status: some items are `null`", 400: "Bad request",
    401: "Not signed in, or the token is invalid", 403: "Forbidden for this user",
    404: "Not found (every item)", 409: "Conflict", 413: "Body over the size limit",
    429: "Too many failed sign-ins; see Retry-After", 501: "Not supported by this backend",
    503: "Every stream slot is taken; try again later",
}  # fmt: skip


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": _operation_id(route),
        "summary": route.summary,
        "tags": [_tag(route)],
        "responses": {},
    }
    params = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": _PARAMS[name],
            "schema": {"type": "integer", "minimum": 0}
            if name == "depth"
            else {"type": "string", "minLength": 1},
        }
        for name in re.findall(r"\{(\w+)\}", route.path)
    ]
    for name in route.query:
        schema, text = _QUERY[name]
        params.append(
            {"name": name, "in": "query", "required": False, "description": text, "schema": schema}
        )
    if params:
        op["parameters"] = params
    if route.body == "signin":
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {"schema": _SIGNIN_FIELDS},
                "application/json": {"schema": _SIGNIN_FIELDS},
            },
        }
    elif route.body:
        form = BODIES[route.body]
        op["requestBody"] = {
            "required": form.get("required", True),
            "description": form["description"],
            "content": {"application/json": {"schema": form["schema"], "example": form["example"]}},
        }
    for status in route.ok:
        schema = RESULTS.get(route.result)
        if status == 207:
            schema = {"type": "array", "items": {"anyOf": [_ELEMENT, {"type": ["string", "null"]}]}}
        if route.result == "events":
            content = {"text/event-stream": {"schema": RESULTS["events"]}}
        else:
            content = {"application/json": {"schema": schema}}
        op["responses"][str(status)] = {"description": _STATUS_TEXT[status], "content": content}
    for status in route.errors:
        op["responses"][str(status)] = {
            "description": _STATUS_TEXT[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    if route.public:
        op["security"] = []
    return op


def _operation_id(route: Route) -> str:
    suffix = {"read_url": "ByUrl", "graph_url": "ByUrl"}.get(route.handler.__name__, "")
    return route.op + suffix


def _tag(route: Route) -> str:
    if route.op in ("signIn", "signOut", "verify"):
        return "accounts"
    if route.op == "openapi":
        return "server"
    if route.op in ("publish", "lock", "unlock", "comment", "version"):
        return "files"
    if route.op in ("changes", "events"):
        return "feed"
    return "elements"


def document(base: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document for an app mounted at ``base`` (``""`` at the root)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "damas-core tracker",
            "version": damas_core.__version__,
            "description": (
                "The damas-core 2.x HTTP API: a JSON element store indexing the files of a project. "
                "Every operation takes one item or an array; one item gives one result, an array "
                "an array in input order with `null` where an item failed (status 207). "
                "A trailing slash is optional on every path that has one."
            ),
        },
        "servers": [{"url": base or "/"}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "token"},
            },
        },
        "security": [{"bearer": []}, {"cookie": []}],
    }


__all__ = ["BODIES", "RESULTS", "SCHEMAS", "document"]
