"""What the common operating picture shows one viewer: the map's GeoJSON (operations, the approach area), the
traffic (vessels heard on AIS, targets with their tracks), the watch's timeline and list, the calendar.

Every item passes the visibility function chat uses (`views.op_view`, `ioc.markings.may_show`) with the viewer's
agency clearance; an item above it is left out entirely — no id, shape, count or placeholder anywhere. AIS traffic
is unclassified, so every vessel is shown; a target keeps its own marking: to a viewer not cleared for it, its
vessel is one more vessel, no different from the others.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, func, select

from watchfloor.ioc.horizon import horizon
from watchfloor.ioc.markings import may_show
from watchfloor.ioc.model import (LIVE_STATUSES, OPEN_CONFLICT_STATUSES, OpStatus, conflict_ref, op_ref,
                                 target_ref)
from watchfloor.ioc.overdue import is_overdue, overdue_since
from watchfloor.ioc.zones import Zone
from watchfloor.storage import cop as cop_repo
from watchfloor.storage import operations as ops_repo
from watchfloor.storage import vessels as vessels_repo
from watchfloor.storage.tables import AuditRow, ConflictRow, OperationRow, TargetRow

from .views import op_view, place, vessel_label

EARTH_M = 6_371_008.8
CONFLICT_COLOR = "#d7191c"
# Each agency of a zone keeps a slot of this palette (storage.cop.colour_slots), the same on the map, the
# timeline and the briefing's picture. Paul Tol's colour-blind-safe "muted" scheme first (nine colours, none of
# them the conflict red), then his "light" scheme for a tenth agency and on: still distinct, less so to everyone.
PALETTE = ("#332288", "#117733", "#88CCEE", "#DDCC77", "#AA4499", "#44AA99", "#999933", "#882255", "#CC6677",
           "#77AADD", "#EE8866", "#EEDD88", "#FFAABB", "#99DDFF", "#44BB99", "#BBCC33", "#AAAA00")
TRAFFIC_AGE = timedelta(minutes=30)  # a vessel not heard for longer is not on the map
TRACK_AGE = timedelta(hours=1)       # how much of a target's track is drawn
TIMELINE_W, ROW_H, LABEL_W, RIGHT_PAD = 960, 24, 96, 8
LABEL_CHAR_W, LABEL_PAD = 7.0, 4     # the bars' 11 px bold labels: a character's width at most, and the gaps


def colour(slot: int) -> str:
    return PALETTE[slot % len(PALETTE)]


def agency_colours(s: Session, zone: str, agencies) -> dict[str, str]:
    """Each agency's colour in the zone, given once and kept (a new agency takes the first colour free)."""
    return {a: colour(slot) for a, slot in cop_repo.colour_slots(s, zone, agencies).items()}


def _luminance(hex_colour: str) -> float:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


@functools.lru_cache(maxsize=64)
def ink(fill: str) -> str:
    """Black or white, whichever contrasts more with `fill` (WCAG's relative luminance): a label on a bar."""
    lum = _luminance(fill)
    return "#000000" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "#ffffff"


_SIDES = 32
_UNIT = [(math.cos(2 * math.pi * i / _SIDES), math.sin(2 * math.pi * i / _SIDES)) for i in range(_SIDES)]
_json = json.JSONEncoder(separators=(",", ":")).encode


def circle_ring(lat: float, lon: float, radius_m: float) -> list[list[float]]:
    """A circle as a closed ring of [lon, lat] points (RFC 7946 order), counter-clockwise.

    Locally flat: operations are at most tens of kilometres across, where the error is far below a pixel, and
    the page draws thousands of them. Near the antimeridian the longitudes run past ±180: see `geometry`."""
    dlat = math.degrees(radius_m / EARTH_M)
    dlon = dlat / max(math.cos(math.radians(lat)), 1e-6)
    ring = [[round(lon + dlon * c, 6), round(lat + dlat * s, 6)] for c, s in _UNIT]
    ring.append(ring[0])
    return ring


