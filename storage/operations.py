"""Operations: rows, conversion to the domain, and the indexed look-ups the conflict checks use."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from watchfloor.ioc.geo import BBox, circle_bbox
from watchfloor.ioc.markings import Marking
from watchfloor.ioc.model import LIVE_STATUSES, Operation

from .tables import OperationRow


def to_domain(row: OperationRow) -> Operation:
    return Operation(
        id=row.id, zone=row.zone_code, agency=row.agency_code, type=row.type, start=row.start_at, end=row.end_at,
        lat=row.lat, lon=row.lon, radius_m=row.radius_m, vessel_key=row.vessel_key,
        marking=Marking(row.marking), status=row.status, revision=row.revision,
    )


def set_place(row: OperationRow, lat: float | None, lon: float | None, radius_m: float) -> None:
    """Keep the bounding-box columns in step with the circle: they are what the index search reads."""
    row.lat, row.lon, row.radius_m = lat, lon, radius_m
    if lat is None or lon is None:
        row.min_lat = row.max_lat = row.min_lon = row.max_lon = None
        return
    box = circle_bbox(lat, lon, radius_m)
    row.min_lat, row.max_lat, row.min_lon, row.max_lon = box.min_lat, box.max_lat, box.min_lon, box.max_lon


def get(s: Session, op_id: int) -> OperationRow | None:
    return s.get(OperationRow, op_id)


def get_for_update(s: Session, op_id: int) -> OperationRow | None:
    """The row locked and re-read: an update and a cancel of one operation at once apply one after the other
    (PostgreSQL; SQLite transactions are serialised already)."""
    return s.exec(select(OperationRow).where(OperationRow.id == op_id).with_for_update()
                  .execution_options(populate_existing=True)).first()


def _lon_overlaps(box: BBox):
    """SQL for 'the stored box's longitudes meet the query box'; a stored box may wrap the antimeridian."""
    terms = []
    for lo, hi in box.lon_ranges():
        terms.append(and_(col(OperationRow.min_lon) <= col(OperationRow.max_lon),
                          col(OperationRow.min_lon) <= hi, col(OperationRow.max_lon) >= lo))
        terms.append(and_(col(OperationRow.min_lon) > col(OperationRow.max_lon),
                          or_(col(OperationRow.min_lon) <= hi, col(OperationRow.max_lon) >= lo)))
    return or_(*terms)


def near_in_space_and_time(s: Session, op: Operation, max_operation: timedelta) -> Sequence[OperationRow]:
    """Live operations of the zone whose window meets op's and whose box meets op's box.

    Bounded below by the longest allowed operation so the (zone, start) index scans only the window.
    """
    box = op.bbox()
    if box is None:
        return []
    q = select(OperationRow).where(
        OperationRow.zone_code == op.zone,
        col(OperationRow.start_at) > op.start - max_operation,
        col(OperationRow.start_at) < op.end,
        col(OperationRow.end_at) > op.start,
        col(OperationRow.status).in_(LIVE_STATUSES),
        col(OperationRow.max_lat) >= box.min_lat,
        col(OperationRow.min_lat) <= box.max_lat,
        _lon_overlaps(box),
        OperationRow.id != op.id,
    )
    return s.exec(q).all()


def on_vessel(s: Session, zone: str, vessel_key: str, *, live_only: bool = True,
              around: tuple[datetime, datetime] | None = None) -> Sequence[OperationRow]:
    q = select(OperationRow).where(OperationRow.zone_code == zone, OperationRow.vessel_key == vessel_key)
    if live_only:
        q = q.where(col(OperationRow.status).in_(LIVE_STATUSES))
    if around is not None:
        q = q.where(col(OperationRow.start_at) < around[1], col(OperationRow.end_at) > around[0])
    return s.exec(q).all()


_DOMAIN_COLUMNS = (OperationRow.id, OperationRow.zone_code, OperationRow.agency_code, OperationRow.type,
                   OperationRow.start_at, OperationRow.end_at, OperationRow.lat, OperationRow.lon,
                   OperationRow.radius_m, OperationRow.vessel_key, OperationRow.marking, OperationRow.status,
                   OperationRow.revision)


def current_in_zone(s: Session, zone: str, ending_after: datetime, max_operation: timedelta,
                    starting_before: datetime | None = None) -> dict[int, Operation]:
    """Live operations of a zone not yet over, as domain objects straight from the columns (no ORM rows);
    with `starting_before`, only those starting before it (an import checks the stretch it covers).

    A zone's whole history can hold hundreds of thousands of operations still marked planned; a scan only
    needs those that can still meet another, found through the (zone, start) window index.
    """
    q = select(*_DOMAIN_COLUMNS).where(
        OperationRow.zone_code == zone,
        col(OperationRow.start_at) > ending_after - max_operation,
        col(OperationRow.end_at) > ending_after,
        col(OperationRow.status).in_(LIVE_STATUSES),
    )
    if starting_before is not None:
        q = q.where(col(OperationRow.start_at) < starting_before)
    out = {}
    for (i, z, agency, typ, start, end, lat, lon, radius, vessel, marking, status, rev) in s.exec(q).all():
        out[i] = Operation(id=i, zone=z, agency=agency, type=typ, start=start, end=end, lat=lat, lon=lon,
                           radius_m=radius, vessel_key=vessel, marking=Marking(marking), status=status, revision=rev)
    return out


def by_ids(s: Session, ids: Iterable[int]) -> dict[int, OperationRow]:
    ids = list(ids)
    if not ids:
        return {}
    return {r.id: r for r in s.exec(select(OperationRow).where(col(OperationRow.id).in_(ids))).all()}


def listing(s: Session, zone: str, *, statuses: Iterable[str] | None = None,
            window: tuple[datetime, datetime] | None = None, lookback: timedelta | None = None,
            limit: int = 200, newest: bool = False) -> list[OperationRow]:
    """Operations of a zone in start order. With `window`, those meeting it; `lookback` (the longest allowed
    operation) bounds the start so the window index reads only that stretch, not the zone's whole history.
    `newest` keeps the latest `limit` rather than the earliest."""
    q = select(OperationRow).where(OperationRow.zone_code == zone)
    if statuses is not None:
        q = q.where(col(OperationRow.status).in_(list(statuses)))
    if window is not None:
        q = q.where(col(OperationRow.start_at) < window[1], col(OperationRow.end_at) > window[0])
        if lookback is not None:
            q = q.where(col(OperationRow.start_at) > window[0] - lookback)
    if newest:
        rows = s.exec(q.order_by(col(OperationRow.start_at).desc(), col(OperationRow.id).desc()).limit(limit)).all()
        return list(reversed(rows))
    return list(s.exec(q.order_by(OperationRow.start_at, OperationRow.id).limit(limit)).all())
