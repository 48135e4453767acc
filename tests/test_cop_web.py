"""The common operating picture over HTTP: links, sessions, the marking rule in the data, the feeds."""
from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import aiohttp
import pytest
from icalendar import Calendar

from tests.cop_helpers import cop_server as _cop_server
from tests.cop_helpers import feed_path, link_path, person

LES_OP = "!op log boarding at=33.70,-118.20 start=+1h end=2h mark=LES note=\"tip from informant\""
PLAIN_OP = "!op log patrol at=33.74,-118.27 start=+1h end=2h contact=\"A&B <desk>\""


def cop_server(db_url: str, clock=None, **service):
    """The test server binds a free port; `[service] port` is what `cop` checks before giving a link."""
    return _cop_server(db_url, clock, **{"port": 8080, **service})


async def _login(http: aiohttp.ClientSession, base: str, path: str) -> aiohttp.ClientResponse:
    async with http.get(base + path, allow_redirects=False) as r:
        await r.read()
        return r


async def test_cop_link_answers_the_sender_alone_opens_a_session_once_and_is_audited(db_url, clock):
    async with cop_server(db_url, clock, base_url="https://cop.example") as (parts, base):
        alice = person(parts, "alice", "CBP")
        handled = parts.engine.handle(__import__("watchfloor.commands.message", fromlist=["ChatMessage"]).ChatMessage(
            platform="console", room=alice.room.id, sender=alice.sender.id, text="!cop", event_id="cop-1",
            sender_name="alice"))
        payload = json.loads(handled.rows[0].payload)
        assert payload["ephemeral"] is True and payload["user"] == alice.sender.id
        path = link_path(payload["text"])
        assert payload["text"].count("https://cop.example/cop/login/") == 1
        token = path.rsplit("/", 1)[1]
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(f"{base}/cop/LALB") as r:
                assert r.status == 401 and "no session" in await r.text()
            r = await _login(http, base, path)
            assert r.status == 200
            cookie = r.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
            assert "Max-Age=43200" in cookie and "Path=/cop/" in cookie
            assert token not in cookie
            again = await _login(http, base, path)
            assert again.status == 401
        async with aiohttp.ClientSession() as other:
            async with other.get(base + path) as r:
                assert r.status == 401 and "already used" in await r.text()
    with parts.db.session() as s:
        from sqlmodel import select

        from watchfloor.storage.cop_tables import CopTokenRow
        from watchfloor.storage.tables import AuditRow

        logins = s.exec(select(AuditRow).where(AuditRow.action == "cop.login")).all()
        assert [(a.actor, a.zone_code, a.agency_code) for a in logins] == [("console:alice", "LALB", "CBP")]
        stored = [r.token_hash for r in s.exec(select(CopTokenRow)).all()]
        assert token not in stored and len(stored) == 2 and all(len(h) == 64 for h in stored)
        assert all(token not in a.detail and token not in (a.command or "") for a in s.exec(select(AuditRow)).all())


async def test_a_link_expires_after_ten_minutes_and_says_so(sqlite_url, clock):
    async with cop_server(sqlite_url, clock) as (parts, base):
        alice = person(parts, "alice", "CBP")
        path = link_path(alice.say("!cop"))
        clock.advance(minutes=10, seconds=1)
        async with aiohttp.ClientSession() as http:
            async with http.get(base + path) as r:
                assert r.status == 401 and "expired" in await r.text()
            async with http.get(base + "/cop/login/not-a-token") as r:
                assert r.status == 401 and "not valid" in await r.text()


async def test_a_session_ends_after_twelve_hours_and_secure_is_off_for_http(sqlite_url, clock):
    async with cop_server(sqlite_url, clock, base_url="http://watchfloor.lan:8080") as (parts, base):
        alice = person(parts, "alice", "CBP")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            r = await _login(http, base, link_path(alice.say("!cop")))
            assert "Secure" not in r.headers["Set-Cookie"]
            async with http.get(f"{base}/cop/LALB") as page:
                assert page.status == 200
                csp = page.headers["Content-Security-Policy"]
                assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
            async with http.get(f"{base}/cop/NYC") as other_zone:
                assert other_zone.status == 401
            clock.advance(hours=12, seconds=1)
            async with http.get(f"{base}/cop/LALB") as page:
                assert page.status == 401
            async with http.get(f"{base}/cop/LALB/ops.geojson") as data:
                assert data.status == 401 and "features" not in await data.text()