def approach_ring(lat: float, lon: float, radius_m: float, n: int = 96) -> list[list[float]]:
    """A large circle (the approach area, ~50 nm) on the sphere, counter-clockwise [lon, lat], longitudes
    continuous (past ±180 near the antimeridian)."""
    d = radius_m / EARTH_M
    la, lo = math.radians(lat), math.radians(lon)
    ring = []
    for i in range(n):
        b = -2 * math.pi * i / n  # bearings clockwise from north; negated, the ring runs counter-clockwise
        lat2 = math.asin(math.sin(la) * math.cos(d) + math.cos(la) * math.sin(d) * math.cos(b))
        lon2 = lo + math.atan2(math.sin(b) * math.sin(d) * math.cos(la), math.cos(d) - math.sin(la) * math.sin(lat2))
        ring.append([round(math.degrees(lon2), 6), round(math.degrees(lat2), 6)])
    ring.append(ring[0])
    return ring


def _clip(ring: list[list[float]], east: bool) -> list[list[float]]:
    """The part of a convex ring east (or west) of longitude 180 (Sutherland-Hodgman on one edge): the
    orientation is kept, and the cut runs along the meridian itself."""
    def inside(p):
        return p[0] >= 180 if east else p[0] <= 180

    out: list[list[float]] = []
    pts = ring[:-1]
    for i, cur in enumerate(pts):
        prev = pts[i - 1]
        if inside(cur) != inside(prev):
            t = (180 - prev[0]) / (cur[0] - prev[0])
            out.append([180.0, round(prev[1] + t * (cur[1] - prev[1]), 6)])
        if inside(cur):
            out.append(cur)
    return out + out[:1] if len(out) >= 3 else []


def geometry(ring: list[list[float]]) -> dict[str, Any]:
    """A Polygon, or where the ring crosses the antimeridian a MultiPolygon cut along it, each part within
    [-180, 180] (RFC 7946 §3.1.9): a client that does not wrap draws each part on its own side."""
    lons = [p[0] for p in ring]
    if min(lons) >= -180 and max(lons) <= 180:
        return {"type": "Polygon", "coordinates": [ring]}
    if min(lons) < -180:
        ring = [[round(x + 360, 6), y] for x, y in ring]
    west = _clip(ring, east=False)
    east = [[round(x - 360, 6), y] for x, y in _clip(ring, east=True)]
    parts = [[p] for p in (west, east) if p]
    return {"type": "MultiPolygon", "coordinates": parts} if len(parts) > 1 else {"type": "Polygon",
                                                                                  "coordinates": parts[0]}


@functools.lru_cache(maxsize=16384)
def _circle_json(lat: float, lon: float, radius_m: float) -> str:
    """An operation's shape as GeoJSON text: the same points as `circle_ring`, printed directly (a third of the
    time). Cached: a shape changes only when its operation moves, so after a change the other 1,999 come from
    here."""
    dlat = math.degrees(radius_m / EARTH_M)
    dlon = dlat / max(math.cos(math.radians(lat)), 1e-6)
    if lon - dlon < -180 or lon + dlon > 180:
        return _json(geometry(circle_ring(lat, lon, radius_m)))
    pts = ["[%.6f,%.6f]" % (lon + dlon * c, lat + dlat * s) for c, s in _UNIT]
    return '{"type":"Polygon","coordinates":[[' + ",".join(pts) + "," + pts[0] + "]]}"


def _utc(t: datetime) -> str:
    """2026-05-01T14:00:00Z (isoformat: a fifth of strftime's time, twice per operation)."""
    return t.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def visible(rows, clearance) -> list[tuple[OperationRow, dict[str, Any]]]:
    out = []
    for row in rows:
        view = op_view(row, clearance)
        if not view["withheld"]:
            out.append((row, view))
    return out


# Just the columns the map, the timeline and the list show, read as plain rows: loading 2,000 ORM objects
# was a third of a page's time. The calendar (notes, contacts) still reads whole rows through `op_view`.
_OP_COLUMNS = (OperationRow.id, OperationRow.agency_code, OperationRow.type, OperationRow.vessel_key,
               OperationRow.lat, OperationRow.lon, OperationRow.radius_m, OperationRow.start_at,
               OperationRow.end_at, OperationRow.marking, OperationRow.status)


