"""A zone's approach area (a circle around its sector coordinates, or a polygon) and entries into it.

An entry is the step from outside to inside: a vessel sitting in the area reporting every few seconds enters
once, and enters again only after it has left.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .geo import distance_m, normalize_lon

NM = 1852.0
DEFAULT_APPROACH_NM = 50.0


@dataclass(frozen=True)
class ApproachArea:
    zone: str
    lat: float
    lon: float
    radius_nm: float = DEFAULT_APPROACH_NM
    polygon: tuple[tuple[float, float], ...] | None = None  # (lat, lon) vertices

    def distance_nm(self, lat: float, lon: float) -> float:
        """From the zone's sector coordinates."""
        return distance_m(lat, lon, self.lat, self.lon) / NM

    def contains(self, lat: float, lon: float) -> bool:
        if self.polygon is None:
            return self.distance_nm(lat, lon) <= self.radius_nm
        # Longitudes are unwrapped around the first vertex, so an area across the antimeridian stays whole.
        x = self._unwrap(lon)
        return bool(self._path.contains_point((x, lat)))

    def _unwrap(self, lon: float) -> float:
        ref = self.polygon[0][1]
        return ref + normalize_lon(lon - ref)

    @cached_property
    def _path(self):
        # matplotlib (already a dependency, for the briefing timeline) has a well-tested point-in-polygon;
        # imported here so only zones with a polygon pay for it.
        from matplotlib.path import Path

        return Path([(self._unwrap(lon), lat) for lat, lon in self.polygon], closed=False)


def step(inside_before: set[str], areas: list[ApproachArea], lat: float, lon: float) -> list[ApproachArea]:
    """Update the zones a vessel is inside (`inside_before`, in place) for its new position; return the areas
    it has just entered."""
    entered = []
    for area in areas:
        inside = area.contains(lat, lon)
        if inside and area.zone not in inside_before:
            inside_before.add(area.zone)
            entered.append(area)
        elif not inside:
            inside_before.discard(area.zone)
    return entered
