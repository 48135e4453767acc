"""The operating picture's guards (issue 28): each test here fails when the guard it names is taken out.

- a session opens the zone its link was for, no other (bot/web/cop.py:_viewer);
- an LES target never reaches an uncleared viewer, not even as a highlighted vessel (cop_feed.traffic);
- a conflict the viewer may not see adds nothing to the operations they see (cop_feed.conflicted_ops);
- a link is used once: the used-at check (storage/cop.py:redeem_link) and its conditional UPDATE's row count;
- `cop revoke` and the page's sign-out end open pages and their live stream at once;
- a console's link shows what the console shows (bot/web/cop.py:_who);
- every answer of the page server, errors included, carries the security headers, and an oversized request is
  one warning line, never a traceback.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from datetime import timedelta

import aiohttp
import pytest

from tests.cop_helpers import cop_server as _cop_server
from tests.cop_helpers import link_path, person

LES_OP = '!op log surveillance at=33.72,-118.22 start=+1h end=2h mark=LES note="tip from informant"'
SECURITY_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options")


def cop_server(db_url: str, clock=None, **service):
    return _cop_server(db_url, clock, **{"port": 8080, **service})


def jar() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def login(http: aiohttp.ClientSession, base: str, reply: str) -> None:
    async with http.get(base + link_path(reply)) as r:
        assert r.status == 200, await r.text()


async def test_a_session_opens_the_zone_of_its_link_and_no_other(sqlite_url, clock):
    async with cop_server(sqlite_url, clock, zones=("LALB", "NY")) as (parts, base):
        alice = person(parts, "alice", "CBP")
        nina = person(parts, "nina", "USCG", zone="NY")
        assert "OP-1" in nina.say("!op log patrol at=40.68,-74.05 start=+1h end=2h")
        async with jar() as http:
            await login(http, base, alice.say("!cop"))  # a link to LALB
            async with http.get(f"{base}/cop/LALB") as r:
                assert r.status == 200
            for path in ("/cop/NY", "/cop/NY/ops.geojson", "/cop/NY/traffic.geojson", "/cop/NY/panels",
                         "/cop/NY/events", "/cop/ny"):
                async with http.get(base + path) as r:
                    body = await r.text()
                    assert r.status == 401, (path, r.status)
                    assert "OP-1" not in body and "40.68" not in body


def _vessel(s, now, mmsi: str, name: str, lat: float, lon: float, minutes_ago: float, imo: str | None = None,
            track: list[tuple[float, float, float]] = ()):
    """A vessel heard `minutes_ago`, with positions (minutes ago, lat, lon) for its track."""
    from watchfloor.storage.vessel_tables import VesselPositionRow, VesselRow

    heard = now - timedelta(minutes=minutes_ago)
    s.add(VesselRow(mmsi=mmsi, imo=imo, name=name, lat=lat, lon=lon, sog=11.5, cog=305.0, destination="LONG BEACH",
                    ais_eta=now + timedelta(hours=2), position_at=heard, updated_at=heard))
    for ago, la, lo in track:
        s.add(VesselPositionRow(mmsi=mmsi, at=now - timedelta(minutes=ago), lat=la, lon=lo, sog=11.5, cog=305.0))


async def test_an_les_target_is_a_plain_vessel_to_an_uncleared_viewer_and_a_target_to_a_cleared_one(sqlite_url,
                                                                                                   clock):
    async with cop_server(sqlite_url, clock) as (parts, base):
        port, cbp = person(parts, "pete", "PORT"), person(parts, "carol", "CBP")
        with parts.db.session() as s:
            _vessel(s, clock.now, "538001111", "SEA WITNESS", 33.60, -118.30, 3, imo="9074729",
                    track=[(50, 33.50, -118.10), (25, 33.55, -118.20), (3, 33.60, -118.30)])
            _vessel(s, clock.now, "538002222", "PLAIN SAILOR", 33.62, -118.25, 4)
        reply = cbp.say('!target nominate IMO9074729 priority=high mark=LES reason="informant says drugs"')
        assert "TGT-1" in reply, reply
        seen = {}
        for who in (port, cbp):
            async with jar() as http:
                await login(http, base, who.say("!cop"))
                async with http.get(f"{base}/cop/LALB/traffic.geojson") as r:
                    seen[who.sender.agency] = (await r.text(), await r.json(content_type=None))
        raw, data = seen["PORT"]
        for leak in ("TGT", "LES", "target", "track", "informant", "high"):
            assert leak not in raw, leak
        ships = {f["properties"]["mmsi"]: f for f in data["features"]}
        assert set(ships) == {"538001111", "538002222"}
        witness, plain = ships["538001111"], ships["538002222"]
        # the targeted vessel reads exactly as any other vessel
        assert witness["properties"]["kind"] == plain["properties"]["kind"] == "vessel"
        assert witness["properties"].keys() == plain["properties"].keys() and witness.keys() == plain.keys()
        raw, data = seen["CBP"]
        kinds = {f["properties"]["id"]: f["properties"]["kind"] for f in data["features"]}
        assert kinds == {"TGT-1": "target", "TGT-1 track": "track", "MMSI 538002222": "vessel"}
        track = next(f for f in data["features"] if f["properties"]["kind"] == "track")
        assert track["geometry"]["coordinates"] == [[-118.1, 33.5], [-118.2, 33.55], [-118.3, 33.6]]


async def test_a_conflict_the_viewer_may_not_see_adds_nothing_to_the_operations_they_see(db_url, clock):
    async with cop_server(db_url, clock) as (parts, base):
        port, uscg = person(parts, "pete", "PORT"), person(parts, "ursula", "USCG")
        hsi = person(parts, "hank", "HSI")  # the console room is cleared for the last to join: HSI may log LES
        assert "OP-1" in uscg.say("!op log patrol at=33.72,-118.22 radius=1km start=+1h end=2h")
        raised = hsi.say(LES_OP)  # OP-2, LES, same place and time: a conflict, marked LES
        assert "OP-2" in raised and "CF-1" in raised, raised
        async with jar() as http:
            await login(http, base, port.say("!cop"))
            async with http.get(f"{base}/cop/LALB/ops.geojson") as r:
                raw = await r.text()
            async with http.get(f"{base}/cop/LALB/panels") as r:
                panels = await r.text()
        [op] = [f["properties"] for f in json.loads(raw)["features"] if f["properties"]["kind"] == "op"]
        assert op["id"] == "OP-1" and op["conflict"] is False and op["conflicts"] == []
        assert "CF-" not in raw and "CF-" not in panels and "conflict" not in panels.split("<tbody>")[1]


def test_a_used_link_says_it_was_used_even_once_its_ten_minutes_are_over(sqlite_url, clock):
    from watchfloor.storage import cop
    from tests.helpers import make_parts

    parts = make_parts(sqlite_url, clock, zone=[{"code": "LALB"}])
    with parts.db.session() as s:
        token = cop.issue(s, cop.LINK, "console:alice", "LALB", clock.now, "CBP", "FOUO LES UNCLASS")
    with parts.db.session() as s:
        assert cop.redeem_link(s, token, clock.now)[1] == "ok"
    clock.advance(minutes=11)
    with parts.db.session() as s:
        # "used" tells the person what happened; "expired" would suggest it could have worked
        assert cop.redeem_link(s, token, clock.now) == (None, "used")
    parts.db.dispose()


@pytest.mark.postgres
def test_two_openings_of_one_link_at_once_make_one_session_on_postgresql(pg_url, clock):
    """The second opening reads the link before the first commits (both see it unused); its conditional UPDATE
    then waits for the first's row lock and, once that commits, changes nothing: it must be refused."""
    from sqlmodel import Session

    from watchfloor.storage import cop
    from tests.helpers import make_parts

    parts = make_parts(pg_url, clock, zone=[{"code": "LALB"}])
    with parts.db.session() as s:
        token = cop.issue(s, cop.LINK, "console:alice", "LALB", clock.now)
    first = Session(parts.db.engine)
    try:
        assert cop.redeem_link(first, token, clock.now)[1] == "ok"  # holds the row, not committed yet
        second: dict = {}

        def open_again():
            with Session(parts.db.engine) as s:
                second["result"] = cop.redeem_link(s, token, clock.now)
                s.commit()

        racer = threading.Thread(target=open_again)
        racer.start()
        time.sleep(0.5)
        assert racer.is_alive()  # waiting on the first one's lock, having read the link as unused
        first.commit()
        racer.join(10)
        assert second["result"] == (None, "used")
    finally:
        first.close()
        parts.db.dispose()


