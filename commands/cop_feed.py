"""What the common operating picture shows one viewer: GeoJSON, today's timeline, the list, the calendar.

Every item passes the visibility function chat uses (`views.op_view`, `ioc.markings.may_show`) with the viewer's
agency clearance; an item above it is left out entirely — no id, shape, count or placeholder anywhere.
"""
from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, func, select

from watchfloor.ioc.markings import may_show
from watchfloor.ioc.model import LIVE_STATUSES, OPEN_CONFLICT_STATUSES, OpStatus, conflict_ref, target_ref
from watchfloor.ioc.zones import Zone
from watchfloor.storage import operations as ops_repo
from watchfloor.storage import vessels as vessels_repo
from watchfloor.storage.tables import AuditRow, ConflictRow, OperationRow, TargetRow

from .briefing import local_day
from .views import op_view

EARTH_M = 6_371_008.8
CONFLICT_COLOR = "#d7191c"
# Colour-blind-safe and none of them the conflict red: an agency keeps its colour on every page and day.
PALETTE = ("#1f78b4", "#33a02c", "#ff7f00", "#6a3d9a", "#b15928", "#01665e", "#8c510a", "#e7298a")
TIMELINE_W, ROW_H, LABEL_W, RIGHT_PAD = 960, 26, 90, 14


def agency_color(code: str) -> str:
    return PALETTE[int(hashlib.sha256(code.encode()).hexdigest(), 16) % len(PALETTE)]


_SIDES = 32
_UNIT = [(math.cos(2 * math.pi * i / _SIDES), math.sin(2 * math.pi * i / _SIDES)) for i in range(_SIDES)]


def circle_ring(lat: float, lon: float, radius_m: float) -> list[list[float]]:
    """A circle as a closed ring of [lon, lat] points (RFC 7946 order), counter-clockwise.

    Locally flat: operations are at most tens of kilometres across, where the error is far below a pixel, and
    the page draws thousands of them."""
    dlat = math.degrees(radius_m / EARTH_M)
    dlon = dlat / max(math.cos(math.radians(lat)), 1e-6)
    ring = [[round(lon + dlon * c, 6), round(lat + dlat * s, 6)] for c, s in _UNIT]
    ring.append(ring[0])
    return ring


def approach_ring(lat: float, lon: float, radius_m: float, n: int = 96) -> list[list[float]]:
    """A large circle (the approach area, ~50 nm) on the sphere, counter-clockwise [lon, lat]."""
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


def _utc(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def visible(rows, clearance) -> list[tuple[OperationRow, dict[str, Any]]]:
    out = []
    for row in rows:
        view = op_view(row, clearance)
        if not view["withheld"]:
            out.append((row, view))
    return out


def conflicted_ops(s: Session, zone: str, clearance) -> dict[int, list[str]]:
    """Operations in an open or acknowledged conflict the viewer may see: op id -> ["CF-4 open", "CF-5 acked"]."""
    rows = s.exec(select(ConflictRow).where(ConflictRow.zone_code == zone,
                                            col(ConflictRow.status).in_(OPEN_CONFLICT_STATUSES))
                  .order_by(ConflictRow.id)).all()
    out: dict[int, list[str]] = {}
    for cf in rows:
        if may_show(cf.marking, clearance):
            for i in (cf.op_a, cf.op_b):
                if i is not None:
                    out.setdefault(i, []).append(f"{conflict_ref(cf.id)} {cf.status}")
    return out


def live_rows(s: Session, zone: str, now: datetime, lookback: timedelta) -> list[OperationRow]:
    return ops_repo.listing(s, zone, statuses=LIVE_STATUSES, window=(now, now + timedelta(days=3650)),
                            lookback=lookback, limit=5000)


def geojson(s: Session, zone: Zone, clearance, now: datetime, lookback: timedelta, approach=None) -> dict[str, Any]:
    ops = visible(live_rows(s, zone.code, now, lookback), clearance)
    conflicted = conflicted_ops(s, zone.code, clearance)
    keys = {r.vessel_key for r, _ in ops if r.vessel_key}
    targets = [t for t in s.exec(select(TargetRow).where(TargetRow.zone_code == zone.code,
                                                         TargetRow.status == "open")).all()
               if may_show(t.marking, clearance)]
    keys |= {t.vessel_key for t in targets}
    where = _vessel_positions(s, keys)
    features: list[dict[str, Any]] = []
    if approach is not None:
        ring = ([[lon, lat] for lat, lon in approach.polygon] + [[approach.polygon[0][1], approach.polygon[0][0]]]
                if approach.polygon else approach_ring(approach.lat, approach.lon, approach.radius_nm * 1852.0))
        features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                         "properties": {"kind": "approach", "id": f"{zone.code} approach"}})
    for row, view in ops:
        lat, lon = row.lat, row.lon
        if lat is None and row.vessel_key in where:
            lat, lon = where[row.vessel_key]
        if lat is None:
            continue
        features.append({
            "type": "Feature", "id": view["ref"],
            "geometry": {"type": "Polygon", "coordinates": [circle_ring(lat, lon, row.radius_m)]},
            "properties": {"kind": "op", "id": view["ref"], "agency": row.agency_code, "type": row.type,
                           "start": _utc(row.start_at), "end": _utc(row.end_at), "marking": row.marking,
                           "status": row.status, "vessel": view["vessel"], "center": [round(lon, 6), round(lat, 6)],
                           "radius_m": row.radius_m,
                           "conflict": row.id in conflicted, "conflicts": conflicted.get(row.id, []),
                           "color": agency_color(row.agency_code)},
        })
    for t in targets:
        if t.vessel_key in where:
            lat, lon = where[t.vessel_key]
            features.append({"type": "Feature", "id": target_ref(t.id),
                             "geometry": {"type": "Point", "coordinates": [round(lon, 6), round(lat, 6)]},
                             "properties": {"kind": "target", "id": target_ref(t.id), "agency": t.agency_code,
                                            "marking": t.marking, "name": t.name or "", "priority": t.priority}})
    return {"type": "FeatureCollection", "features": features}