async def test_geojson_is_lon_lat_polygons_and_leaves_out_what_the_viewer_may_not_see(db_url, clock):
    async with cop_server(db_url, clock) as (parts, base):
        # the console room takes the clearance of the last one to join: CBP, so the LES op can be logged
        port, cbp = person(parts, "pete", "PORT"), person(parts, "carol", "CBP")
        assert "OP-1" in cbp.say(LES_OP) and "OP-2" in cbp.say(PLAIN_OP)
        for viewer, expected in ((port, ["OP-2"]), (cbp, ["OP-1", "OP-2"])):
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                await _login(http, base, link_path(viewer.say("!cop")))
                async with http.get(f"{base}/cop/LALB/ops.geojson") as r:
                    assert r.headers["Content-Type"].startswith("application/geo+json")
                    raw = await r.text()
                async with http.get(f"{base}/cop/LALB") as page:
                    html = await page.text()
                async with http.get(f"{base}/cop/LALB/panels") as panels:
                    html += await panels.text()
            data = json.loads(raw)
            ops = [f for f in data["features"] if f["properties"]["kind"] == "op"]
            assert [f["properties"]["id"] for f in ops] == expected
            plain = next(f for f in ops if f["properties"]["id"] == "OP-2")
            ring = plain["geometry"]["coordinates"][0]
            assert plain["geometry"]["type"] == "Polygon" and ring[0] == ring[-1]
            shoelace = sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(ring, ring[1:]))
            assert shoelace > 0  # RFC 7946: exterior rings counter-clockwise
            assert all(-118.3 < lon < -118.2 and 33.7 < lat < 33.8 for lon, lat in ring)  # [lon, lat]
            assert plain["properties"]["center"] == [-118.27, 33.74]
            assert {"agency", "start", "end", "marking"} <= plain["properties"].keys()
            if viewer is port:
                for leak in ("OP-1", "LES", "informant", "33.7,", "-118.2,"):
                    assert leak not in raw, leak
                assert "OP-1" not in html and "LES" not in html and "informant" not in html
                assert "Operations in the watch (1)" in html
            else:
                assert "OP-1" in html and "Operations in the watch (2)" in html


async def test_calendar_feed_keeps_uids_raises_sequence_marks_cancelled_and_answers_304(sqlite_url, clock):
    async with cop_server(sqlite_url, clock) as (parts, base):
        # the console room takes the clearance of the last one to join: CBP, so the LES op can be logged
        port, cbp = person(parts, "pete", "PORT"), person(parts, "carol", "CBP")
        cbp.say(PLAIN_OP)
        cbp.say(LES_OP)
        feed = feed_path(port.say("!cop calendar"))
        async with aiohttp.ClientSession() as http:
            async with http.get(base + feed) as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/calendar")
                first, etag = await r.read(), r.headers["ETag"]
            async with http.get(base + feed, headers={"If-None-Match": etag}) as r:
                assert r.status == 304 and await r.read() == b""
            events = [e for e in Calendar.from_ical(first).walk("VEVENT")]
            assert [str(e["summary"]) for e in events] == ["OP-1 patrol (CBP)"]  # the LES one is left out
            assert b"informant" not in first and b"OP-2" not in first
            assert "Contact: A&B <desk>" in str(events[0]["description"])  # plain text, not HTML-escaped
            uid = str(events[0]["uid"])
            assert int(events[0]["sequence"]) == 0 and events[0]["dtstart"].dt.utcoffset() == timedelta(0)
            clock.advance(minutes=5)
            cbp.say("!op update OP-1 end=3h")
            async with http.get(base + feed, headers={"If-None-Match": etag}) as r:
                assert r.status == 200 and r.headers["ETag"] != etag
                updated = Calendar.from_ical(await r.read()).walk("VEVENT")[0]
            assert (str(updated["uid"]), int(updated["sequence"])) == (uid, 1)
            cbp.say('!op cancel OP-1 reason="weather"')
            async with http.get(base + feed) as r:
                cancelled = Calendar.from_ical(await r.read()).walk("VEVENT")[0]
            assert (str(cancelled["uid"]), int(cancelled["sequence"]), str(cancelled["status"])) == (uid, 2, "CANCELLED")
            assert port.say("!cop revoke").startswith("Ended: 1 calendar feed.")
            async with http.get(base + feed) as r:
                assert r.status == 401 and "BEGIN:VCALENDAR" not in await r.text()


@pytest.mark.parametrize("service, missing", [({}, "port and base_url"),
                                              ({"base_url": "https://cop.example"}, "port"),
                                              ({"port": 8080}, "base_url")])
