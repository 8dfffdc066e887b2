"""The dashboard's CSRF field is bound to the signed-in session: a pair planted from an
anonymous visit, a field of another session, or a request with two cookies of one name
is refused; the field changes at sign-in."""

from __future__ import annotations

import pytest
import requests
from werkzeug.test import Client

from tests.http.conftest import serving

from .conftest import csrf_of


def _publish(tracker, file_id):
    tracker.publish({"_id": file_id, "origin": "paris", "comment": "new"})


def test_a_planted_anonymous_pair_is_refused_with_a_signed_in_token(browser, tracker):
    _publish(tracker, "/a.exr")
    attacker = browser()  # an anonymous visit: a csrf cookie and its field
    field = csrf_of(attacker.get("/signin").get_data(as_text=True))
    planted = attacker.cookie("csrf").value
    victim = browser("ula")
    victim.client.set_cookie("csrf", planted)  # e.g. from a sibling subdomain
    answer = victim.post("/file", {"id": "/a.exr", "action": "lock", "csrf": field})
    assert answer.status_code == 403
    assert "lock" not in tracker.read("/a.exr")


def test_a_field_of_another_session_of_the_same_user_is_refused(browser, tracker):
    _publish(tracker, "/a.exr")
    first, second = browser("ula"), browser("ula")
    foreign = csrf_of(first.get("/").get_data(as_text=True))
    second.client.set_cookie("csrf", first.cookie("csrf").value)
    answer = second.post("/file", {"id": "/a.exr", "action": "lock", "csrf": foreign})
    assert answer.status_code == 403 and "lock" not in tracker.read("/a.exr")


def test_two_cookies_of_one_name_are_refused(browser, app, tracker):
    _publish(tracker, "/a.exr")
    b = browser("ula")
    field = csrf_of(b.get("/").get_data(as_text=True))
    token, nonce = b.cookie("token").value, b.cookie("csrf").value
    raw = Client(app, use_cookies=False)
    form = {"id": "/a.exr", "action": "lock", "csrf": field}
    for cookies in (
        f"csrf=planted; token={token}; csrf={nonce}",
        f"token={token}; csrf={nonce}; token={token}",
    ):
        answer = raw.post("/file", data=form, headers={"Cookie": cookies})
        assert answer.status_code == 403
        assert "lock" not in tracker.read("/a.exr")
    answer = raw.post("/file", data=form, headers={"Cookie": f"token={token}; csrf={nonce}"})
    assert answer.status_code == 303 and tracker.read("/a.exr")["lock"] == "ula"


def test_the_field_changes_at_sign_in_and_sign_out(browser, tracker):
    _publish(tracker, "/a.exr")
    b = browser()
    anonymous = csrf_of(b.get("/signin").get_data(as_text=True))
    nonce = b.cookie("csrf").value
    b.post("/signin", {"username": "ula", "password": "ula-pw", "csrf": anonymous})
    assert b.cookie("csrf").value != nonce  # the sign-in form's nonce is replaced
    signed_in = csrf_of(b.get("/").get_data(as_text=True))
    assert signed_in != anonymous
    lock = {"id": "/a.exr", "action": "lock"}
    assert b.post("/file", {**lock, "csrf": anonymous}).status_code == 403
    b.post("/signout", {"csrf": signed_in})
    b.sign_in("ula")
    again = csrf_of(b.get("/").get_data(as_text=True))
    assert again != signed_in
    assert b.post("/file", {**lock, "csrf": signed_in}).status_code == 403  # the old session's
    assert "lock" not in tracker.read("/a.exr")
    assert b.post("/file", {**lock, "csrf": again}).status_code == 303


# -- where a sign-in goes next --------------------------------------------------------------

NEXT = [
    ("/\u3000/evil.com", "/%E3%80%80/evil.com"),  # above U+00FF: encoded, still a path here
    ("/\u00e9t\u00e9", "/%C3%A9t%C3%A9"),
    ("/file?id=/a b.exr", "/"),  # whitespace: refused, as browsers drop some of it
    ("/file?id=/a%20b.exr", "/file?id=/a%20b.exr"),
    ("/\u0085/x", "/%C2%85/x"),  # a C1 control
    ("/\t/evil.com", "/"),
    ("/\n/evil.com", "/"),
    ("/\x00", "/"),
    ("//evil.com", "/"),
    ("/\\evil.com", "/"),
    ("https://evil.com/", "/"),
    ("javascript:alert(1)", "/"),
    ("", "/"),
    ("/sites", "/sites"),
]


@pytest.mark.parametrize(("given", "location"), NEXT)
def test_sign_in_always_redirects_to_a_path_here(app, given, location):
    """Over a real server: waitress refuses header values it cannot encode, which made
    a right password answer 500."""
    with serving(app) as url, requests.Session() as http:
        field = csrf_of(http.get(f"{url}/signin", timeout=10).text)
        form = {"username": "ula", "password": "ula-pw", "csrf": field, "next": given}
        answer = http.post(f"{url}/signin", data=form, allow_redirects=False, timeout=10)
    assert answer.status_code == 303
    assert answer.headers["Location"] == location
    assert answer.cookies.get("token")


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("https://evil.example.org", 403),  # a sibling host that planted its own pair
        ("null", 403),
        ("http://localhost", 303),  # this host, whatever the port or scheme
        ("https://localhost:8443", 303),
        (None, 303),  # no Origin: the field decides
    ],
)
def test_a_planted_pair_posted_from_another_host_cannot_sign_in(app, tracker, origin, status):
    """Login CSRF: a sibling host plants its own anonymous nonce pair in a browser that
    holds none, then posts the sign-in form with the attacker's credentials. The field
    matches the planted cookie; the browser's Origin gives the other page away."""
    attacker = Client(app)
    field = csrf_of(attacker.get("/signin").get_data(as_text=True))
    planted = attacker.get_cookie("csrf").value
    victim = Client(app)
    victim.set_cookie("csrf", planted)
    headers = {} if origin is None else {"Origin": origin}
    form = {"username": "ula", "password": "ula-pw", "csrf": field}
    answer = victim.post("/signin", data=form, headers=headers)
    assert answer.status_code == status
    assert (victim.get_cookie("token") is not None) == (status == 303)


def test_a_form_posted_behind_a_proxy_names_the_public_host(app, tracker):
    """Behind a proxy that sends its own name as Host, X-Forwarded-Host is the host."""
    _publish(tracker, "/a.exr")
    b = Client(app)
    field = csrf_of(b.get("/signin").get_data(as_text=True))
    form = {"username": "ula", "password": "ula-pw", "csrf": field}
    headers = {"Origin": "https://tracker.example.org", "X-Forwarded-Host": "tracker.example.org"}
    assert b.post("/signin", data=form, headers=headers).status_code == 303
