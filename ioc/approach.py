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
            # Farther in latitude alone than the radius: outside (most positions near a port end here).
            if abs(lat - self.lat) > self._dlat:
                return False
            # The haversine of ioc/geo.distance_m compared before its square root and arc sine: the same
            # boundary, at half the cost.
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
    def _dlat(self) -> float:
        return math.degrees(self.radius_nm * NM / EARTH_RADIUS_M) * (1 + 1e-9) + 1e-9

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

    def cells(self) -> Iterator[tuple[int, bool]]:
        """The cells (`cell_of`) its area touches, each with whether the whole cell is inside the area."""
        if self.polygon is None:
            box = circle_bbox(self.lat, self.lon, self.radius_nm * NM)
            lat_lo, lat_hi, lon_ranges = box.min_lat, box.max_lat, box.lon_ranges()
        else:
            lats = [a for a, _ in self.polygon]
            lons = [self._unwrap(b) for _, b in self.polygon]
            lat_lo, lat_hi, lon_ranges = min(lats), max(lats), [(min(lons), max(lons))]
        rows = range(int((max(lat_lo, -90.0) + 90.0) * CELLS_PER_DEG), int((min(lat_hi, 90.0) + 90.0) * CELLS_PER_DEG) + 1)
        for lo, hi in lon_ranges:
            first = math.floor((lo + 180.0) * CELLS_PER_DEG)
            for col in range(first, min(math.floor((hi + 180.0) * CELLS_PER_DEG), first + _COLS - 1) + 1):
                col %= _COLS
                for row in rows:
                    row = min(row, _ROWS - 1)
                    whole = self._holds_cell(row, col)
                    # Latitude 90 and longitude 180 are cells of their own in `cell_of` (it neither clamps nor
                    # wraps, to stay cheap): they repeat the last row and the first column.
                    for r in (row, _ROWS) if row == _ROWS - 1 else (row,):
                        for c in (col, _COLS) if col == 0 else (col,):
                            yield r * STRIDE + c, whole

    def _holds_cell(self, row: int, col: int) -> bool:
        """Whether every point of the cell is inside: for a circle, its corners inside (the distance from the
        centre along a cell's edges is greatest at a corner), with a margin for rounding; a polygon: never
        assumed."""
        if self.polygon is not None:
            return False
        size = 1.0 / CELLS_PER_DEG
        lat0, lon0 = row * size - 90.0, col * size - 180.0
        return all(self.distance_nm(lat0 + a * size, lon0 + b * size) < self.radius_nm * (1 - 1e-6)
                   for a in (0, 1) for b in (0, 1))


# Cells of 0.1°: most positions near a port fall in a cell wholly inside or wholly outside every area, so that only
# those near an area's edge are tested.
CELLS_PER_DEG = 10
_ROWS, _COLS = 180 * CELLS_PER_DEG, 360 * CELLS_PER_DEG
STRIDE = _COLS + 1


def cell_of(lat: float, lon: float) -> int:
    """The cell of a position: rows of latitude from the south pole, columns of longitude from the antimeridian."""
    return int((lat + 90.0) * CELLS_PER_DEG) * STRIDE + int((lon + 180.0) * CELLS_PER_DEG)


class AreaIndex:
    """Which approach areas a position is in. For each cell: the areas that hold it whole, and those to test."""

    def __init__(self, areas: Iterable[ApproachArea]):
        cells: dict[int, tuple[list[ApproachArea], list[ApproachArea]]] = {}
        for area in areas:
            for cell, whole in dict(area.cells()).items():
                cells.setdefault(cell, ([], []))[0 if whole else 1].append(area)
        # cell_of -> (areas holding the whole cell, areas to test)
        self.cells = {c: (tuple(whole), tuple(part)) for c, (whole, part) in cells.items()}

    def inside(self, lat: float, lon: float) -> list[ApproachArea]:
        near = self.cells.get(cell_of(lat, lon))
        if near is None:
            return []
        whole, part = near
        return [*whole, *(a for a in part if a.contains(lat, lon))]


def step(inside: dict[str, datetime | None], areas_now: Sequence[ApproachArea], at: datetime | None
         ) -> Sequence[ApproachArea]:
    """Move a vessel's `inside` (zone -> entry time, updated in place) to `areas_now`, the areas its new position is
    in; return those it has just entered, recorded as entered at `at` (None: the time is not known, as for a vessel's
    first position, which may be long after it entered)."""
    if len(areas_now) <= 1:  # in one area or none: almost always (written out, as it runs for most positions)
        if not areas_now:
            inside.clear()
            return ()
        area = areas_now[0]
        if area.zone in inside:
            if len(inside) > 1:
                kept = inside[area.zone]
                inside.clear()
                inside[area.zone] = kept
            return ()
        inside.clear()
        inside[area.zone] = at
        return areas_now
    entered = [a for a in areas_now if a.zone not in inside]
    if len(inside) != len(areas_now) - len(entered):  # it left some
        still = {a.zone for a in areas_now}
        for zone in [z for z in inside if z not in still]:
            del inside[zone]
    for a in entered:
        inside[a.zone] = at
    return entered
