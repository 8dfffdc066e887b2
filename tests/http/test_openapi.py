"""The OpenAPI document: valid OpenAPI 3.1, lists every route the app answers, and the
app keeps to it under a schemathesis run (no 5xx, no answer contradicting the schema)."""

from __future__ import annotations

import jsonschema
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import damas_core
from damas_core.http.openapi import document
from damas_core.http.routes import ROUTES
from damas_core.wsgi import make_app


def test_document_is_valid_openapi_31():
    from schemathesis.specs.openapi.definitions import OPENAPI_31

    doc = document("")
    jsonschema.Draft202012Validator(OPENAPI_31).validate(doc)
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema), name


def test_every_route_the_app_answers_is_documented(shared_server):
    switch, url = shared_server
    tracker = damas_core.open("memory://")
    switch.app = make_app(tracker, auth="none")
    doc = requests.get(f"{url}/api/openapi.json").json()
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == {(r.method, r.path) for r in ROUTES}
    # And each documented operation is answered (not 404 "no route", not 405).
    for method, path in documented:
        concrete = path.format(ids="%2Fa", id="%2Fa", query="*", depth="0")
        r = requests.request(
            method,
            url + concrete,
            json="/a" if "read" in path or "delete" in path else {"_id": "/a"},
            stream=True,  # GET /api/events/ never ends: its headers tell
            timeout=30,
        )
        endless = r.headers.get("Content-Type") == "text/event-stream"
        text = "" if endless else r.text
        r.close()
        assert r.status_code not in (405,) and "no route" not in text, (method, path, text)
    tracker.close()


APP_TRACKER = damas_core.open("memory://")
APP_TRACKER.create(
    [{"_id": "/a", "k": 1}, {"_id": "/b", "src_id": "/a", "tgt_id": "/c"}, {"_id": "/c"}]
)
# GET /api/events/ is an endless body: tests/http/test_changes.py reads it.
SCHEMA = schemathesis.openapi.from_wsgi(
    "/api/openapi.json", make_app(APP_TRACKER, auth="none")
).exclude(path="/api/events/")


@SCHEMA.hook
def map_query(context, query):
    """A long-poll would hold each example up to a minute: no waiting here."""
    if query and "wait" in query:
        query["wait"] = 0
    return query


def no_server_error(ctx, response, case) -> None:
    """No 5xx, except the documented 501 for a MongoDB operator a backend cannot run."""
    documented = case.operation.definition.raw.get("responses", {})
    if response.status_code >= 500 and not (response.status_code == 501 and "501" in documented):
        raise AssertionError(f"server error {response.status_code}: {response.text[:300]}")


CHECKS = [
    no_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.slow
@SCHEMA.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis(case):
    case.call_and_validate(checks=CHECKS)
