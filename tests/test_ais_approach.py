"""Approach areas: a circle around the sector coordinates or a polygon (also across the antimeridian); an entry
is counted once, not per position."""
from __future__ import annotations

import pytest

from watchfloor.commands.ais_ingest import approach_areas
from watchfloor.config import ConfigError, load_settings
from watchfloor.ioc.approach import ApproachArea, step
from watchfloor.ioc.zones import get_zone


def test_circle_of_approach_nm_around_the_zone():
    lalb = get_zone("LALB")
    area = ApproachArea("LALB", lalb.lat, lalb.lon, 50)
    assert area.contains(lalb.lat - 49 / 60, lalb.lon)
    assert not area.contains(lalb.lat - 51 / 60, lalb.lon)


def test_polygon_across_the_antimeridian():
    area = ApproachArea("X", 0, 180, polygon=((1, 179), (1, -179), (-1, -179), (-1, 179)))
    assert area.contains(0, 179.9) and area.contains(0, -179.9) and area.contains(0.5, 180)
    assert not area.contains(0, 178.5) and not area.contains(0, -178.5) and not area.contains(2, 180)


def test_an_entry_counts_once_until_the_vessel_leaves():
    area = ApproachArea("Z", 0, 0, 10)
    inside: set[str] = set()
    track = [(0, 1), (0, 0.15), (0, 0.1), (0, 0.05), (0, 0.12), (0, 0.5), (0, 0.1)]
    entries = [bool(step(inside, [area], lat, lon)) for lat, lon in track]
    assert entries == [False, True, False, False, False, False, True]


def test_configured_areas_and_a_bad_polygon(tmp_path):
    settings = load_settings(None, zone=[{"code": "LALB", "approach_nm": 30},
                                         {"code": "NY", "approach": [[40, -74.5], [41, -74.5], [41, -73], [40, -73]]}])
    areas = approach_areas(settings)
    assert areas["LALB"].radius_nm == 30 and areas["NY"].polygon is not None and areas["GUAM"].radius_nm == 50
    assert areas["NY"].contains(40.5, -74.0) and not areas["NY"].contains(39.5, -74.0)
    with pytest.raises(ConfigError) as e:
        load_settings(None, zone=[{"code": "LALB", "approach": [[40, -74], [95, -74], [41, -73]]}])
    assert "zone[0].approach: [95.0, -74.0] is not a [lat, lon] position" in e.value.problems
