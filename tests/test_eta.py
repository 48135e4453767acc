"""ETAs with a source: AIS only when moving toward the zone, fresh; else the notice of arrival's; else typed."""
from __future__ import annotations

import pytest

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from watchfloor.ioc.eta import AIS, NOA, TYPED, Eta, ais_eta, bearing_deg, best_eta
from watchfloor.ioc.geo import distance_m

pytestmark = pytest.mark.calendar_free  # every ETA is computed at a `now` the test gives

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
lats = st.floats(-70, 70)
lons = st.floats(-180, 180)


def _far(lat, lon, zlat, zlon) -> bool:
    return distance_m(lat, lon, zlat, zlon) > 5 * 1852


@settings(max_examples=300, deadline=None)
@given(lat=lats, lon=lons, zlat=lats, zlon=lons, sog=st.floats(2.5, 40), off=st.floats(95, 265))
def test_moving_away_has_no_ais_eta(lat, lon, zlat, zlon, sog, off):
    if not _far(lat, lon, zlat, zlon):
        return
    cog = (bearing_deg(lat, lon, zlat, zlon) + off) % 360
    assert ais_eta(lat, lon, sog, cog, T0, zlat, zlon) is None


@settings(max_examples=300, deadline=None)
@given(lat=lats, lon=lons, zlat=lats, zlon=lons, sog=st.floats(0, 2), cog=st.floats(0, 359.9))
def test_stopped_or_drifting_has_no_ais_eta(lat, lon, zlat, zlon, sog, cog):
    assert ais_eta(lat, lon, sog, cog, T0, zlat, zlon) is None


@settings(max_examples=300, deadline=None)
@given(lat=lats, lon=lons, zlat=lats, zlon=lons, sog=st.floats(2.5, 40), off=st.floats(-60, 60))
def test_heading_for_the_zone_gives_distance_over_speed(lat, lon, zlat, zlon, sog, off):
    if not _far(lat, lon, zlat, zlon):
        return
    cog = (bearing_deg(lat, lon, zlat, zlon) + off) % 360
    eta = ais_eta(lat, lon, sog, cog, T0, zlat, zlon)
    nm = distance_m(lat, lon, zlat, zlon) / 1852
    assert eta is not None and eta.source == AIS
    assert abs((eta.at - T0).total_seconds() - nm / sog * 3600) < 1


@settings(max_examples=200, deadline=None)
@given(lat=st.floats(-60, 60), dlon=st.floats(0.2, 5), side=st.sampled_from([-1, 1]), sog=st.floats(3, 30))
def test_across_the_antimeridian_the_short_way(lat, dlon, side, sog):
    """A ship just west of the line bound for a port just east of it sails east across it (and the mirror)."""
    ship, zone = side * (180 - dlon / 2), -side * (180 - dlon / 2)
    course = 90.0 if side > 0 else 270.0
    eta = ais_eta(lat, ship, sog, course, T0, lat, zone)
    assert eta is not None and eta.distance_nm < dlon * 60 + 1
    assert ais_eta(lat, ship, sog, (course + 180) % 360, T0, lat, zone) is None


def test_best_eta_prefers_fresh_ais_then_noa_then_typed():
    ais = Eta(T0 + timedelta(hours=3), AIS, 36.0, 12.0)
    noa, typed = T0 + timedelta(hours=5), T0 + timedelta(hours=7)
    assert best_eta(ais, T0, noa, typed, T0 + timedelta(minutes=29)) == ais
    stale = best_eta(ais, T0, noa, typed, T0 + timedelta(minutes=31))
    assert stale.source == NOA and stale.at == noa
    assert best_eta(ais, T0, None, typed, T0 + timedelta(hours=1)).source == TYPED
    assert best_eta(None, None, None, None, T0) is None


def test_the_eta_says_its_source_distance_and_speed():
    assert Eta(T0, AIS, 14.2, 12.0).detail() == "AIS, 14 nm at 12 kn"
    assert Eta(T0, NOA).detail() == "NOA"
    assert Eta(T0, TYPED).detail() == "typed"


@settings(max_examples=500, deadline=None)
@given(age_s=st.integers(-100 * 365 * 86_400, 86_400))
def test_fresh_means_under_30_minutes_old_and_not_from_the_future(age_s):
    """A position from a receiver whose clock runs ahead is never fresh (it would stay fresh for years and its ETA
    beat every other); a few minutes ahead is a clock's drift, and counts."""
    from watchfloor.ioc.eta import is_fresh

    now = T0 + timedelta(seconds=age_s % 7)  # not always on the minute
    at = now - timedelta(seconds=age_s)
    assert is_fresh(at, now) == (-300 <= age_s < 1800)


@settings(max_examples=300, deadline=None)
@given(ahead_s=st.integers(301, 100 * 365 * 86_400), typed_h=st.integers(1, 200))
def test_a_position_from_the_future_never_gives_the_eta(ahead_s, typed_h):
    from watchfloor.ioc.eta import reported_eta

    at = T0 + timedelta(seconds=ahead_s)
    ais = ais_eta(33.0, -118.0, 12.0, 0.0, at, 33.5, -118.0)  # 30 nm south, heading for it
    best = best_eta(ais, at, None, T0 + timedelta(hours=typed_h), T0)
    assert best.source == TYPED
    assert reported_eta(at + timedelta(hours=2), "USLAX", at, "LALB", T0) is None  # its type 5 neither
    assert reported_eta(T0 + timedelta(hours=2), "USLAX", T0, "LALB", T0) is not None
