"""A zone's approach area (a circle around its sector coordinates, or a polygon) and entries into it.

An entry is the step from outside to inside: a vessel sitting in the area reporting every few seconds enters
once, and enters again only after it has left. Every vessel's entries are followed (not only those of targeted
vessels), each with its time, so that a target linked to its vessel late (its IMO learnt from a type 5 after
its positions) still knows whether the vessel entered while targeted. `AreaIndex` keeps that cheap: a position
is tested only against the areas whose box covers its 1° cell.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from .geo import EARTH_RADIUS_M, circle_bbox, distance_m, normalize_lon

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
            # The haversine of ioc/geo.distance_m compared before its square root and arc sine: the same
            # boundary, at half the cost (every position near a port is tested).
            p1 = math.radians(lat)
            h = math.sin((p1 - self._p) / 2) ** 2 + \
                math.cos(p1) * self._cos_p * math.sin(math.radians(lon - self.lon) / 2) ** 2
            return h <= self._h_max
        # Longitudes are unwrapped around the first vertex, so an area across the antimeridian stays whole.
        x = self._unwrap(lon)
        return bool(self._path.contains_point((x, lat)))

    @cached_property
    def _p(self) -> float:
        return math.radians(self.lat)

    @cached_property
    def _cos_p(self) -> float:
        return math.cos(self._p)

    @cached_property
    def _h_max(self) -> float:
        angle = min(self.radius_nm * NM / EARTH_RADIUS_M, math.pi)
        return math.sin(angle / 2) ** 2

    def _unwrap(self, lon: float) -> float:
        ref = self.polygon[0][1]
        return ref + normalize_lon(lon - ref)

    @cached_property
    def _path(self):
        # matplotlib (already a dependency, for the briefing timeline) has a well-tested point-in-polygon;
        # imported here so only zones with a polygon pay for it.
        from matplotlib.path import Path

        return Path([(self._unwrap(lon), lat) for lat, lon in self.polygon], closed=False)

    def cells(self) -> Iterator[int]:
        """The 1° cells (`cell_of`) its area touches."""
        if self.polygon is None:
            box = circle_bbox(self.lat, self.lon, self.radius_nm * NM)
            lat_lo, lat_hi, lon_ranges = box.min_lat, box.max_lat, box.lon_ranges()
        else:
            lats = [a for a, _ in self.polygon]
            lons = [self._unwrap(b) for _, b in self.polygon]
            lat_lo, lat_hi, lon_ranges = min(lats), max(lats), [(min(lons), max(lons))]
        rows = range(_row(max(lat_lo, -90.0)), _row(min(lat_hi, 90.0)) + 1)
        for lo, hi in lon_ranges:
            first = math.floor(lo + 180.0)
            for col in range(first, min(math.floor(hi + 180.0), first + 359) + 1):
                for row in rows:
                    yield row * 360 + col % 360


def _row(lat: float) -> int:
    return min(int(lat + 90.0), 179)


def cell_of(lat: float, lon: float) -> int:
    """The 1° cell of a position (latitude rows from the south pole, longitude columns from the antimeridian)."""
    return min(int(lat + 90.0), 179) * 360 + int(lon + 180.0) % 360


class AreaIndex:
    """Which approach areas a position is in, testing only the areas whose box covers its 1° cell."""

    def __init__(self, areas: Iterable[ApproachArea]):
        cells: dict[int, list[ApproachArea]] = {}
        for area in areas:
            for cell in set(area.cells()):
                cells.setdefault(cell, []).append(area)
        self._cells = {c: tuple(a) for c, a in cells.items()}

    def inside(self, lat: float, lon: float) -> list[ApproachArea]:
        near = self._cells.get(min(int(lat + 90.0), 179) * 360 + int(lon + 180.0) % 360)
        return [a for a in near if a.contains(lat, lon)] if near else []


def step(inside: dict[str, datetime | None], areas_now: Sequence[ApproachArea], at: datetime | None
         ) -> list[ApproachArea]:
    """Move a vessel's `inside` (zone -> entry time, updated in place) to `areas_now`, the areas its new position is
    in; return those it has just entered, recorded as entered at `at` (None: the time is not known, as for a vessel's
    first position, which may be long after it entered)."""
    entered = [a for a in areas_now if a.zone not in inside]
    if len(inside) != len(areas_now) - len(entered):  # it left some
        still = {a.zone for a in areas_now}
        for zone in [z for z in inside if z not in still]:
            del inside[zone]
    for a in entered:
        inside[a.zone] = at
    return entered