async def _stream_ends(stream, within: float) -> float:
    t0 = time.monotonic()
    try:
        while await asyncio.wait_for(stream.content.readline(), within) != b"":
            pass
    except asyncio.TimeoutError:
        pytest.fail(f"the live stream was still open {time.monotonic() - t0:.1f} s after its session ended")
    return time.monotonic() - t0


async def test_cop_revoke_ends_the_persons_open_pages_and_live_stream_at_once(sqlite_url, clock):
    async with cop_server(sqlite_url, clock) as (parts, base):
        alice, bob = person(parts, "alice", "CBP"), person(parts, "bob", "USCG")
        async with jar() as http, jar() as other:
            await login(http, base, alice.say("!cop"))
            await login(other, base, bob.say("!cop"))
            async with http.get(f"{base}/cop/LALB/events") as stream:
                assert (await asyncio.wait_for(stream.content.readline(), 2)).startswith(b"retry")
                reply = alice.say("!cop revoke")
                assert reply.startswith("Ended: 1 open page (signed out now)"), reply
                took = await _stream_ends(stream, 3)
            assert took < 2.0, took  # well before the stream's own session check (every 5 s)
            for path in ("/cop/LALB", "/cop/LALB/ops.geojson", "/cop/LALB/panels", "/cop/LALB/events"):
                async with http.get(base + path) as r:
                    assert r.status == 401, path
            async with other.get(f"{base}/cop/LALB") as r:
                assert r.status == 200  # someone else's session goes on


