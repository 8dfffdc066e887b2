"""The dashboard in a real browser: Playwright drives Debian's Chromium against the app
served by waitress on a loopback port, with sites made by real agents and rsync.

Set ``DAMAS_SCREENSHOTS=1`` to write the screenshots of docs/dashboard.md
(docs/images/dashboard-*.png).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest

import damas_core
from damas_core.http.server import create_server, stop_server
from damas_core.wsgi import make_app
from tests.http.conftest import add_users, serving
from tests.sync.conftest import Sites, needs_rsync

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS = "/shots/<img src=x onerror=alert(1)>.exr"
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"

pytestmark = [
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"no Chromium at {CHROMIUM} (make test and .ci/run install Debian's chromium)",
    ),
    needs_rsync,
]


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One browser for the whole run; each test gets its own context (cookies)."""
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def world(tmp_path) -> Iterator[SimpleNamespace]:
    """Three sites on one LMDB tracker, files at paris, copied to tokyo by real agents;
    lyon's agent has not run yet. The app is served on a loopback port."""
    tracker = damas_core.open(f"lmdb://{tmp_path}/store")
    add_users(tracker)
    sites = Sites(tmp_path, tracker, walker="scandir")
    tracker.update({"_id": "vol_paris", "enableEmission": False})  # lyon waits for its agent
    for name, data in (("/shots/a.exr", "frame a"), ("/shots/b.exr", "frame b" * 100),
                       ("/plates/c.exr", "c"), (XSS, "x")):  # fmt: skip
        sites.write("paris", name, data)
    sites.run("paris", "tokyo")
    with serving(make_app(tracker, auth="jwt")) as url:
        yield SimpleNamespace(url=url, tracker=tracker, sites=sites)
    tracker.close()


