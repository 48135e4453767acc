"""What the common operating picture shows one viewer: GeoJSON, today's timeline, the list, the calendar.

Every item passes the visibility function chat uses (`views.op_view`, `ioc.markings.may_show`) with the viewer's
agency clearance; an item above it is left out entirely — no id, shape, count or placeholder anywhere.
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

from watchfloor.ioc.markings import may_show
from watchfloor.ioc.model import (LIVE_STATUSES, OPEN_CONFLICT_STATUSES, OpStatus, conflict_ref, op_ref,
                                 target_ref)
from watchfloor.ioc.zones import Zone
from watchfloor.storage import operations as ops_repo
from watchfloor.storage import vessels as vessels_repo
from watchfloor.storage.tables import AuditRow, ConflictRow, OperationRow, TargetRow

from .briefing import local_day
from .views import op_view, place, vessel_label

EARTH_M = 6_371_008.8
CONFLICT_COLOR = "#d7191c"
# Colour-blind-safe and none of them the conflict red: an agency keeps its colour on every page and day.
PALETTE = ("#1f78b4", "#33a02c", "#ff7f00", "#6a3d9a", "#b15928", "#01665e", "#8c510a", "#e7298a")
TIMELINE_W, ROW_H, LABEL_W, RIGHT_PAD = 960, 26, 90, 14


def agency_color(code: str) -> str:
    return PALETTE[int(hashlib.sha256(code.encode()).hexdigest(), 16) % len(PALETTE)]


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
    """One read for both the map (live operations) and today's timeline and list (those meeting the zone's
    local day, done ones too): `live` and `of_today` take each its part."""
    day0, _ = local_day(now, zone)  # at or before now
    return shown_rows(s, zone.code, clearance, (*LIVE_STATUSES, OpStatus.DONE.value),
                      (day0, now + timedelta(days=3650)), lookback, 7000)


def live(rows, now: datetime, lookback: timedelta) -> list[Any]:
    return [r for r in rows if r.status in LIVE_STATUSES and r.end_at > now and r.start_at > now - lookback][:5000]


def of_today(rows, zone: Zone, now: datetime) -> list[Any]:
    day0, day1 = local_day(now, zone)
    return [r for r in rows if r.start_at < day1 and r.end_at > day0][:2000]


def conflicted_ops(s: Session, zone: str, clearance) -> dict[int, list[str]]:
    """Operations in an open or acknowledged conflict the viewer may see: op id -> ["CF-4 open", "CF-5 acked"]."""
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


def geojson(s: Session, zone: Zone, clearance, now: datetime, lookback: timedelta, approach=None,
            rows=None) -> str:
    """The viewer's live operations, targets and the approach area as RFC 7946 GeoJSON text (`rows`: from
    `picture_rows`, read here when not given).

    Built as text from cached shapes: serialising 2,000 polygons again on every change was most of its time."""
    ops = live(picture_rows(s, zone, clearance, now, lookback) if rows is None else rows, now, lookback)
    conflicted = conflicted_ops(s, zone.code, clearance)
    keys = {r.vessel_key for r in ops if r.vessel_key}
    targets = [t for t in s.exec(select(TargetRow.id, TargetRow.agency_code, TargetRow.marking, TargetRow.name,
                                        TargetRow.priority, TargetRow.vessel_key)
                                 .where(TargetRow.zone_code == zone.code, TargetRow.status == "open")
                                 .order_by(TargetRow.id)).all()
               if may_show(t.marking, clearance)]
    keys |= {t.vessel_key for t in targets}
    where = _vessel_positions(s, keys)
    features: list[str] = []
    if approach is not None:
        ring = ([[lon, lat] for lat, lon in approach.polygon] + [[approach.polygon[0][1], approach.polygon[0][0]]]
                if approach.polygon else approach_ring(approach.lat, approach.lon, approach.radius_nm * 1852.0))
        features.append(_json({"type": "Feature", "geometry": geometry(ring),
                               "properties": {"kind": "approach", "id": f"{zone.code} approach"}}))
    for row in ops:
        lat, lon = row.lat, row.lon
        if lat is None and row.vessel_key in where:
            lat, lon = where[row.vessel_key]
        if lat is not None:
            features.append(_op_feature(row, tuple(conflicted.get(row.id, ())), lat, lon))
    for t in targets:
        if t.vessel_key in where:
            lat, lon = where[t.vessel_key]
            features.append(_json({"type": "Feature", "id": target_ref(t.id),
                                   "geometry": {"type": "Point", "coordinates": [round(lon, 6), round(lat, 6)]},
                                   "properties": {"kind": "target", "id": target_ref(t.id), "agency": t.agency_code,
                                                  "marking": t.marking, "name": t.name or "",
                                                  "priority": t.priority}}))
    return '{"type":"FeatureCollection","features":[' + ",".join(features) + "]}"


@functools.lru_cache(maxsize=8192)
def _op_feature(row, conflicts: tuple[str, ...], lat: float, lon: float) -> str:
    """One operation's GeoJSON Feature text, for the row as read (every column the map shows) and what the
    viewer sees of its conflicts: after a change, the operations it did not touch come from here."""
    ref = op_ref(row.id)
    props = {"kind": "op", "id": ref, "agency": row.agency_code, "type": row.type,
             "start": _utc(row.start_at), "end": _utc(row.end_at), "marking": row.marking,
             "status": row.status, "vessel": vessel_label(row.vessel_key), "center": [round(lon, 6), round(lat, 6)],
             "radius_m": row.radius_m, "conflict": bool(conflicts), "conflicts": list(conflicts),
             "color": agency_color(row.agency_code)}
    return (f'{{"type":"Feature","id":{_json(ref)},"geometry":{_circle_json(lat, lon, row.radius_m)},'
            f'"properties":{_json(props)}}}')


def _vessel_positions(s: Session, keys) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for v in vessels_repo.tracks_for_keys(s, [k for k in keys if k]):
        if v.lat is None:
            continue
        for key in (f"imo:{v.imo}" if v.imo else None, f"mmsi:{v.mmsi}"):
            if key in keys:
                out[key] = (v.lat, v.lon)
    return out


def fingerprint(body: str) -> str:
    """Short digest of what one viewer sees: the live stream's event id, so a reconnect sends only news."""
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def change_mark(s: Session, zone: str) -> tuple:
    """Cheap to read every poll (each an index's last entry); moves whenever something the page shows may have
    changed."""
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
    """One operation on today's timeline and in the list, its values ready to print (2,000 of them: the
    template only places them)."""
    ref: str
    agency: str
    type: str
    vessel: str
    place: str
    status: str
    marking: str
    start: str  # HH:MM, zone time
    end: str
    end_zone: str  # the zone's abbreviation at the end (PST, PDT)
    conflict: bool
    conflicts: str
    fill: str
    x: float
    y: int
    w: float


