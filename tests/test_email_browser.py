"""A briefing e-mail as a reader sees it: its HTML part opened in Chromium (Playwright), the inline picture resolved
from its Content-ID as a mail client does. Leaves build/test-artifacts/briefing.eml (the message as the relay got
it) and briefing-email.png / briefing-email-phone.png (screenshots)."""
from __future__ import annotations

import asyncio
import base64
from concurrent.futures import ThreadPoolExecutor

from tests.fixtures.smtp import smtp_cert, smtp_server  # noqa: F401  (fixtures)
from tests.helpers import make_parts
from tests.test_cop_browser import ARTIFACTS, browser  # noqa: F401  (fixture)
from tests.test_email import PORTPD, config, deliver, the_day
from watchfloor.bot.email.adapter import EmailAdapter
from watchfloor.bot.scheduler import JobScheduler


def test_briefing_email_reads_well_in_a_browser(sqlite_url, clock, smtp_server, browser):
    parts = make_parts(sqlite_url, clock, **config(smtp_server))
    the_day(parts)
    JobScheduler(parts, clock).post_briefing("LALB", clock.now)
    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, deliver(parts, EmailAdapter(parts.settings.email))).result(60)
    [received] = smtp_server.to(PORTPD)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "briefing.eml").write_bytes(received.raw)

    msg = received.message
    html = msg.get_body(("html",)).get_content()
    [picture] = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    cid = picture["Content-ID"].strip("<>")
    html = html.replace(f"cid:{cid}", "data:image/png;base64," + base64.b64encode(picture.get_content()).decode())

    page = browser.new_page(viewport={"width": 900, "height": 900})
    try:
        page.set_content(html)
        img = page.locator("img")
        assert img.evaluate("i => i.complete && i.naturalWidth > 0")  # the picture is there, inline
        banners = page.locator("[role=banner], [role=contentinfo]")
        assert banners.all_inner_texts() == ["UNCLASSIFIED//FOR OFFICIAL USE ONLY"] * 2
        assert page.title() == "[FOUO] LALB briefing Tue 01 Dec"
        assert page.get_by_text("Today's operations").is_visible()
        page.screenshot(path=str(ARTIFACTS / "briefing-email.png"), full_page=True)

        page.set_viewport_size({"width": 390, "height": 844})  # a phone's mail app
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
        assert img.evaluate("i => i.getBoundingClientRect().right <= window.innerWidth")
        page.screenshot(path=str(ARTIFACTS / "briefing-email-phone.png"), full_page=True)
    finally:
        page.close()
        parts.db.dispose()