def shown_rows(s: Session, zone: str, clearance, statuses, window: tuple[datetime, datetime], lookback: timedelta,
               limit: int) -> list[Any]:
    """The zone's operations meeting `window` that the viewer may see, in start order.

    The same filters as `storage.operations.listing` (so the same window index), and the same rule as chat:
    `may_show` on each row's marking, with the viewer's agency clearance."""
    q = (select(*_OP_COLUMNS)
         .where(OperationRow.zone_code == zone, col(OperationRow.status).in_(list(statuses)),
                col(OperationRow.start_at) < window[1], col(OperationRow.end_at) > window[0],
                col(OperationRow.start_at) > window[0] - lookback)
         .order_by(OperationRow.start_at, OperationRow.id).limit(limit))
    rows = s.exec(q).all()
    allowed: dict[str, bool] = {}  # may_show's answer per marking: the same rule, asked once per value
    out = []
    for r in rows:
        ok = allowed.get(r.marking)
        if ok is None:
            ok = allowed[r.marking] = may_show(r.marking, clearance)
        if ok:
            out.append(r)
    return out


def picture_rows(s: Session, zone: Zone, clearance, now: datetime, lookback: timedelta) -> list[Any]:
    """One read for the map (live operations) and the watch's timeline and list (those meeting the horizon, done
    ones too), and the operations overdue since before the horizon: `live` and `of_horizon` take each its part."""
    h0, _ = horizon(now)
    rows = shown_rows(s, zone.code, clearance, (*LIVE_STATUSES, OpStatus.DONE.value),
                      (h0, now + timedelta(days=3650)), lookback, 7000)
    seen = {r.id for r in rows}
    # Still planned or active long after their end: their agency forgot them, and the watch must see it.
    older = [r for r in shown_rows(s, zone.code, clearance, LIVE_STATUSES, (now - lookback, h0), lookback, 1000)
             if r.id not in seen and is_overdue(r.status, r.end_at, now)]
    return sorted(older + list(rows), key=lambda r: (r.start_at, r.id)) if older else list(rows)


def live(rows, now: datetime, lookback: timedelta) -> list[Any]:
    """The map's operations: live ones not over yet, and overdue ones."""
    return [r for r in rows if r.status in LIVE_STATUSES and (r.end_at > now or is_overdue(r.status, r.end_at, now))
            ][:5000]


def of_horizon(rows, now: datetime) -> list[Any]:
    h0, h1 = horizon(now)
    return [r for r in rows if (r.start_at < h1 and r.end_at > h0) or is_overdue(r.status, r.end_at, now)][:2000]


def conflicted_ops(s: Session, zone: str, clearance) -> dict[int, list[str]]:
    """Operations in an open or acknowledged conflict the viewer may see: op id -> ["CF-4 open", "CF-5 acked"].
    A conflict above the viewer's clearance adds nothing, not even to an operation the viewer sees
    (tests/test_cop_guards.py breaks this)."""
    rows = s.exec(select(ConflictRow.id, ConflictRow.status, ConflictRow.marking, ConflictRow.op_a,
                         ConflictRow.op_b)
                  .where(ConflictRow.zone_code == zone, col(ConflictRow.status).in_(OPEN_CONFLICT_STATUSES))
                  .order_by(ConflictRow.id)).all()
    out: dict[int, list[str]] = {}
    for cf in rows:
        if may_show(cf.marking, clearance):
            for i in (cf.op_a, cf.op_b):
                if i is not None:
                    out.setdefault(i, []).append(f"{conflict_ref(cf.id)} {cf.status}")
    return out


def approach_feature(zone: Zone, approach) -> str:
    ring = ([[lon, lat] for lat, lon in approach.polygon] + [[approach.polygon[0][1], approach.polygon[0][0]]]
            if approach.polygon else approach_ring(approach.lat, approach.lon, approach.radius_nm * 1852.0))
    return _json({"type": "Feature", "geometry": geometry(ring),
                  "properties": {"kind": "approach", "id": f"{zone.code} approach"}})


