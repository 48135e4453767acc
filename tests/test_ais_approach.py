"""Approach areas: a circle around the sector coordinates or a polygon (also across the antimeridian); an entry
is counted once, not per position."""
from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchfloor.commands.ais_ingest import approach_areas
from watchfloor.config import ConfigError, load_settings
from watchfloor.ioc.approach import ApproachArea, AreaIndex, step
from watchfloor.ioc.zones import all_zones, get_zone


def test_circle_of_approach_nm_around_the_zone():
    lalb = get_zone("LALB")
    area = ApproachArea("LALB", lalb.lat, lalb.lon, 50)
    assert area.contains(lalb.lat - 49 / 60, lalb.lon)
    assert not area.contains(lalb.lat - 51 / 60, lalb.lon)


def test_polygon_across_the_antimeridian():
    area = ApproachArea("X", 0, 180, polygon=((1, 179), (1, -179), (-1, -179), (-1, 179)))
    assert area.contains(0, 179.9) and area.contains(0, -179.9) and area.contains(0.5, 180)
    assert not area.contains(0, 178.5) and not area.contains(0, -178.5) and not area.contains(2, 180)


@pytest.mark.calendar_free
def test_an_entry_counts_once_until_the_vessel_leaves_and_keeps_its_time():
    area = ApproachArea("Z", 0, 0, 10)
    index = AreaIndex([area])
    inside: dict = {}
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    track = [(0, 1), (0, 0.15), (0, 0.1), (0, 0.05), (0, 0.12), (0, 0.5), (0, 0.1)]
    entries = [bool(step(inside, index.inside(lat, lon), t0 + timedelta(minutes=i)))
               for i, (lat, lon) in enumerate(track)]
    assert entries == [False, True, False, False, False, False, True]
    assert inside == {"Z": t0 + timedelta(minutes=6)}  # the time of the latest entry


@settings(max_examples=400, deadline=None)
@given(zone=st.sampled_from(sorted(all_zones())), radius=st.floats(1, 300), bearing=st.floats(0, 360),
       frac=st.floats(0, 2))
def test_the_index_finds_every_area_a_position_is_in(zone, radius, bearing, frac):
    """The 1° cells never leave out an area that holds the position: near the poles, across the antimeridian,
    and for areas wider than a cell; and an area is found only where it holds the position."""
    z = all_zones()[zone]
    area = ApproachArea(zone, z.lat, z.lon, radius)
    lat, lon = _destination(z.lat, z.lon, bearing, radius * frac * 1852)
    found = AreaIndex([area]).inside(lat, lon)
    assert found == ([area] if area.contains(lat, lon) else [])


@pytest.mark.parametrize("lat, lon", [(0, 179.5), (0, -179.5), (0.5, 180), (-0.9, -179.01), (89.9, 0), (-89.9, 90)])
def test_the_index_across_the_antimeridian_and_near_the_poles(lat, lon):
    strip = ApproachArea("X", 0, 180, polygon=((1, 179), (1, -179), (-1, -179), (-1, 179)))
    pole, south = ApproachArea("N", 89.5, 10, 120), ApproachArea("S", -89.5, -100, 120)
    index = AreaIndex([strip, pole, south])
    assert index.inside(lat, lon) == [a for a in (strip, pole, south) if a.contains(lat, lon)]
    assert index.inside(lat, lon)  # each of these positions is in one of them


def _destination(lat, lon, bearing_deg, dist_m):
    """The point `dist_m` from (lat, lon) along `bearing_deg` on the sphere."""
    d = dist_m / 6_371_008.8
    p1, l1, b = math.radians(lat), math.radians(lon), math.radians(bearing_deg)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 180) % 360 - 180


def test_the_boundary_is_the_distance_the_notice_gives():
    lalb = get_zone("LALB")
    area = ApproachArea("LALB", lalb.lat, lalb.lon, 30)
    for bearing in range(0, 360, 7):
        for nm in (29.99, 30.01):
            lat, lon = _destination(lalb.lat, lalb.lon, bearing, nm * 1852)
            assert area.contains(lat, lon) == (area.distance_nm(lat, lon) <= 30)


def test_configured_areas_and_a_bad_polygon(tmp_path):
    settings = load_settings(None, zone=[{"code": "LALB", "approach_nm": 30},
                                         {"code": "NY", "approach": [[40, -74.5], [41, -74.5], [41, -73], [40, -73]]}])
    areas = approach_areas(settings)
    assert areas["LALB"].radius_nm == 30 and areas["NY"].polygon is not None and areas["GUAM"].radius_nm == 50
    assert areas["NY"].contains(40.5, -74.0) and not areas["NY"].contains(39.5, -74.0)
    with pytest.raises(ConfigError) as e:
        load_settings(None, zone=[{"code": "LALB", "approach": [[40, -74], [95, -74], [41, -73]]}])
    assert "zone[0].approach: [95.0, -74.0] is not a [lat, lon] position" in e.value.problems