@pytest.fixture
def tab(chromium) -> Iterator[Any]:
    """A page at 1280×800 in a fresh context; ``tab.dialogs`` records every dialog."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15000)
    dialogs: list[str] = []

    def dismiss(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.dialogs = dialogs
    yield page
    context.close()


def sign_in(page: Any, url: str, name: str, target: str = "/") -> None:
    page.goto(url + target)
    assert "/signin" in page.url
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", f"{name}-pw")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(url + target) + "$"))


def cell(page: Any, file_id: str, site: str) -> Any:
    return page.locator(f'td.cell[data-file="{file_id}"][data-site="{site}"]')


def shot(page: Any, name: str) -> None:
    if os.environ.get("DAMAS_SCREENSHOTS"):
        IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(IMAGES / f"dashboard-{name}.png"))


def test_sign_in_search_and_the_matrix_of_three_sites(world, tab):
    from playwright.sync_api import expect

    sign_in(tab, world.url, "ula")
    expect(tab.locator("h1")).to_have_text("Files")
    for file_id in ("/shots/a.exr", "/shots/b.exr", "/plates/c.exr", XSS):
        assert cell(tab, file_id, "paris").get_attribute("data-state") == "ok"
        assert cell(tab, file_id, "tokyo").get_attribute("data-state") == "ok"
        assert cell(tab, file_id, "lyon").get_attribute("data-state") == "queued"
    assert cell(tab, "/shots/a.exr", "lyon").inner_text() == "↻ queued"  # an icon and a word
    # the hostile name is text: no image made, no script run
    expect(tab.get_by_role("link", name=XSS)).to_be_visible()
    assert tab.evaluate("document.querySelectorAll('main img').length") == 0
    expect(tab.locator("#live")).to_have_text("live: on")
    shot(tab, "files")
    # search with the keyboard
    tab.focus("#q")
    tab.keyboard.type("file_size>100")
    tab.keyboard.press("Enter")
    tab.wait_for_url(re.compile(r"q=file_size"))
    assert tab.locator("tbody tr[data-file]").count() == 1
    assert tab.locator("tbody tr[data-file]").get_attribute("data-file") == "/shots/b.exr"
    tab.fill("#q", 'origin:"paris')
    tab.click("form.search button")
    expect(tab.locator("#q-error")).to_contain_text("unterminated quoted string at position 7")
    expect(tab.locator("#q-error mark")).to_have_text('"')
    assert tab.dialogs == []
    assert tab.evaluate("document.documentElement.scrollWidth") <= 1280


def test_a_cell_turns_from_blue_to_green_without_a_reload(world, tab):
    from playwright.sync_api import expect

    sign_in(tab, world.url, "ula")
    lyon = cell(tab, "/shots/a.exr", "lyon")
    expect(lyon).to_have_attribute("data-state", "queued")
    blue = lyon.evaluate("td => getComputedStyle(td).backgroundColor")
    expect(tab.locator("#live")).to_have_text("live: on")
    tab.evaluate("window.notReloaded = true")
    world.sites.run("lyon")
    expect(lyon).to_have_attribute("data-state", "ok", timeout=20000)
    expect(lyon).to_contain_text("ok")
    green = lyon.evaluate("td => getComputedStyle(td).backgroundColor")
    assert (blue, green) == ("rgb(221, 233, 251)", "rgb(223, 243, 227)")
    assert tab.evaluate("window.notReloaded") is True
    expect(cell(tab, XSS, "lyon")).to_have_attribute("data-state", "ok")
    assert tab.dialogs == []


def test_a_cell_shows_transferring_while_its_copy_runs_then_ok(world, tab, tmp_path):
    """lyon's rsync waits for the test's word: the cell is seen transferring for as long
    as the test looks, then turns ok once the copy is recorded; no reload, no sleep."""
    from playwright.sync_api import expect

    from tests.sync.gate import GatedRsync

    sign_in(tab, world.url, "ula")
    lyon = cell(tab, "/shots/a.exr", "lyon")
    expect(lyon).to_have_text("↻ queued")
    expect(tab.locator("#live")).to_have_text("live: on")
    tab.evaluate("window.notReloaded = true")
    gate = GatedRsync(tmp_path)
    agent = world.sites.agent("lyon", rsync=str(gate.program))
    copying = threading.Thread(target=agent.run_once, daemon=True)
    copying.start()
    try:
        gate.wait_started()
        assert "/shots/a.exr" in world.tracker.read("vol_lyon")["transferring"]["ids"]
        expect(lyon).to_have_attribute("data-detail", "transferring", timeout=20000)
        expect(lyon).to_have_attribute("data-state", "queued")  # the state hook's promise
        expect(lyon).to_have_text("⇄ transferring")
        colour = lyon.evaluate("td => getComputedStyle(td).backgroundColor")
        assert colour == "rgb(221, 233, 251)"  # queued's blue
        assert cell(tab, "/shots/a.exr", "tokyo").get_attribute("data-detail") is None
    finally:
        gate.open()
        copying.join(60)
    expect(lyon).to_have_attribute("data-state", "ok", timeout=20000)
    expect(lyon).not_to_have_attribute("data-detail", "transferring")
    expect(lyon).to_have_text("✔ ok")
    assert tab.evaluate("window.notReloaded") is True
    assert tab.dialogs == []


def test_lock_unlock_and_comment_from_the_file_page(world, tab):
    from playwright.sync_api import expect

    sign_in(tab, world.url, "ula")
    tab.get_by_role("link", name="/shots/a.exr").click()
    expect(tab.locator("h1")).to_have_text("/shots/a.exr")
    tab.click("#lock-button")
    expect(tab.locator("#lock")).to_have_text("🔒 locked by ula")
    assert world.tracker.read("/shots/a.exr")["lock"] == "ula"
    tab.click("#unlock")
    expect(tab.locator("#lock")).to_have_text("not locked")
    tab.fill("#comment", "colour is off in <b>shot</b> 12")
    tab.click("form.comment button")
    latest = tab.locator("#comments li").last
    expect(latest).to_contain_text("colour is off in <b>shot</b> 12")
    expect(latest).to_contain_text("ula")
    shot(tab, "file")
    tab.evaluate("window.notReloaded = true")
    world.tracker.as_user("eddie").lock("/shots/a.exr")  # someone else, elsewhere
    expect(tab.locator("#lock")).to_have_text("🔒 locked by eddie")
    expect(tab.locator("#unlock")).to_have_count(0)  # only its holder (or an admin) unlocks
    assert tab.evaluate("window.notReloaded") is True


def test_a_guest_sees_no_write_control_and_is_refused_when_forcing_one(world, tab):
    from playwright.sync_api import expect

    sign_in(tab, world.url, "gus", f"/file?id={quote('/shots/a.exr', safe='')}")
    expect(tab.locator("h1")).to_have_text("/shots/a.exr")
    for control in ("#lock-button", "#unlock", "#comment", "#priority", "form.edit"):
        assert tab.locator(control).count() == 0, control
    csrf = tab.locator("input[name=csrf]").first.get_attribute("value")  # the sign-out form's
    forced = tab.request.post(
        world.url + "/file", form={"csrf": csrf, "id": "/shots/a.exr", "action": "lock"}
    )
    assert forced.status == 403
    api = tab.request.put(
        world.url + "/api/lock/",
        data='"/shots/a.exr"',
        headers={"Content-Type": "application/json"},
    )
    assert api.status == 403
    assert "lock" not in world.tracker.read("/shots/a.exr")


def test_sites_and_folders_for_an_admin_and_at_phone_width(world, tab):
    from playwright.sync_api import expect

    sign_in(tab, world.url, "ada", "/sites")
    for name in ("paris", "tokyo"):
        state = tab.locator(f'section.site[data-site="{name}"] [data-agent]')
        assert state.get_attribute("data-agent") in ("idle", "on", "stopped")
    expect(tab.locator('section.site[data-site="lyon"] [data-agent]')).to_have_attribute(
        "data-agent", "down"
    )
    expect(tab.locator('#completion tr[data-site="lyon"]')).to_contain_text("0/4")
    expect(tab.locator('#completion tr[data-site="tokyo"]')).to_contain_text("4/4")
    expect(tab.locator("form.edit")).to_have_count(3)
    shot(tab, "sites")
    tab.goto(world.url + "/folders?prefix=%2F")
    expect(tab.get_by_role("link", name="/shots/")).to_be_visible()
    shot(tab, "folders")
    tab.set_viewport_size({"width": 390, "height": 844})
    tab.goto(world.url + "/")
    expect(cell(tab, "/shots/a.exr", "tokyo")).to_have_attribute("data-state", "ok")
    assert tab.evaluate("document.documentElement.scrollWidth") <= 390  # the table scrolls
    shot(tab, "phone")


def test_site_counts_and_agent_states_update_without_a_reload(world, tab):
    from playwright.sync_api import expect

    sign_in(tab, world.url, "ada", "/sites")
    lyon = tab.locator('#completion tr[data-site="lyon"]')
    expect(lyon).to_contain_text("0/4")
    expect(tab.locator("#live")).to_have_text("live: on")
    tab.evaluate("window.notReloaded = true")
    world.sites.run("lyon")
    expect(tab.locator('#completion tr[data-site="lyon"]')).to_contain_text("4/4", timeout=20000)
    agent = tab.locator('section.site[data-site="lyon"] [data-agent]')
    expect(agent).not_to_have_attribute("data-agent", "down")
    assert tab.evaluate("window.notReloaded") is True


class Restartable:
    """waitress serving ``app`` on one loopback port, that can be stopped (every open
    connection closed) and started again on the same port, as a restarted server is."""

    def __init__(self, app: Any) -> None:
        self.app, self.port = app, 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = create_server(self.app, host="127.0.0.1", port=self.port, threads=4)
        self.port = self.server.effective_port
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self.server.asyncore.loop(timeout=0.05, map=self.server._map, count=1)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        stop_server(self.server)


def test_after_a_disconnect_the_feed_resumes_from_the_last_event(world, tab):
    from playwright.sync_api import expect

    app = make_app(world.tracker, auth="jwt")
    asked: list[str | None] = []  # the Last-Event-ID of each request for the feed

    def recording(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"].startswith("/api/events/"):
            asked.append(environ.get("HTTP_LAST_EVENT_ID"))
        return app(environ, start_response)

    server = Restartable(recording)
    try:
        sign_in(tab, server.url, "ula")
        expect(tab.locator("#live")).to_have_text("live: on")
        world.tracker.update({"_id": "/plates/c.exr", "note": "an event before the cut"})
        tab.wait_for_function("document.body.dataset.seq !== undefined")
        seen = tab.evaluate("document.body.dataset.seq")
        server.stop()
        expect(tab.locator("#live")).to_have_text("live: reconnecting")
        world.sites.run("lyon")  # delivered while the server is down
        server.start()
        lyon = cell(tab, "/shots/a.exr", "lyon")
        expect(lyon).to_have_attribute("data-state", "ok", timeout=20000)
        assert seen in asked  # the browser asked for what came after the last event it had
    finally:
        server.stop()


def test_an_empty_trackers_first_page_says_what_to_do_next(tmp_path, tab):
    tracker = damas_core.open(f"lmdb://{tmp_path}/empty")
    add_users(tracker)
    try:
        with serving(make_app(tracker, auth="jwt")) as url:
            sign_in(tab, url, "ada")
            steps = tab.locator("#first-steps")
            assert steps.is_visible()
            text = steps.inner_text()
            assert f"damas -s {url} volume add vol_paris paris file:///srv/paris/" in text
            assert f"damas sync agent vol_paris --server {url}" in text
            assert "publish" in text and not tab.dialogs
            shot(tab, "first-page")
    finally:
        tracker.close()