def _day_x(t: datetime, day0: datetime, span: float) -> float:
    """Where `t` falls on the timeline of the day starting at `day0` (`span` seconds long)."""
    return round(LABEL_W + max(0.0, min(1.0, (t - day0).total_seconds() / span)) * (TIMELINE_W - LABEL_W - RIGHT_PAD),
                 1)


@functools.lru_cache(maxsize=8192)
def _bar(r, conflicts: tuple[str, ...], day0: datetime, day1: datetime, tz, y: int) -> Bar:
    """One operation's bar and list row, for the row as read, what the viewer sees of its conflicts and its
    place on the day: after a change, the operations it did not touch come from here."""
    span = (day1 - day0).total_seconds()
    x0, x1 = _day_x(r.start_at, day0, span), _day_x(r.end_at, day0, span)
    start, end = r.start_at.astimezone(tz), r.end_at.astimezone(tz)
    return Bar(op_ref(r.id), r.agency_code, r.type, vessel_label(r.vessel_key), place(r), r.status, r.marking,
               f"{start.hour:02d}:{start.minute:02d}", f"{end.hour:02d}:{end.minute:02d}", end.tzname() or "",
               bool(conflicts), ", ".join(conflicts), CONFLICT_COLOR if conflicts else agency_color(r.agency_code),
               x0, y, max(2.0, round(x1 - x0, 1)))


def today(s: Session, zone: Zone, clearance, now: datetime, lookback: timedelta, rows=None) -> dict[str, Any]:
    """Today's operations (zone local day) for the timeline and the list, laid out for the SVG (`rows`: from
    `picture_rows`, read here when not given)."""
    day0, day1 = local_day(now, zone)
    rows = of_today(picture_rows(s, zone, clearance, now, lookback) if rows is None else rows, zone, now)
    conflicted = conflicted_ops(s, zone.code, clearance)
    span = (day1 - day0).total_seconds()

    def x(t: datetime) -> float:
        return _day_x(t, day0, span)

    agencies = sorted({r.agency_code for r in rows})
    rows_y = {a: 20 + i * ROW_H for i, a in enumerate(agencies)}
    colors = {a: agency_color(a) for a in agencies}
    items = [_bar(r, tuple(conflicted.get(r.id, ())), day0, day1, zone.tz, rows_y[r.agency_code] + 3) for r in rows]
    hours = [{"x": x(day0 + timedelta(hours=h)), "label": f"{h:02d}"} for h in range(0, 25, 3)]
    return {"items": items, "agencies": [{"code": a, "y": y, "color": colors[a]} for a, y in rows_y.items()],
            "hours": hours, "now_x": x(now), "width": TIMELINE_W, "label_w": LABEL_W, "bar_h": ROW_H - 6,
            "height": 20 + max(1, len(agencies)) * ROW_H + 4, "day": day0}


def calendar_rows(s: Session, zone: str, clearance) -> list[tuple[OperationRow, dict[str, Any]]]:
    return visible(ops_repo.listing(s, zone, limit=2000, newest=True), clearance)


def calendar(s: Session, zone: Zone, clearance, render) -> bytes:
    """The zone's operations as iCalendar; `render(template, **data)` gives the words (templates/cop/)."""
    from icalendar import Calendar, Event  # only the feed needs it

    cal = Calendar()
    cal.add("prodid", "-//watchfloor//common operating picture//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", render("cop/ics_name.j2", zone=zone).strip())
    for row, view in calendar_rows(s, zone.code, clearance):
        ev = Event()
        ev.add("uid", f"op-{row.id}-{zone.code.lower()}@watchfloor")
        ev.add("sequence", row.revision - 1)  # RFC 5545 counts revisions from 0
        ev.add("dtstamp", row.updated_at.astimezone(UTC))
        ev.add("last-modified", row.updated_at.astimezone(UTC))
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