def _vessel_positions(s: Session, keys) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for v in vessels_repo.tracks_for_keys(s, [k for k in keys if k]):
        if v.lat is None:
            continue
        for key in (f"imo:{v.imo}" if v.imo else None, f"mmsi:{v.mmsi}"):
            if key in keys:
                out[key] = (v.lat, v.lon)
    return out


def fingerprint(data: dict[str, Any]) -> str:
    """Short digest of what one viewer sees: the live stream's event id, so a reconnect sends only news."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def change_mark(s: Session, zone: str) -> tuple:
    """Cheap to read every half second; moves whenever something the page shows may have changed."""
    audit = s.exec(select(func.max(AuditRow.id)).where(AuditRow.zone_code == zone)).one()
    ops = s.exec(select(func.max(OperationRow.updated_at)).where(OperationRow.zone_code == zone)).one()
    from watchfloor.storage.vessel_tables import VesselRow

    vessels = s.exec(select(func.max(VesselRow.updated_at))).one()
    return audit, ops, vessels


def today(s: Session, zone: Zone, clearance, now: datetime, lookback: timedelta) -> dict[str, Any]:
    """Today's operations (zone local day) for the timeline and the list, laid out for the SVG."""
    day0, day1 = local_day(now, zone)
    rows = ops_repo.listing(s, zone.code, window=(day0, day1), lookback=lookback, limit=2000,
                            statuses=(*LIVE_STATUSES, OpStatus.DONE.value))
    ops = visible(rows, clearance)
    conflicted = conflicted_ops(s, zone.code, clearance)
    span = (day1 - day0).total_seconds()

    def x(t: datetime) -> float:
        return round(LABEL_W + max(0.0, min(1.0, (t - day0).total_seconds() / span)) * (TIMELINE_W - LABEL_W - RIGHT_PAD), 1)

    agencies = sorted({r.agency_code for r, _ in ops})
    rows_y = {a: 20 + i * ROW_H for i, a in enumerate(agencies)}
    items = []
    for row, view in ops:
        x0, x1 = x(row.start_at), x(row.end_at)
        items.append({**view, "conflict": row.id in conflicted, "conflicts": conflicted.get(row.id, []),
                      "color": agency_color(row.agency_code),
                      "x": x0, "w": max(2.0, x1 - x0), "y": rows_y[row.agency_code] + 3, "h": ROW_H - 6})
    hours = [{"x": x(day0 + timedelta(hours=h)), "label": f"{h:02d}"} for h in range(0, 25, 3)]
    return {"items": items, "agencies": [{"code": a, "y": y, "color": agency_color(a)} for a, y in rows_y.items()],
            "hours": hours, "now_x": x(now), "width": TIMELINE_W, "label_w": LABEL_W,
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
