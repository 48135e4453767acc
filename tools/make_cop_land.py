"""Builds the common operating picture's built-in coastlines: Natural Earth 1:10m land (from the world-atlas npm
package) clipped to a box around each COTP zone, one small GeoJSON per zone under templates/cop/static/land/.

Run by hand when the zones or the source change (needs shapely, not a runtime dependency):
    npm pack world-atlas@2.0.2 && tar xzf world-atlas-2.0.2.tgz
    python tools/make_cop_land.py package/land-10m.json
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from shapely.geometry import box, mapping, shape

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "templates" / "cop" / "static" / "land"
HALF_LAT, HALF_LON = 1.5, 2.0  # about 90 nm each way: the approach area (50 nm) and then some


def topo_to_geometry(topo: dict):
    (sx, sy), (tx, ty) = topo["transform"]["scale"], topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        pts = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            pts.append((x * sx + tx, y * sy + ty))
        arcs.append(pts)

    def ring(ids):
        out: list = []
        for i in ids:
            pts = arcs[i] if i >= 0 else arcs[~i][::-1]
            out.extend(pts if not out else pts[1:])
        return out

    polys = []
    for g in topo["objects"]["land"]["geometries"]:
        groups = [g["arcs"]] if g["type"] == "Polygon" else g["arcs"]
        polys += [[ring(r) for r in p] for p in groups]
    return shape({"type": "MultiPolygon", "coordinates": polys}).buffer(0)


def _round(coords):
    if isinstance(coords[0], (int, float)):
        return [round(coords[0], 4), round(coords[1], 4)]
    return [_round(c) for c in coords]


def main(source: str) -> None:
    land = topo_to_geometry(json.loads(Path(source).read_text()))
    zones = csv.DictReader((ROOT / "ioc" / "data" / "cotp_zones.csv").read_text().splitlines())
    for z in zones:
        lat, lon = float(z["lat"]), float(z["lon"])
        part = land.intersection(box(lon - HALF_LON, lat - HALF_LAT, lon + HALF_LON, lat + HALF_LAT))
        part = part.simplify(0.001, preserve_topology=True)
        geometry = mapping(part)
        geometry = {"type": geometry["type"], "coordinates": _round(geometry["coordinates"])} if not part.is_empty \
            else {"type": "MultiPolygon", "coordinates": []}
        feature = {"type": "Feature", "properties": {"source": "Natural Earth 1:10m land, world-atlas 2.0.2"},
                   "geometry": geometry}
        (OUT / f"{z['code'].strip()}.geojson").write_text(json.dumps(feature, separators=(",", ":")))


if __name__ == "__main__":
    main(sys.argv[1])