def geojson(s: Session, zone: Zone, clearance, now: datetime, lookback: timedelta, approach=None,
            rows=None, colours: dict[str, str] | None = None, circles: bool = True) -> str:
    """The viewer's live operations and the approach area as RFC 7946 GeoJSON text (`rows`: from `picture_rows`,
    read here when not given; `colours`: each agency's, from `agency_colours`). Each operation is its circle as a
    polygon, or with `circles=False` its centre as a point (the page draws circles from centre and radius itself,
    and needs no 33 points of each).

    Built as text from cached shapes: serialising 2,000 polygons again on every change was most of its time."""
    ops = live(picture_rows(s, zone, clearance, now, lookback) if rows is None else rows, now, lookback)
    conflicted = conflicted_ops(s, zone.code, clearance)
    if colours is None:
        colours = agency_colours(s, zone.code, {r.agency_code for r in ops})
    where = _vessel_positions(s, {r.vessel_key for r in ops if r.vessel_key and r.lat is None})
    features: list[str] = [approach_feature(zone, approach)] if approach is not None else []
    for row in ops:
        lat, lon = row.lat, row.lon
        if lat is None and row.vessel_key in where:
            lat, lon = where[row.vessel_key]
        if lat is not None:
            features.append(_op_feature(row, tuple(conflicted.get(row.id, ())), lat, lon, colours[row.agency_code],
                                        is_overdue(row.status, row.end_at, now), circles))
    return '{"type":"FeatureCollection","features":[' + ",".join(features) + "]}"


@functools.lru_cache(maxsize=8192)
def _op_feature(row, conflicts: tuple[str, ...], lat: float, lon: float, color: str, overdue: bool,
                circles: bool = True) -> str:
    """One operation's GeoJSON Feature text, for the row as read (every column the map shows) and what the
    viewer sees of its conflicts: after a change, the operations it did not touch come from here."""
    ref = op_ref(row.id)
    props = {"kind": "op", "id": ref, "agency": row.agency_code, "type": row.type,
             "start": _utc(row.start_at), "end": _utc(row.end_at), "marking": row.marking,
             "status": "overdue" if overdue else row.status, "vessel": vessel_label(row.vessel_key),
             "center": [round(lon, 6), round(lat, 6)], "radius_m": row.radius_m, "conflict": bool(conflicts),
             "conflicts": list(conflicts), "color": color}
    shape = _circle_json(lat, lon, row.radius_m) if circles else \
        f'{{"type":"Point","coordinates":[{round(lon, 6)},{round(lat, 6)}]}}'
    return f'{{"type":"Feature","id":{_json(ref)},"geometry":{shape},"properties":{_json(props)}}}'


def _vessel_positions(s: Session, keys) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for v in vessels_repo.tracks_for_keys(s, [k for k in keys if k]):
        if v.lat is None:
            continue
        for key in (f"imo:{v.imo}" if v.imo else None, f"mmsi:{v.mmsi}"):
            if key in keys:
                out[key] = (v.lat, v.lon)
    return out