def test_cop_where_the_picture_is_not_served_says_why_in_one_line_and_stores_nothing(sqlite_url, clock, service,
                                                                                      missing):
    from sqlmodel import select

    from watchfloor.config import config_warnings
    from watchfloor.storage.cop_tables import CopTokenRow
    from watchfloor.storage.tables import AuditRow
    from tests.helpers import make_parts

    parts = make_parts(sqlite_url, clock, zone=[{"code": "LALB"}], service=service)
    alice = person(parts, "alice", "CBP")
    for command in ("!cop", "!cop calendar"):
        reply = alice.say(command)
        assert reply.count("\n") == 0 and reply.endswith(f"set [service] {missing}"), reply
        assert "/cop/" not in reply
    with parts.db.session() as s:
        assert s.exec(select(CopTokenRow)).all() == []
        assert [a.action for a in s.exec(select(AuditRow)).all() if a.action.startswith("cop.")] == []
    # `config check` says so too when the picture is configured without a port to serve it on
    warned = [w for w in config_warnings(parts.settings) if w.startswith("service.port")]
    assert len(warned) == (1 if "base_url" in service else 0), warned
    parts.db.dispose()


async def test_the_event_stream_sends_a_change_for_a_visible_op_and_nothing_for_an_les_one(sqlite_url, clock):
    async with cop_server(sqlite_url, clock) as (parts, base):
        # the console room takes the clearance of the last one to join: CBP, so the LES op can be logged
        port, cbp = person(parts, "pete", "PORT"), person(parts, "carol", "CBP")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await _login(http, base, link_path(port.say("!cop")))
            async with http.get(f"{base}/cop/LALB/events") as stream:
                assert stream.headers["Content-Type"].startswith("text/event-stream")

                async def next_event(timeout: float) -> str | None:
                    buf = b""
                    try:
                        while not buf.endswith(b"\n\n") or b"event:" not in buf:
                            if buf.endswith(b"\n\n"):
                                buf = b""
                            buf += await asyncio.wait_for(stream.content.readline(), timeout)
                    except asyncio.TimeoutError:
                        return None
                    return buf.decode()

                first = await next_event(3)
                assert first and "event: change" in first
                assert "event: traffic" in (await next_event(1) or "")  # and the (empty) traffic, both at first
                cbp.say(LES_OP)
                assert await next_event(1.5) is None  # an LES change sends nothing to an uncleared viewer
                cbp.say(PLAIN_OP)
                seen = await next_event(2)
                assert seen and "event: change" in seen and "OP-" not in seen and "LES" not in seen
            last = seen.split("id: ", 1)[1].split("\n", 1)[0]
            async with http.get(f"{base}/cop/LALB/events", headers={"Last-Event-ID": last}) as stream:
                line = await asyncio.wait_for(stream.content.readline(), 2)  # retry: 1000
                assert line.startswith(b"retry")
                with pytest.raises(asyncio.TimeoutError):  # nothing new since that id: no event
                    while True:
                        got = await asyncio.wait_for(stream.content.readline(), 1.2)
                        assert not got.startswith(b"event:")


