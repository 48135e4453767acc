"""The picture's timeline at the watch's scale (issue 24): the watch's horizon, one line per overlapping operation,
labels kept inside, overdue operations, and each agency's own colour — on the page, in the calendar and in the
briefing's picture alike."""
from __future__ import annotations

import io
import json
import re
from datetime import timedelta

import aiohttp
from icalendar import Calendar

from tests.cop_helpers import cop_server as _cop_server
from tests.cop_helpers import feed_path, link_path, person


def cop_server(db_url: str, clock=None, **service):
    return _cop_server(db_url, clock, **{"port": 8080, **service})


def at(clock, hours: float) -> str:
    """A time `hours` from the test's clock, as chat takes it."""
    return (clock.now + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%MZ")


async def fetch(base: str, reply: str, *paths: str) -> list[str]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(base + link_path(reply)) as r:
            assert r.status == 200
        out = []
        for path in paths:
            async with http.get(base + path) as r:
                assert r.status == 200, path
                out.append(await r.text())
        return out


async def test_the_timeline_covers_the_watch_six_hours_back_and_eighteen_ahead_with_now_marked(sqlite_url, clock):
    from watchfloor.commands import cop_feed

    async with cop_server(sqlite_url, clock) as (parts, base):
        cbp = person(parts, "carol", "CBP")
        for start, end in ((-7.5, -6.5), (-5, -4), (17, 17.5), (18.5, 20), (-2, -1.5)):
            assert "logged" in cbp.say(f"!op log patrol at=33.72,-118.22 start={at(clock, start)} "
                                       f"end={at(clock, end)}")
        cbp.say('!op done OP-5 outcome="nothing found"')
        cbp.say("!op done OP-1")  # (else it would be overdue, and shown as such whenever it ended)
        panels, = await fetch(base, cbp.say("!cop"), "/cop/LALB/panels")
    rows = re.findall(r'<tr id="row-(OP-\d+)"', panels)
    assert rows == ["OP-2", "OP-5", "OP-3"]  # 6 hours back to 18 ahead, done ones too; not before, not after
    # the clock is 07:00 PST: the watch runs from 01:00 to 01:00 the next day
    assert "The watch: Tue 01 Dec 01:00 – Wed 02 Dec 01:00 PST (6 hours back, 18 ahead)" in panels
    now_x = float(re.search(r'<line class="now" x1="([\d.]+)"', panels).group(1))
    span = cop_feed.TIMELINE_W - cop_feed.LABEL_W - cop_feed.RIGHT_PAD
    assert abs(now_x - (cop_feed.LABEL_W + span / 4)) < 1  # now is a quarter of the way along
    assert ">now</text>" in panels


async def test_overlapping_operations_of_one_agency_each_get_a_line_and_no_label_leaves_the_timeline(sqlite_url,
                                                                                                     clock):
    from watchfloor.commands import cop_feed
    from watchfloor.ioc.markings import ALL_MARKINGS

    async with cop_server(sqlite_url, clock) as (parts, base):
        cbp, uscg = person(parts, "carol", "CBP"), person(parts, "ursula", "USCG")
        cbp.say("!op log patrol at=33.60,-118.40 start=+1h end=3h")        # OP-1
        cbp.say("!op log boarding at=33.50,-118.10 start=+2h end=2h")      # OP-2: overlaps OP-1
        cbp.say("!op log escort at=33.45,-118.00 start=+2h30m end=10m")   # OP-3: overlaps both, too short for its label
        cbp.say("!op log patrol at=33.40,-117.90 start=+8h end=1h")        # OP-4: after them, back on the first line
        uscg.say("!op log patrol at=33.30,-117.80 start=+17h50m end=5m")   # OP-5: at the timeline's right end
        with parts.db.session() as s:
            t = cop_feed.timeline(s, parts.directory.configured_zones()[0], ALL_MARKINGS, clock.now,
                                  parts.engine.rules.max_operation)
        panels, = await fetch(base, cbp.say("!cop"), "/cop/LALB/panels")
    line = {bar.ref: y for bar, y in t["placed"]}
    assert len({line["OP-1"], line["OP-2"], line["OP-3"]}) == 3
    assert line["OP-4"] == line["OP-1"]
    for bar, y in t["placed"]:  # no two bars of one agency meet, their labels included
        for other, y2 in t["placed"]:
            if other is not bar and other.agency == bar.agency and y2 == y:
                assert bar.right + 2 <= other.left or other.right + 2 <= bar.left, (bar.ref, other.ref)
        width = bar.label_w - 2 * cop_feed.LABEL_PAD
        left = bar.label_x - width if bar.label_end else bar.label_x
        assert cop_feed.LABEL_W - 1 <= left and left + width <= cop_feed.TIMELINE_W, bar.ref
    five = next(bar for bar, _ in t["placed"] if bar.ref == "OP-5")
    assert five.label_end  # no room right of it: its label goes to its left
    assert 'id="bar-OP-5"' in panels and 'text-anchor="end"' in panels


async def test_an_operation_past_its_end_reads_overdue_on_the_map_the_timeline_the_list_and_the_calendar(sqlite_url,
                                                                                                        clock):
    async with cop_server(sqlite_url, clock) as (parts, base):
        cbp = person(parts, "carol", "CBP")
        cbp.say(f"!op log patrol at=33.72,-118.22 start={at(clock, -3)} end={at(clock, -1)}")      # OP-1 overdue
        cbp.say(f"!op log escort at=33.70,-118.24 start={at(clock, -2)} end={at(clock, -0.25)}")   # OP-2: 15 min
        cbp.say(f"!op log boarding at=33.71,-118.23 start={at(clock, -4)} end={at(clock, -3)}")    # OP-3, done
        cbp.say("!op done OP-3")
        geojson, panels, page = await fetch(base, cbp.say("!cop"), "/cop/LALB/ops.geojson", "/cop/LALB/panels",
                                            "/cop/LALB")
        feed = feed_path(cbp.say("!cop calendar"))
        async with aiohttp.ClientSession() as http:
            async with http.get(base + feed) as r:
                events = {str(e["uid"]).split("-")[1]: e for e in Calendar.from_ical(await r.read()).walk("VEVENT")}
    status = {f["properties"]["id"]: f["properties"]["status"] for f in json.loads(geojson)["features"]
              if f["properties"]["kind"] == "op"}
    assert status == {"OP-1": "overdue"}  # on the map: the overdue one (the others are over)
    assert re.search(r'<tr id="row-OP-1".*<strong class="overdue">overdue</strong>', panels)
    assert re.search(r'<tr id="row-OP-2".*<td>planned</td>', panels)
    assert re.search(r'<tr id="row-OP-3".*<td>done</td>', panels)
    assert 'class="bar overdue"' in panels and ">OP-1 overdue</text>" in panels
    assert str(events["1"]["summary"]) == "OP-1 patrol (CBP) — overdue"
    assert "overdue" in str(events["1"]["description"])
    assert str(events["2"]["summary"]) == "OP-2 escort (CBP)" and str(events["3"]["summary"]) == "OP-3 boarding (CBP)"


async def test_each_agency_keeps_a_colour_of_its_own_on_the_map_the_timeline_and_the_briefing_picture(sqlite_url,
                                                                                                      clock):
    from PIL import Image  # noqa: F401  (matplotlib's own dependency: reads the picture's metadata)

    from watchfloor.bot.scheduler import _Briefing
    from watchfloor.commands.cop_feed import PALETTE
    from watchfloor.ioc.markings import ALL_MARKINGS

    agencies = ["CBP", "USCG", "HSI", "PD", "PORT", "NOAA", "AMO", "FBI"]
    async with cop_server(sqlite_url, clock) as (parts, base):
        for i, agency in enumerate(agencies):
            person(parts, f"u{i}", agency).say(f"!op log patrol at=33.{50 + 5 * i},-118.{10 + 5 * i} start=+{i + 1}h "
                                               "end=1h")
        viewer = person(parts, "carol", "CBP")
        geojson, panels = await fetch(base, viewer.say("!cop"), "/cop/LALB/ops.geojson", "/cop/LALB/panels")
        on_map = {f["properties"]["agency"]: f["properties"]["color"] for f in json.loads(geojson)["features"]
                  if f["properties"]["kind"] == "op"}
        assert len(set(on_map.values())) == 8 and set(on_map.values()) <= set(PALETTE[:9])
        lanes = dict(re.findall(r'fill="(#[0-9A-Fa-f]{6})"/>\s*<text class="agency" x="18" y="\d+">(\w+)</text>',
                                panels))
        assert {agency: colour for colour, agency in lanes.items()} == on_map
        with parts.db.session() as s:
            picture = _Briefing(s, parts.directory, parts.directory.configured_zones()[0], clock.now) \
                .picture(ALL_MARKINGS)
        from PIL import Image

        drawn = dict(pair.split("=") for pair in Image.open(io.BytesIO(picture.png)).info["Colours"].split(","))
        assert drawn == on_map
        # a ninth agency takes a colour of its own; the eight keep theirs
        person(parts, "ninth", "DEA").say("!op log patrol at=33.9,-118.4 start=+2h end=1h")
        geojson, = await fetch(base, viewer.say("!cop"), "/cop/LALB/ops.geojson")
    now_map = {f["properties"]["agency"]: f["properties"]["color"] for f in json.loads(geojson)["features"]
               if f["properties"]["kind"] == "op"}
    assert {a: now_map[a] for a in agencies} == on_map and now_map["DEA"] not in on_map.values()


async def test_the_briefing_picture_gives_overlapping_operations_their_own_lines_and_cuts_no_label(sqlite_url,
                                                                                                   clock):
    from PIL import Image

    from watchfloor.bot.timeline import timeline
    from watchfloor.commands.briefing import build_briefing
    from watchfloor.ioc.markings import ALL_MARKINGS

    async with cop_server(sqlite_url, clock) as (parts, base):
        cbp = person(parts, "carol", "CBP")
        cbp.say("!op log patrol at=33.60,-118.40 start=+1h end=3h")
        cbp.say("!op log boarding at=33.50,-118.10 start=+2h end=2h")
        cbp.say(f"!op log escort at=33.45,-118.00 start={at(clock, -6)} end={at(clock, -3)}")  # overdue at 05:00
        cbp.say("!op log patrol at=33.40,-117.90 start=+15h40m end=15m")  # 22:40-22:55, by the right edge
        with parts.db.session() as s:  # a briefing at 05:00 PST: its picture runs from 23:00 to 23:00
            data = build_briefing(s, parts.directory, parts.directory.configured_zones()[0],
                                  clock.now - timedelta(hours=2), ALL_MARKINGS)
    picture = timeline(data)
    info = Image.open(io.BytesIO(picture.png)).info
    assert info["Lines"] == "CBP=2"
    assert set(picture.labels) == {"OP-1", "OP-2", "OP-3 overdue", "OP-4"}
    left, right = picture.plot
    for label, (x0, x1) in picture.labels.items():
        assert left - 0.5 <= x0 and x1 <= right + 0.5, (label, x0, x1, picture.plot)