def traffic(s: Session, zone: Zone, clearance, now: datetime, approach) -> str:
    """The vessels heard in the last TRAFFIC_AGE inside the approach area, and the open targets the viewer may
    see, at their vessels' last positions with their last TRACK_AGE of track, as GeoJSON text.

    A target above the viewer's clearance is not looked at at all: its vessel, if heard, is a plain vessel
    (tests/test_cop_guards.py breaks this)."""
    from watchfloor.storage.vessel_tables import VesselRow

    since = now - TRAFFIC_AGE
    # updated_at moves with every position: its index finds the recent ones without reading every vessel heard.
    heard = s.exec(select(VesselRow).where(col(VesselRow.updated_at) >= since, col(VesselRow.position_at) >= since,
                                           col(VesselRow.lat).is_not(None))
                   .order_by(VesselRow.mmsi)).all()
    vessels = {v.mmsi: v for v in heard if approach is None or approach.contains(v.lat, v.lon)}
    targets = [t for t in s.exec(select(TargetRow.id, TargetRow.agency_code, TargetRow.marking, TargetRow.name,
                                        TargetRow.priority, TargetRow.vessel_key)
                                 .where(TargetRow.zone_code == zone.code, TargetRow.status == "open")
                                 .order_by(TargetRow.id)).all()
               if may_show(t.marking, clearance)]
    targeted: dict[str, tuple[Any, list]] = {}  # mmsi -> (the vessel, wherever and whenever last heard; targets)
    for v in vessels_repo.tracks_for_keys(s, [t.vessel_key for t in targets if t.vessel_key]):
        for t in targets:
            if v.lat is not None and t.vessel_key in (f"imo:{v.imo}" if v.imo else None, f"mmsi:{v.mmsi}"):
                targeted.setdefault(v.mmsi, (v, []))[1].append(t)
    features: list[str] = []
    for mmsi, v in vessels.items():
        if mmsi not in targeted:
            features.append(_json(_vessel_feature(v, zone, now)))
    for mmsi, (v, ts) in targeted.items():
        refs = ", ".join(target_ref(t.id) for t in ts)
        feature = _vessel_feature(v, zone, now)
        feature["id"] = refs
        feature["properties"].update({"kind": "target", "id": refs, "name": ts[0].name or v.name or "",
                                      "agency": ts[0].agency_code, "priority": ts[0].priority,
                                      "marking": ts[0].marking})
        features.append(_json(feature))
        track = [[round(p.lon, 5), round(p.lat, 5)] for p in vessels_repo.positions_of(s, mmsi, now - TRACK_AGE)]
        if len(track) >= 2:
            features.append(_json({"type": "Feature", "id": f"{refs} track",
                                   "geometry": {"type": "LineString", "coordinates": track},
                                   "properties": {"kind": "track", "id": f"{refs} track"}}))
    return '{"type":"FeatureCollection","features":[' + ",".join(features) + "]}"