async def test_targets_sit_at_their_vessels_last_ais_position_and_the_approach_area_is_drawn(sqlite_url, clock):
    from watchfloor.storage.vessel_tables import VesselRow

    async with cop_server(sqlite_url, clock) as (parts, base):
        cbp = person(parts, "carol", "CBP")
        assert "TGT-1" in cbp.say('!target nominate IMO9074729 name="EVER GIVEN" eta=+6h priority=high')
        assert "TGT-2" in cbp.say("!target nominate IMO9176187 eta=+6h priority=low")  # never heard on AIS
        with parts.db.session() as s:
            s.add(VesselRow(mmsi="353136000", imo="9074729", name="EVER GIVEN", lat=33.5, lon=-118.6,
                            position_at=clock.now, updated_at=clock.now))
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await _login(http, base, link_path(cbp.say("!cop")))
            async with http.get(f"{base}/cop/LALB/ops.geojson") as r:
                data = await r.json(content_type=None)
            async with http.get(f"{base}/cop/LALB/traffic.geojson") as r:
                data["features"] += (await r.json(content_type=None))["features"]
    by_kind = {}
    for f in data["features"]:
        by_kind.setdefault(f["properties"]["kind"], []).append(f)
    [target] = by_kind["target"]
    assert target["properties"]["id"] == "TGT-1" and target["geometry"] == {"type": "Point",
                                                                          "coordinates": [-118.6, 33.5]}
    [area] = by_kind["approach"]
    ring = area["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and all(lon < -117 for lon, _ in ring)  # [lon, lat]: LALB is at 118° W


def test_base_url_and_tile_url_must_be_web_addresses():
    from watchfloor.config import ConfigError, load_settings

    with pytest.raises(ConfigError) as e:
        load_settings(None, service={"base_url": "watchfloor.lan", "tile_url": "ftp://tiles/{z}/{x}/{y}.png"})
    assert str(e.value).count("not a web address") == 2 and "service.base_url" in str(e.value)
    ok = load_settings(None, service={"base_url": "https://cop.example", "tile_url": "http://t.lan/{z}/{x}/{y}.png"})
    assert ok.service.base_url == "https://cop.example"


async def test_with_a_tile_server_the_page_may_load_tiles_from_it_and_nothing_else(sqlite_url, clock):
    async with cop_server(sqlite_url, clock, tile_url="https://tiles.ioc.example/{z}/{x}/{y}.png") as (parts, base):
        alice = person(parts, "alice", "CBP")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await _login(http, base, link_path(alice.say("!cop")))
            async with http.get(f"{base}/cop/LALB") as page:
                csp = page.headers["Content-Security-Policy"]
                assert 'data-tiles="https://tiles.ioc.example/{z}/{x}/{y}.png"' in await page.text()
    assert "img-src 'self' data: https://tiles.ioc.example;" in csp and "connect-src 'self';" in csp


async def test_every_text_on_the_page_is_escaped(sqlite_url, clock):
    async with cop_server(sqlite_url, clock) as (parts, base):
        alice = person(parts, "alice", "CBP")
        reply = alice.say("!op log patrol vessel=\"<img src=x onerror=alert(1)>\" at=33.74,-118.27 start=+1h end=1h")
        assert "OP-1" in reply, reply
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await _login(http, base, link_path(alice.say("!cop")))
            async with http.get(f"{base}/cop/LALB/panels") as panels:
                html = await panels.text()
    assert "<img" not in html.lower() and "&lt;IMG SRC=X ONERROR=ALERT(1)&gt;" in html  # names are upper case


def test_matrix_gets_no_link_in_a_shared_room_but_does_in_a_direct_chat(sqlite_url, clock):
    from sqlmodel import select

    from watchfloor.commands.message import ChatMessage
    from watchfloor.storage.cop_tables import CopTokenRow
    from tests.helpers import make_parts

    joint = "matrix:!joint:localhost"
    parts = make_parts(sqlite_url, clock, zone=[{"code": "LALB", "joint_rooms": [joint]}],
                       agency=[{"code": "CBP", "members": ["matrix:@alice:localhost"]}],
                       service={"base_url": "https://cop.example", "port": 8080})

    def say(room: str, text: str) -> str:
        rows = parts.engine.handle(ChatMessage(platform="matrix", room=room, sender="matrix:@alice:localhost",
                                               text=text, event_id=f"${room}{text}")).rows
        return "\n".join(json.loads(r.payload)["text"] for r in rows)

    shared = say(joint, "!cop")
    assert "/cop/login/" not in shared and "direct chat" in shared and "!cop LALB" in shared
    with parts.db.session() as s:
        assert s.exec(select(CopTokenRow)).all() == []
    direct = say("matrix:!dm-alice:localhost", "!cop LALB")
    assert "https://cop.example/cop/login/" in direct and "LALB" in direct
    assert "name the zone" in say("matrix:!dm-alice:localhost", "!cop")
    assert "unknown zone 'XYZ'" in say("matrix:!dm-alice:localhost", "!cop calendar XYZ")
    assert "https://cop.example/cop/LALB/ops.ics?token=" in say("matrix:!dm-alice:localhost", "!cop calendar lalb")
    parts.db.dispose()


async def test_a_circle_across_the_antimeridian_is_a_multipolygon_cut_along_it(sqlite_url, clock):
    async with cop_server(sqlite_url, clock) as (parts, base):
        cbp = person(parts, "carol", "CBP")
        for where in ("51.9,179.99", "51.9,-179.99", "51.9,179.5"):  # east of 180, west of it, clear of it
            assert "logged" in cbp.say(f"!op log patrol at={where} radius=5km start=+1h end=2h")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await _login(http, base, link_path(cbp.say("!cop")))
            async with http.get(f"{base}/cop/LALB/ops.geojson") as r:
                data = json.loads(await r.text())
    shapes = {f["properties"]["id"]: f["geometry"] for f in data["features"] if f["properties"]["kind"] == "op"}
    assert shapes["OP-3"]["type"] == "Polygon"
    for ref, centre_side in (("OP-1", 180.0), ("OP-2", -180.0)):
        g = shapes[ref]
        assert g["type"] == "MultiPolygon", (ref, g["type"])  # RFC 7946 §3.1.9
        rings = [polygon[0] for polygon in g["coordinates"]]
        assert len(rings) == 2
        sides = []
        for ring in rings:
            assert ring[0] == ring[-1] and len(ring) >= 4
            assert all(-180 <= lon <= 180 for lon, _ in ring)
            shoelace = sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(ring, ring[1:]))
            assert shoelace > 0  # each part still counter-clockwise
            lons = [lon for lon, _ in ring[:-1]]  # each point once
            edge = 180.0 if max(lons) == 180.0 else -180.0
            assert lons.count(edge) == 2  # cut along the meridian itself
            sides.append(edge)
        assert sorted(sides) == [-180.0, 180.0]
        # the larger part is on the centre's side of the cut
        big = max(rings, key=lambda ring: max(lon for lon, _ in ring) - min(lon for lon, _ in ring))
        assert centre_side in [lon for lon, _ in big]


