"""Great-circle geometry for operation circles, right near the poles and across the antimeridian."""
from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_008.8


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance; stable for short and antipodal distances alike."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def circles_intersect(lat1, lon1, r1, lat2, lon2, r2) -> bool:
    return distance_m(lat1, lon1, lat2, lon2) <= r1 + r2


def normalize_lon(lon: float) -> float:
    return (lon + 180.0) % 360.0 - 180.0


@dataclass(frozen=True)
class BBox:
    """Bounding box of a circle. `min_lon > max_lon` means the box wraps across the antimeridian."""

    min_lat: float
    max_lat: float
    min_lon: float
    max_lon: float

    @property
    def wraps(self) -> bool:
        return self.min_lon > self.max_lon

    def lon_ranges(self) -> list[tuple[float, float]]:
        if self.wraps:
            return [(self.min_lon, 180.0), (-180.0, self.max_lon)]
        return [(self.min_lon, self.max_lon)]

    def intersects(self, other: "BBox") -> bool:
        if self.max_lat < other.min_lat or other.max_lat < self.min_lat:
            return False
        return any(a <= d and c <= b for a, b in self.lon_ranges() for c, d in other.lon_ranges())


def circle_bbox(lat: float, lon: float, radius_m: float) -> BBox:
    """A box that contains every point within radius_m of (lat, lon) on the sphere."""
    # A hair wider than the circle: the box is only a filter, and a pair whose circles just touch must never be
    # lost to rounding in the trigonometry below (nor to a box ending exactly on the antimeridian).
    ang = max(radius_m, 0.0) / EARTH_RADIUS_M * (1 + 1e-9) + 1e-9
    dlat = math.degrees(ang)
    min_lat, max_lat = lat - dlat, lat + dlat
    if max_lat >= 90.0 or min_lat <= -90.0 or ang >= math.pi / 2:
        # The circle reaches a pole: every longitude is inside the box.
        return BBox(max(min_lat, -90.0), min(max_lat, 90.0), -180.0, 180.0)
    dlon = math.degrees(math.asin(min(1.0, math.sin(ang) / math.cos(math.radians(lat)))))
    lo, hi = lon - dlon, lon + dlon
    if hi - lo >= 360.0:
        return BBox(min_lat, max_lat, -180.0, 180.0)
    return BBox(min_lat, max_lat, normalize_lon(lo) if lo < -180 else lo, normalize_lon(hi) if hi > 180 else hi)