def _vessel_feature(v, zone: Zone, now: datetime) -> dict[str, Any]:
    course = v.cog if v.cog is not None else (v.heading if v.heading is not None and v.heading != 511 else None)
    eta = v.ais_eta.astimezone(zone.tz).strftime("%a %d %b %H:%M %Z") if v.ais_eta else ""
    age = max(0, int((now - v.position_at).total_seconds() // 60)) if v.position_at else None
    return {"type": "Feature", "id": f"MMSI {v.mmsi}",
            "geometry": {"type": "Point", "coordinates": [round(v.lon, 6), round(v.lat, 6)]},
            "properties": {"kind": "vessel", "id": f"MMSI {v.mmsi}", "name": v.name or "", "mmsi": v.mmsi,
                           "sog": None if v.sog is None else round(v.sog, 1),
                           "course": None if course is None else round(course), "destination": v.destination or "",
                           "eta": eta, "heard_min": age}}


def fingerprint(body: str) -> str:
    """Short digest of what one viewer sees: the live stream's event id, so a reconnect sends only news."""
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def change_mark(s: Session, zone: str) -> tuple:
    """Cheap to read every poll (each an index's last entry); moves whenever something the page shows may have
    changed: (the zone's last audited action, its operations' last update, the vessels' last update)."""
    # The zone's last audited action, leaving out the picture's own (links, logins): a viewer signing in
    # changes nothing anyone sees, and must not make every open page's data be computed again.
    audit = s.exec(select(AuditRow.id).where(AuditRow.zone_code == zone, ~col(AuditRow.action).startswith("cop."))
                   .order_by(col(AuditRow.id).desc()).limit(1)).first()
    ops = s.exec(select(func.max(OperationRow.updated_at)).where(OperationRow.zone_code == zone)).one()
    from watchfloor.storage.vessel_tables import VesselRow

    vessels = s.exec(select(func.max(VesselRow.updated_at))).one()
    return audit, ops, vessels


@dataclass(slots=True, frozen=True)
class Bar:
    """One operation on the timeline and in the list, its values ready to print (2,000 of them: the template only
    places them). Where it goes across the timeline is here; which line of its agency, beside it."""
    ref: str
    agency: str
    type: str
    vessel: str
    place: str
    status: str  # "overdue" for an operation past its end and not closed
    marking: str
    start: str  # Mon 07 Dec 14:00, zone time
    end: str
    end_zone: str  # the zone's abbreviation at the end (PST, PDT)
    conflict: bool
    conflicts: str
    fill: str
    x: float
    w: float
    late_x: float  # an overdue operation's time past its end, up to now (w 0: none)
    late_w: float
    label_w: float  # the label ("OP-n", "OP-n overdue": the template writes it) is at most this wide
    label_x: float
    label_end: bool  # the label's text ends at label_x (placed left of its bar)
    label_ink: str
    left: float  # what the bar and its label cover across the timeline
    right: float


def _x(t: datetime, h0: datetime, span: float) -> float:
    """Where `t` falls on the timeline of the horizon starting at `h0` (`span` seconds long)."""
    return round(LABEL_W + max(0.0, min(1.0, (t - h0).total_seconds() / span)) * (TIMELINE_W - LABEL_W - RIGHT_PAD),
                 1)


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _when(local: datetime) -> str:
    """Mon 07 Dec 14:00 (strftime's "%a %d %b %H:%M" in the C locale the bot runs in, at a fifth of its time)."""
    return f"{_DAYS[local.weekday()]} {local.day:02d} {_MONTHS[local.month - 1]} {local.hour:02d}:{local.minute:02d}"


@functools.lru_cache(maxsize=8192)
def _bar(r, conflicts: tuple[str, ...], h0: datetime, h1: datetime, now: datetime, tz, color: str) -> Bar:
    """One operation's bar and list row, for the row as read, what the viewer sees of its conflicts, its colour
    and the horizon (to the minute): after a change, the operations it did not touch come from here.

    Its label goes inside the bar when it fits, else right of it, else (at the timeline's end) left of it: never
    cut off. What the bar and its label cover decides which line it takes (`lines_for`)."""
    span = (h1 - h0).total_seconds()
    x0, x1 = _x(r.start_at, h0, span), _x(r.end_at, h0, span)
    x1 = max(x1, x0 + 2.0)
    overdue = is_overdue(r.status, r.end_at, now)
    late_x, late_w = (x1, max(0.0, _x(now, h0, span) - x1)) if overdue else (x1, 0.0)
    ref = op_ref(r.id)
    width = (len(ref) + (8 if overdue else 0)) * LABEL_CHAR_W + 2 * LABEL_PAD  # the label: "OP-n[ overdue]"
    fill = CONFLICT_COLOR if conflicts else color
    drawn_right = late_x + late_w
    if x1 - x0 >= width:
        label_x, label_end, label_ink, left, right = x0 + LABEL_PAD, False, ink(fill), x0, drawn_right
    elif drawn_right + width <= TIMELINE_W - RIGHT_PAD:
        label_x, label_end, label_ink, left, right = drawn_right + LABEL_PAD, False, "#111111", x0, drawn_right + width
    else:
        label_x, label_end, label_ink, left, right = x0 - LABEL_PAD, True, "#111111", x0 - width, drawn_right
    start, end = r.start_at.astimezone(tz), r.end_at.astimezone(tz)
    return Bar(ref, r.agency_code, r.type, vessel_label(r.vessel_key), place(r), "overdue" if overdue else r.status,
               r.marking, _when(start), _when(end), end.tzname() or "", bool(conflicts), ", ".join(conflicts), fill,
               x0, round(x1 - x0, 1), late_x, round(late_w, 1), width, label_x, label_end, label_ink, left, right)


def lines_for(extents: list[tuple[float, float]], gap: float = 0.0) -> tuple[list[int], int]:
    """The line each of one agency's items goes on: the first where neither it nor its label meets another's
    (`extents`: what each covers across the timeline, label included), so two operations that overlap in time
    are never drawn over each other. The page's timeline and the briefing's picture both lay out with this.
    Each item's line, and the number of lines."""
    ends: list[float] = []
    lines = [0] * len(extents)
    for i in sorted(range(len(extents)), key=lambda i: extents[i]):
        left, right = extents[i]
        line = next((n for n, end in enumerate(ends) if end + gap <= left), len(ends))
        if line == len(ends):
            ends.append(right)
        else:
            ends[line] = right
        lines[i] = line
    return lines, max(1, len(ends))


def timeline(s: Session, zone: Zone, clearance, now: datetime, lookback: timedelta, rows=None,
             colours: dict[str, str] | None = None) -> dict[str, Any]:
    """The watch's horizon (HORIZON_BACK before now to HORIZON_AHEAD after) for the timeline and the list, laid
    out for the SVG (`rows`: from `picture_rows`, read here when not given)."""
    h0, h1 = horizon(now)
    rows = of_horizon(picture_rows(s, zone, clearance, now, lookback) if rows is None else rows, now)
    conflicted = conflicted_ops(s, zone.code, clearance)
    if colours is None:
        colours = agency_colours(s, zone.code, {r.agency_code for r in rows})
    span = (h1 - h0).total_seconds()
    minute = now.replace(second=0, microsecond=0)
    bars = [_bar(r, tuple(conflicted.get(r.id, ())), h0, h1, minute, zone.tz, colours[r.agency_code]) for r in rows]
    by_agency: dict[str, list[Bar]] = {}
    for bar in bars:
        by_agency.setdefault(bar.agency, []).append(bar)
    top, placed, agencies = 22, [], []
    for agency in sorted(by_agency):
        mine = by_agency[agency]
        lines, count = lines_for([(bar.left, bar.right) for bar in mine], gap=2)
        agencies.append({"code": agency, "y": top, "h": count * ROW_H, "color": colours[agency]})
        placed += [(bar, top + line * ROW_H + 3) for bar, line in zip(mine, lines)]
        top += count * ROW_H
    hours = []
    t = h0.replace(minute=0) + timedelta(hours=1)
    while t < h1:
        local = t.astimezone(zone.tz)
        if local.hour % 3 == 0:
            hours.append({"x": _x(t, h0, span),
                          "label": f"{local:%a} {local.hour:02d}:00" if local.hour == 0 else f"{local.hour:02d}:00"})
        t += timedelta(hours=1)
    return {"items": bars, "placed": placed, "agencies": agencies, "hours": hours, "now_x": _x(now, h0, span),
            "width": TIMELINE_W, "label_w": LABEL_W, "bar_h": ROW_H - 6, "height": top + 18, "start": h0, "end": h1}


def calendar_rows(s: Session, zone: str, clearance) -> list[tuple[OperationRow, dict[str, Any]]]:
    return visible(ops_repo.listing(s, zone, limit=2000, newest=True), clearance)


def calendar(s: Session, zone: Zone, clearance, render, now: datetime) -> bytes:
    """The zone's operations as iCalendar; `render(template, **data)` gives the words (templates/cop/). An
    operation past its end and not closed reads overdue, and counts as modified when it became so."""
    from icalendar import Calendar, Event  # only the feed needs it

    cal = Calendar()
    cal.add("prodid", "-//watchfloor//common operating picture//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", render("cop/ics_name.j2", zone=zone).strip())
    for row, view in calendar_rows(s, zone.code, clearance):
        overdue = is_overdue(row.status, row.end_at, now)
        if overdue:
            view = {**view, "status": "overdue"}
        changed = max(row.updated_at, overdue_since(row.end_at)) if overdue else row.updated_at
        ev = Event()
        ev.add("uid", f"op-{row.id}-{zone.code.lower()}@watchfloor")
        ev.add("sequence", row.revision - 1)  # RFC 5545 counts revisions from 0
        ev.add("dtstamp", changed.astimezone(UTC))
        ev.add("last-modified", changed.astimezone(UTC))
        ev.add("dtstart", row.start_at.astimezone(UTC))
        ev.add("dtend", row.end_at.astimezone(UTC))
        ev.add("summary", render("cop/ics_summary.j2", op=view).strip())
        ev.add("description", render("cop/ics_description.j2", op=view, tz=zone.tz).strip())
        if row.lat is not None:
            ev.add("geo", (row.lat, row.lon))
        ev.add("status", "CANCELLED" if row.status == OpStatus.CANCELLED.value else "CONFIRMED")
        ev.add("class", "PUBLIC" if row.marking == "UNCLASS" else "CONFIDENTIAL")
        cal.add_component(ev)
    return cal.to_ical()