def test_the_live_streams_look_at_the_latest_vessel_update_reads_an_index(sqlite_url, clock):
    from sqlalchemy import event

    from watchfloor.commands import cop_feed
    from tests.helpers import make_parts

    parts = make_parts(sqlite_url, clock, zone=[{"code": "LALB"}])
    statements = []

    def capture(_conn, _cursor, statement, params, _context, _many):
        if "FROM vessel" in statement:
            statements.append((statement, params))

    event.listen(parts.db.engine, "before_cursor_execute", capture)
    try:
        with parts.db.session() as s:
            cop_feed.change_mark(s, "LALB")
    finally:
        event.remove(parts.db.engine, "before_cursor_execute", capture)
    [(statement, params)] = statements
    with parts.db.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params))
    assert "ix_vessel_updated_at" in plan, plan  # migration 0007; without it every poll reads the whole table
    parts.db.dispose()


async def test_the_event_stream_ends_when_its_session_does(sqlite_url, clock, monkeypatch):
    from watchfloor.bot.web import cop as cop_web

    monkeypatch.setattr(cop_web, "SESSION_S", 0.3)  # checked every few seconds in service; sooner here
    async with cop_server(sqlite_url, clock) as (parts, base):
        alice = person(parts, "alice", "CBP")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await _login(http, base, link_path(alice.say("!cop")))
            async with http.get(f"{base}/cop/LALB/events") as stream:
                assert (await asyncio.wait_for(stream.content.readline(), 2)).startswith(b"retry")
                clock.advance(hours=12, seconds=1)
                ended = False
                while not ended:  # events, keepalives, then the end of the stream
                    ended = await asyncio.wait_for(stream.content.readline(), 3) == b""


async def test_the_page_declares_an_icon_the_server_has(sqlite_url, clock):
    async with cop_server(sqlite_url, clock) as (parts, base):
        alice = person(parts, "alice", "CBP")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await _login(http, base, link_path(alice.say("!cop")))
            async with http.get(f"{base}/cop/LALB") as page:
                assert '<link rel="icon" href="/cop/static/favicon.svg" type="image/svg+xml">' in await page.text()
            async with http.get(f"{base}/cop/static/favicon.svg") as icon:
                assert icon.status == 200 and icon.headers["Content-Type"] == "image/svg+xml"
                assert (await icon.read()).startswith(b"<svg")


async def test_the_event_stream_says_traffic_when_a_vessel_is_heard_and_nothing_about_operations(sqlite_url, clock):
    from watchfloor.storage.vessel_tables import VesselRow

    async with cop_server(sqlite_url, clock) as (parts, base):
        alice = person(parts, "alice", "CBP")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await _login(http, base, link_path(alice.say("!cop")))
            async with http.get(f"{base}/cop/LALB/traffic.geojson") as r:
                traffic_version = r.headers["X-Version"]
            async with http.get(f"{base}/cop/LALB/ops.geojson?geometry=centre") as r:
                ops_version = r.headers["X-Version"]
            async with http.get(f"{base}/cop/LALB/events", params={"since": f"{ops_version}.{traffic_version}"}) as stream:
                assert (await asyncio.wait_for(stream.content.readline(), 2)).startswith(b"retry")
                with parts.db.session() as s:  # a ship heard just now, inside the approach area
                    s.add(VesselRow(mmsi="366123456", name="NEWLY HEARD", lat=33.70, lon=-118.25, sog=8.0, cog=90.0,
                                    position_at=clock.now, updated_at=clock.now))
                got = b""
                while b"\n\n" not in got.split(b"event:", 1)[-1] or b"event:" not in got:
                    got += await asyncio.wait_for(stream.content.readline(), 2)
                assert b"event: traffic" in got and b"event: change" not in got

