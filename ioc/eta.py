"""ETAs with a source: typed by a person, from a notice of arrival (NOA), or from AIS (distance ÷ speed).

An AIS ETA is the great-circle distance from the vessel's last position to the zone's sector coordinates over
its speed over ground, only while it makes more than 2 kn toward the zone and only while that position is under
30 minutes old. The best ETA is a fresh AIS one, else the NOA's, else the typed one, else the ETA the crew reported
on AIS (type 5) when its destination is a port of the zone (ioc/ports.py): a ship bound here counts as arriving
before any notice of arrival is filed, but what a person typed or a notice says is not overruled by the crew's entry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from .geo import distance_m
from .ports import zone_of_destination
from .tracks import too_far_ahead

NM = 1852.0
MIN_SPEED_KN = 2.0
FRESH = timedelta(minutes=30)
TOWARD_DEG = 90.0  # course within this many degrees of the bearing to the zone counts as heading for it
# A vessel this close is at the zone: any course is "toward" it.
AT_ZONE_NM = 1.0

TYPED, NOA, AIS = "typed", "NOA", "AIS"
# The crew's ETA counts while its static report is this recent, and until this long after the time it gives.
REPORTED_FRESH = timedelta(hours=24)
REPORTED_PAST = timedelta(hours=6)


@dataclass(frozen=True)
class Eta:
    at: datetime
    source: str
    distance_nm: float | None = None
    speed_kn: float | None = None
    bound_for: str | None = None  # the AIS destination, when this is the ETA the crew reported for it

    def detail(self) -> str:
        """`AIS, 14 nm at 12 kn`, `AIS, reported for USLAX`, or just the source."""
        if self.source == AIS and self.distance_nm is not None and self.speed_kn is not None:
            return f"AIS, {self.distance_nm:.0f} nm at {self.speed_kn:.0f} kn"
        if self.source == AIS and self.bound_for:
            return f"AIS, reported for {self.bound_for}"
        return self.source


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial great-circle bearing from point 1 to point 2, 0-360 degrees true (right across ±180°)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def angle_between(a: float, b: float) -> float:
    d = abs(a - b) % 360.0
    return 360.0 - d if d > 180.0 else d


def ais_eta(lat: float | None, lon: float | None, sog: float | None, cog: float | None,
            position_at: datetime | None, dest_lat: float, dest_lon: float) -> Eta | None:
    """The AIS ETA at the destination, counted from the time of the position, or None when there is none."""
    if lat is None or lon is None or sog is None or position_at is None or sog <= MIN_SPEED_KN:
        return None
    dist_nm = distance_m(lat, lon, dest_lat, dest_lon) / NM
    if dist_nm > AT_ZONE_NM:
        if cog is None or angle_between(cog, bearing_deg(lat, lon, dest_lat, dest_lon)) >= TOWARD_DEG:
            return None
    return Eta(position_at + timedelta(hours=dist_nm / sog), AIS, dist_nm, sog)


def bound_for(destination: str | None, zone_code: str) -> bool:
    """Whether an AIS destination names a port of this zone."""
    return zone_of_destination(destination) == zone_code


def reported_eta(eta_at: datetime | None, destination: str | None, static_at: datetime | None, zone_code: str,
                 now: datetime) -> Eta | None:
    """The ETA the crew reported on AIS, when the destination is a port of the zone and the report is recent."""
    if eta_at is None or static_at is None or now - static_at > REPORTED_FRESH or eta_at < now - REPORTED_PAST \
            or too_far_ahead(static_at, now):
        return None
    if not bound_for(destination, zone_code):
        return None
    return Eta(eta_at, AIS, bound_for=destination)


def is_fresh(position_at: datetime | None, now: datetime) -> bool:
    """Under 30 minutes old, and not from a time that has not come yet (a receiver's wrong clock: such a position
    would stay "fresh" for years, and its ETA beat every other)."""
    return position_at is not None and now - position_at < FRESH and not too_far_ahead(position_at, now)


def best_eta(ais: Eta | None, ais_position_at: datetime | None, noa: datetime | None, typed: datetime | None,
             now: datetime, reported: Eta | None = None) -> Eta | None:
    if ais is not None and is_fresh(ais_position_at, now):
        return ais
    if noa is not None:
        return Eta(noa, NOA)
    if typed is not None:
        return Eta(typed, TYPED)
    return reported
