"""ETAs with a source: typed by a person, from a notice of arrival (NOA), or from AIS (distance ÷ speed).

An AIS ETA is the great-circle distance from the vessel's last position to the zone's sector coordinates over
its speed over ground, only while it makes more than 2 kn toward the zone and only while that position is under
30 minutes old. The best ETA is a fresh AIS one, else the NOA's, else the typed one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from .geo import distance_m

NM = 1852.0
MIN_SPEED_KN = 2.0
FRESH = timedelta(minutes=30)
TOWARD_DEG = 90.0  # course within this many degrees of the bearing to the zone counts as heading for it
# A vessel this close is at the zone: any course is "toward" it.
AT_ZONE_NM = 1.0

TYPED, NOA, AIS = "typed", "NOA", "AIS"


@dataclass(frozen=True)
class Eta:
    at: datetime
    source: str
    distance_nm: float | None = None
    speed_kn: float | None = None

    def detail(self) -> str:
        """`AIS, 14 nm at 12 kn`, or just the source."""
        if self.source == AIS and self.distance_nm is not None and self.speed_kn is not None:
            return f"AIS, {self.distance_nm:.0f} nm at {self.speed_kn:.0f} kn"
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


def is_fresh(position_at: datetime | None, now: datetime) -> bool:
    return position_at is not None and now - position_at < FRESH


def best_eta(ais: Eta | None, ais_position_at: datetime | None, noa: datetime | None, typed: datetime | None,
             now: datetime) -> Eta | None:
    if ais is not None and is_fresh(ais_position_at, now):
        return ais
    if noa is not None:
        return Eta(noa, NOA)
    if typed is not None:
        return Eta(typed, TYPED)
    return None
