"""Which address the sign-in limits count: ``X-Forwarded-For`` only from trusted
proxies, right-most untrusted address; behind a proxy, one client cannot block the
others' sign-in."""

from __future__ import annotations

import pytest
import requests

from damas_core.http.clients import client_address, proxies
from damas_core.wsgi import make_app

TRUSTED = proxies("127.0.0.1, 10.0.0.0/8, fd00::/8")

CASES = [
    # (peer, X-Forwarded-For, client)
    ("127.0.0.1", None, "127.0.0.1"),  # a trusted proxy that says nothing: itself
    ("127.0.0.1", "198.51.100.7", "198.51.100.7"),
    ("127.0.0.1", "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # the left part is the client's
    ("127.0.0.1", "198.51.100.7, 10.1.2.3", "198.51.100.7"),  # through two proxies
    ("127.0.0.1", "10.0.0.2, 10.1.2.3", "10.0.0.2"),  # every hop trusted: the first
    ("127.0.0.1", "garbage", "garbage"),
    ("203.0.113.5", "198.51.100.7", "203.0.113.5"),  # not a proxy: its header is ignored
    ("fd00::1", "2001:db8::9", "2001:db8::9"),
    ("::ffff:10.0.0.1", "198.51.100.7", "198.51.100.7"),  # IPv4 mapped in IPv6
]


@pytest.mark.parametrize(("peer", "forwarded", "client"), CASES)
def test_client_address(peer, forwarded, client):
    environ = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        environ["HTTP_X_FORWARDED_FOR"] = forwarded
    assert client_address(environ, TRUSTED) == client
    assert client_address(environ, ()) == peer  # no trusted proxy: the peer, always


@pytest.mark.parametrize("spec", ["10.0.0.0/33", "nowhere", "10.0.0.1/8/8"])
def test_a_bad_proxy_is_named(spec):
    with pytest.raises(ValueError, match="trusted proxies"):
        proxies(spec)


def _wrong(url: str, client: str, name: str) -> int:
    form = {"username": name, "password": "wrong"}
    headers = {"X-Forwarded-For": client}
    return requests.post(f"{url}/api/signIn/", data=form, headers=headers, timeout=30).status_code


@pytest.mark.parametrize("trusted", [True, False])
def test_behind_a_proxy_one_client_does_not_block_the_others(memory_tracker, serve, trusted):
    app = make_app(
        memory_tracker,
        auth="jwt",
        sign_in_attempts=1,
        trusted_proxies="127.0.0.1" if trusted else None,
    )
    url = serve(app)
    # one client spends its address budget (4 attempts) on many usernames
    assert [_wrong(url, "198.51.100.1", f"u{i}") for i in range(5)] == [401] * 4 + [429]
    form = {"username": "ula", "password": "ula-pw"}
    headers = {"X-Forwarded-For": "198.51.100.2"}
    other = requests.post(f"{url}/api/signIn/", data=form, headers=headers, timeout=30)
    # through a trusted proxy the other client signs in; otherwise both are the proxy
    assert other.status_code == (200 if trusted else 429)
