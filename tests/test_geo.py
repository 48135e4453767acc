"""Geometry of operation circles: distances, and boxes that never lose a point of the circle (poles, ±180°)."""
from __future__ import annotations

import math

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from watchfloor.ioc.geo import EARTH_RADIUS_M, BBox, circle_bbox, circles_intersect, distance_m, normalize_lon

lats = st.floats(-90, 90, allow_nan=False)
lons = st.floats(-180, 180, allow_nan=False)
radii = st.floats(1, 200_000, allow_nan=False)
# Places where the easy formulas break: the Aleutians across ±180°, Guam, and both poles.
hard_places = st.sampled_from([(51.9, 179.9), (51.9, -179.9), (52.0, 180.0), (13.44, 144.79), (89.99, 0.0),
                               (-89.99, 45.0), (71.3, -156.8), (0.0, -180.0)])


def destination(lat: float, lon: float, bearing_deg: float, dist_m: float) -> tuple[float, float]:
    """The point dist_m from (lat, lon) along the initial bearing (the direct great-circle problem)."""
    p1, l1, th = math.radians(lat), math.radians(lon), math.radians(bearing_deg)
    d = dist_m / EARTH_RADIUS_M
    p2 = math.asin(max(-1.0, min(1.0, math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(th))))
    l2 = l1 + math.atan2(math.sin(th) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), normalize_lon(math.degrees(l2))


def contains(box: BBox, lat: float, lon: float) -> bool:
    return box.min_lat <= lat <= box.max_lat and any(lo <= lon <= hi for lo, hi in box.lon_ranges())


centres = st.one_of(st.tuples(lats, lons), hard_places,
                    st.tuples(st.floats(-1, 1), st.floats(-0.2, 0.2)).flatmap(
                        lambda d: hard_places.map(lambda p: (max(-90.0, min(90.0, p[0] + d[0])),
                                                             normalize_lon(p[1] + d[1])))))


@given(a=st.tuples(lats, lons), b=st.tuples(lats, lons))
def test_distance_is_symmetric_and_never_negative(a, b):
    assert distance_m(*a, *b) == distance_m(*b, *a)
    assert distance_m(*a, *b) >= 0
    assert distance_m(*a, *a) == 0


def test_distance_across_the_antimeridian_is_short():
    # Adak-side points on either side of ±180°: a few km apart, not half the Earth.
    assert distance_m(51.9, 179.95, 51.9, -179.95) < 8_000
    assert abs(distance_m(0, 0, 0, 1) - 111_195) < 5


@settings(max_examples=400)
@given(centre=centres, radius=radii, bearing=st.floats(0, 360), frac=st.floats(0, 1))
@example(centre=(51.9, 179.9), radius=20_000.0, bearing=90.0, frac=1.0)
@example(centre=(51.9, -179.9), radius=20_000.0, bearing=270.0, frac=1.0)
@example(centre=(89.99, 0.0), radius=5_000.0, bearing=180.0, frac=1.0)
@example(centre=(13.44, 144.79), radius=200_000.0, bearing=45.0, frac=1.0)
def test_box_contains_every_point_of_the_circle(centre, radius, bearing, frac):
    lat, lon = centre
    p = destination(lat, lon, bearing, radius * frac)
    assume(distance_m(lat, lon, *p) <= radius)
    box = circle_bbox(lat, lon, radius)
    assert contains(box, *p), (box, p)


@settings(max_examples=300)
@given(a=centres, b=centres, ra=radii, rb=radii)
def test_intersecting_circles_have_intersecting_boxes(a, b, ra, rb):
    # The database search and the sweep's grid both rely on this: a box miss must mean no conflict.
    if circles_intersect(*a, ra, *b, rb):
        assert circle_bbox(*a, ra).intersects(circle_bbox(*b, rb))


def test_boxes_wrap_the_antimeridian_and_open_at_the_poles():
    aleutian = circle_bbox(51.9, 179.99, 5_000)
    assert aleutian.wraps and contains(aleutian, 51.9, -179.98) and contains(aleutian, 51.9, 179.95)
    other_side = circle_bbox(51.9, -179.99, 5_000)
    assert aleutian.intersects(other_side)
    pole = circle_bbox(89.99, 10.0, 5_000)
    assert (pole.min_lon, pole.max_lon, pole.max_lat) == (-180.0, 180.0, 90.0)
    guam = circle_bbox(13.44, 144.79, 500)
    assert not guam.wraps and guam.min_lon < 144.79 < guam.max_lon
