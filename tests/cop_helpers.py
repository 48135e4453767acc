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


def seed_traffic(parts, zone: str, n: int, now, seed: int = 24, minutes_ago: tuple[float, float] = (0.5, 25)):
    """`n` vessels heard between `minutes_ago` before `now`, scattered over the zone's approach area (50 nm), with
    names, speeds, courses, destinations and ETAs as AIS gives them."""
    import math
    import random
    from datetime import timedelta

    from watchfloor.ioc.zones import get_zone
    from watchfloor.storage.vessel_tables import VesselRow

    rnd, z = random.Random(seed), get_zone(zone)
    with parts.db.session() as s:
        for i in range(n):
            bearing, dist_nm = rnd.uniform(0, 2 * math.pi), 48 * math.sqrt(rnd.random())
            lat = z.lat + dist_nm / 60 * math.cos(bearing)
            lon = z.lon + dist_nm / 60 * math.sin(bearing) / math.cos(math.radians(z.lat))
            heard = now - timedelta(minutes=rnd.uniform(*minutes_ago))
            s.add(VesselRow(mmsi=str(366_000_000 + seed * 10_000 + i), name=f"VESSEL {seed}-{i}", lat=lat, lon=lon,
                            sog=round(rnd.uniform(0, 18), 1), cog=round(rnd.uniform(0, 359), 1),
                            destination=rnd.choice(["LONG BEACH", "LOS ANGELES", "NEW YORK", "NEWARK", ""]),
                            ais_eta=now + timedelta(hours=rnd.uniform(1, 30)), position_at=heard, updated_at=heard))

