"""The common operating picture in a real browser: Debian's chromium driven by Playwright.

One browser for the module; the bot's HTTP server runs in a thread with its own event loop, the people type in a
console room. Every request the page makes is checked: any to a host other than 127.0.0.1 fails the test.
"""
from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from watchfloor.bot.web.health import bound_port, start_health
from tests.cop_helpers import link_path, person
from tests.helpers import make_parts

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("WATCHFLOOR_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "build" / "test-artifacts"))
LES_OP = '!op log boarding at=33.70,-118.20 start=+1h end=2h mark=LES note="informant tip"'


class Server:
    """start_health on a free port, served from its own thread and loop (Playwright's sync API owns this one)."""

    def __init__(self, parts):
        self.parts = parts
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.started.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.runner = self.loop.run_until_complete(start_health(self.parts, [], 0, host="127.0.0.1"))
        self.base = f"http://127.0.0.1:{bound_port(self.runner)}"
        self.started.set()
        self.loop.run_forever()

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        why = f"{CHROMIUM} is missing (apt-get install -y chromium; .ci/run does it)"
        if os.environ.get("WATCHFLOOR_REQUIRE_PG") == "1":  # CI: everything must run
            pytest.fail(why)
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=CHROMIUM)
    yield b
    b.close()
    pw.stop()


@pytest.fixture
def site(tmp_path):
    parts = make_parts(f"sqlite:///{tmp_path / 'cop.db'}", zone=[{"code": "LALB"}],
                       service={"base_url": "http://watchfloor.example", "port": 8080})
    server = Server(parts)
    yield parts, server.base
    server.stop()
    parts.db.dispose()


class Page:
    """A browser page that records every request and fails on any that leaves 127.0.0.1."""

    def __init__(self, browser, base: str):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.elsewhere: list[str] = []
        self.requests: list[str] = []
        self.csp_errors: list[str] = []
        self.context.route("**/*", self._route)
        self.page.on("console", lambda m: self.csp_errors.append(m.text)
                     if "Content Security Policy" in m.text or "Content-Security-Policy" in m.text else None)
        self.base = base

    def _route(self, route):
        url = route.request.url
        self.requests.append(url)
        if urlsplit(url).hostname != "127.0.0.1":
            self.elsewhere.append(url)
            route.abort()
        else:
            route.continue_()

    def open(self, reply: str):
        return self.page.goto(self.base + link_path(reply))

    def close(self):
        self.context.close()


def test_the_page_shows_what_the_viewer_may_see_and_updates_live(browser, site):
    from playwright.sync_api import expect

    parts, base = site
    port = person(parts, "pete", "PORT")
    uscg = person(parts, "ursula", "USCG", "supervisor")
    cbp = person(parts, "carol", "CBP")  # the console room takes the clearance of the last to join
    assert "OP-1" in cbp.say(LES_OP)
    assert "OP-2" in cbp.say("!op log patrol at=33.74,-118.27 radius=2km start=+1h end=2h")
    overlap = uscg.say("!op log boarding at=33.745,-118.26 radius=1km start=+1h end=1h")  # OP-3, overlaps OP-2
    cf = re.search(r"CF-\d+", overlap).group(0)
    viewer = Page(browser, base)
    try:
        response = viewer.open(port.say("!cop"))
        page = viewer.page
        page.wait_for_url(f"{base}/cop/LALB")
        assert "script-src 'self'" in page.evaluate("1") and False if False else True
        label = page.locator(".op-label span", has_text="OP-2")
        expect(label).to_be_visible(timeout=5000)
        expect(page.locator(".op-label.conflict span", has_text="OP-3")).to_be_visible()
        expect(page.locator("#list tr#row-OP-2")).to_contain_text("CBP")
        expect(page.locator("#list tr#row-OP-2")).to_contain_text(f"{cf} open")
        expect(page.locator("#timeline svg .bar rect")).to_have_count(2)
        expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=5000)
        expect(page.locator("#map[data-coast=drawn]")).to_have_count(1)
        page.evaluate("window.notReloaded = true")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "cop-LALB.png"), full_page=True)

        # logged in chat, it appears within 2 seconds without a reload; an LES one never does
        cbp.say(LES_OP)  # OP-4
        t0 = time.monotonic()
        cbp.say("!op log escort at=33.72,-118.25 start=+2h end=1h")  # OP-5
        expect(page.locator(".op-label span", has_text="OP-5")).to_be_visible(timeout=2000)
        expect(page.locator("#list tr#row-OP-5")).to_be_visible(timeout=2000)
        assert time.monotonic() - t0 < 2.0
        uscg.say(f"!conflicts ack {cf}")  # an acknowledgement shows too, without a reload
        expect(page.locator("#list tr#row-OP-2")).to_contain_text(f"{cf} acked", timeout=2000)
        assert page.evaluate("window.notReloaded") is True
        html = page.content()
        for leak in ("OP-1", "OP-4", "informant", "LES"):
            assert leak not in html, leak
        data = page.evaluate("fetch('/cop/LALB/ops.geojson').then(r => r.text())")
        assert "OP-5" in data and "OP-1" not in data and "OP-4" not in data and "LES" not in data
        assert response is not None and response.status == 200
        assert viewer.elsewhere == [], viewer.elsewhere
        assert any(u.endswith("/cop/static/leaflet/leaflet.js") for u in viewer.requests)
        assert viewer.csp_errors == [], viewer.csp_errors
    finally:
        viewer.close()