async def test_sign_out_ends_the_session_its_stream_and_the_cookie(sqlite_url, clock):
    async with cop_server(sqlite_url, clock) as (parts, base):
        alice = person(parts, "alice", "CBP")
        async with jar() as http:
            await login(http, base, alice.say("!cop"))
            cookie = next(c.value for c in http.cookie_jar if c.key == "wf_cop")
            async with http.get(f"{base}/cop/LALB") as r:
                assert 'action="/cop/LALB/logout"' in await r.text()
            async with http.get(f"{base}/cop/LALB/events") as stream:
                assert (await asyncio.wait_for(stream.content.readline(), 2)).startswith(b"retry")
                async with http.post(f"{base}/cop/LALB/logout") as r:
                    assert r.status == 200 and "Signed out" in await r.text()
                    assert 'wf_cop=""' in r.headers["Set-Cookie"] and "Max-Age=0" in r.headers["Set-Cookie"]
                assert await _stream_ends(stream, 3) < 2.0
        async with aiohttp.ClientSession() as again:  # the old cookie, sent by hand, opens nothing any more
            async with again.get(f"{base}/cop/LALB", headers={"Cookie": f"wf_cop={cookie}"}) as r:
                assert r.status == 401
    with parts.db.session() as s:
        from sqlmodel import select

        from watchfloor.storage.tables import AuditRow

        assert [a.action for a in s.exec(select(AuditRow)).all() if a.action.startswith("cop.log")] == \
            ["cop.login", "cop.logout"]


