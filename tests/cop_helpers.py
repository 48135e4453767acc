"""A bot's HTTP server with the common operating picture, and people who ask for links in a console room."""
from __future__ import annotations

import re
from contextlib import asynccontextmanager

from watchfloor.bot.web.health import bound_port, start_health
from tests.helpers import ConsoleUser, make_parts

LINK = re.compile(r"(https?://\S+/cop/login/[A-Za-z0-9_-]+)")
FEED = re.compile(r"(https?://\S+/cop/[A-Z]+/ops\.ics\?token=[A-Za-z0-9_-]+)")


@asynccontextmanager
async def cop_server(db_url: str, clock=None, base_url: str = "http://127.0.0.1", zones=("LALB",), agency=(),
                     **service):
    """Parts for the zones (LALB) and the server on a free port; `base` is where it answers (links carry
    `base_url`)."""
    parts = make_parts(db_url, clock, zone=[{"code": z} for z in zones], agency=list(agency),
                       service={"base_url": base_url, **service})
    runner = await start_health(parts, [], 0, host="127.0.0.1")
    try:
        yield parts, f"http://127.0.0.1:{bound_port(runner)}"
    finally:
        await runner.cleanup()
        parts.db.dispose()


def link_path(reply: str) -> str:
    """The path of the personal link in a `cop` reply (the test server's address differs from base_url)."""
    m = LINK.search(reply)
    assert m, reply
    return "/cop/" + m.group(1).split("/cop/", 1)[1]


def feed_path(reply: str) -> str:
    m = FEED.search(reply)
    assert m, reply
    return "/cop/" + m.group(1).split("/cop/", 1)[1]


def person(parts, name: str, agency: str | None, role: str | None = None, zone: str = "LALB") -> ConsoleUser:
    return ConsoleUser(parts, zone, name, agency, role)