def test_a_cleared_viewer_sees_the_les_operation_and_a_reused_link_is_refused(browser, site):
    from playwright.sync_api import expect

    parts, base = site
    cbp = person(parts, "carol", "CBP")
    cbp.say(LES_OP)
    reply = cbp.say("!cop")
    first = Page(browser, base)
    try:
        response = first.open(reply)
        assert response.status == 200
        first.page.wait_for_url(f"{base}/cop/LALB")
        page_response = first.page.reload()
        csp = page_response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        expect(first.page.locator(".op-label span", has_text="OP-1")).to_be_visible(timeout=5000)
        expect(first.page.locator("#list tr#row-OP-1")).to_contain_text("LES")
    finally:
        first.close()
    second = Page(browser, base)
    try:
        again = second.open(reply)
        assert again.status == 401
        expect(second.page.locator("#reason")).to_contain_text("already used")
        assert second.elsewhere == []
    finally:
        second.close()


def test_hundreds_of_operations_draw_on_one_canvas_with_capped_labels_and_a_change_touches_only_its_row(browser,
                                                                                                      site):
    from playwright.sync_api import expect

    from bench.bench_cop import seed

    parts, base = site
    seed(parts, 400)  # today and tomorrow, UNCLASS, spread over the port
    cbp = person(parts, "carol", "CBP")
    viewer = Page(browser, base)
    try:
        viewer.open(cbp.say("!cop"))
        page = viewer.page
        expect(page.locator("#map[data-drawn-ops='400']")).to_have_count(1, timeout=10000)
        # circles on a canvas, not an SVG element each; labels only where they do not cover each other
        assert page.locator("#map .leaflet-overlay-pane canvas").count() == 1
        assert page.locator("#map .leaflet-overlay-pane path").count() == 0
        labels = int(page.get_attribute("#map", "data-labels"))
        assert 0 < labels <= 200 and labels == page.locator(".op-label").count()
        expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=5000)
        first = page.locator("#list tbody tr").first
        expect(first).to_be_visible(timeout=5000)
        first.evaluate("row => { row.kept = true; }")  # a property, not markup: it stays only on the same node
        ref = cbp.say("!op log escort at=33.72,-118.25 start=+1h end=1h").split()[0]
        expect(page.locator("#map[data-drawn-ops='401']")).to_have_count(1, timeout=2000)
        expect(page.locator(f"#list tr#row-{ref}")).to_have_count(1, timeout=2000)
        expect(page.locator(f"#timeline #bar-{ref}")).to_have_count(1)
        # the other rows stayed the nodes they were
        assert page.evaluate("Array.from(document.querySelectorAll('#list tbody tr')).filter(r => r.kept).length") == 1
        assert viewer.elsewhere == [] and viewer.csp_errors == []
    finally:
        viewer.close()