async def test_a_consoles_link_shows_what_the_console_shows(sqlite_url, clock):
    """The console runs in a process of its own: the server's configuration does not know its sender."""
    from tests.helpers import make_parts

    # the console's own configuration clears HARBOR for LES; the server's (the one that counts) does not
    console = make_parts(sqlite_url, clock, zone=[{"code": "LALB"}],
                         agency=[{"code": "HARBOR", "clearance": ["UNCLASS", "FOUO", "LES"]}],
                         service={"base_url": "http://127.0.0.1", "port": 8080})
    cbp = person(console, "carol", "CBP")
    assert "OP-1" in cbp.say(LES_OP)
    assert "OP-2" in cbp.say('!op log patrol at=33.74,-118.26 start=+1h end=1h mark=FOUO')
    links = {"CBP": cbp.say("!cop"), "HARBOR": person(console, "hal", "HARBOR").say("!cop"),
             "NEWPD": person(console, "nick", "NEWPD").say("!cop")}
    console.db.dispose()
    async with cop_server(sqlite_url, clock, agency=[{"code": "HARBOR", "clearance": ["UNCLASS", "FOUO"]}]) as (parts,
                                                                                                          base):
        assert parts.directory.sender("console:carol").agency is None  # the server has never heard of carol
        shown = {}
        for agency, reply in links.items():
            async with jar() as http:
                await login(http, base, reply)
                async with http.get(f"{base}/cop/LALB/ops.geojson") as r:
                    shown[agency] = sorted(f["properties"]["id"] for f in (await r.json(content_type=None))["features"]
                                           if f["properties"]["kind"] == "op")
                async with http.get(f"{base}/cop/LALB") as r:
                    page = await r.text()
                    assert f"({agency})" in page
    # CBP's console sees LES; an agency the server clears without LES (whatever the console thought), and one
    # it has never heard of (the console gives those UNCLASS and FOUO), see the FOUO one only
    assert shown == {"CBP": ["OP-1", "OP-2"], "HARBOR": ["OP-2"], "NEWPD": ["OP-2"]}


async def test_every_answer_carries_the_security_headers_and_an_oversized_url_is_one_warning(sqlite_url, clock,
                                                                                            caplog):
    caplog.set_level(logging.DEBUG)
    async with cop_server(sqlite_url, clock) as (parts, base):
        alice = person(parts, "alice", "CBP")
        async with jar() as http:
            await login(http, base, alice.say("!cop"))
            async with http.get(f"{base}/cop/LALB") as r:
                normal = {h: r.headers[h] for h in SECURITY_HEADERS}
            answers = {}
            for what, path in (("404", "/cop/LALB/nothing/here"), ("404 static", "/cop/static/none.js"),
                               ("403", "/cop/static/"), ("405", "/cop/LALB/logout?x"),
                               ("414", "/cop/LALB/" + "x" * 100_000), ("401", "/cop/LALB/ops.ics")):
                async with aiohttp.ClientSession() as bare:
                    caplog.clear()
                    async with bare.get(base + path) as r:
                        await r.read()
                        answers[what] = r.status
                        for h in SECURITY_HEADERS:
                            assert r.headers.get(h) == normal[h], (what, h, r.headers.get(h))
                        assert r.headers.get("Cache-Control") == "no-store", what
                    records = [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
                    if what == "414":
                        assert len(records) == 1 and records[0].levelno == logging.WARNING, records
                        assert records[0].exc_info is None and "\n" not in records[0].getMessage()
                    else:
                        assert records == [], (what, records)
            assert answers == {"404": 404, "404 static": 404, "403": 403, "405": 405, "414": 414, "401": 401}
            # past what even the parser takes (1 MiB): aiohttp's own 400, logged as one warning line too
            caplog.clear()
            reader, writer = await asyncio.open_connection("127.0.0.1", int(base.rsplit(":", 1)[1]))
            writer.write(b"GET /cop/" + b"y" * (1100 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            assert status.split()[1] == b"400", status
            await asyncio.sleep(0.2)
            records = [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
            assert len(records) == 1 and records[0].levelno == logging.WARNING, records
            assert records[0].exc_info is None and "\n" not in records[0].getMessage()
