"""Vessels: tracks written in batches, the position history and its retention, notices of arrival."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, func, or_
from sqlmodel import Session, col, select

from watchfloor.ioc.arrivals import Notice
from watchfloor.ioc.tracks import Track, parse_approach

from .vessel_tables import ArrivalNoticeRow, VesselPositionRow, VesselRow

_TRACK_FIELDS = ("imo", "name", "call_sign", "ship_type", "destination", "ais_eta", "lat", "lon", "sog", "cog",
                 "heading", "position_at", "static_at")


def _insert(s: Session):
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def track_values(t: Track, now: datetime) -> dict:
    return {"mmsi": t.mmsi, **{f: getattr(t, f) for f in _TRACK_FIELDS},
            "name": t.name[:40] if t.name else None, "destination": t.destination[:40] if t.destination else None,
            "in_approach": t.approach_text(), "updated_at": now}


def upsert_tracks(s: Session, tracks: Iterable[Track], now: datetime) -> int:
    return upsert_track_rows(s, [track_values(t, now) for t in tracks])


def upsert_track_rows(s: Session, rows: list[dict]) -> int:
    """Write many tracks (`track_values`) at once: insert, or update the row of that MMSI."""
    if not rows:
        return 0
    # One statement run with many parameter sets: compiled once and cached, unlike a multi-row VALUES.
    insert = _insert(s)
    stmt = insert(VesselRow.__table__)
    stmt = stmt.on_conflict_do_update(index_elements=["mmsi"],
                                      set_={c: stmt.excluded[c] for c in rows[0] if c != "mmsi"})
    s.execute(stmt, rows)
    return len(rows)


def add_positions(s: Session, positions: Sequence[dict]) -> None:
    if positions:
        s.execute(VesselPositionRow.__table__.insert(), list(positions))


def prune_positions(s: Session, before: datetime) -> int:
    """Drop history older than the retention; each vessel's latest position stays in its vessel row."""
    return s.execute(delete(VesselPositionRow).where(VesselPositionRow.at < before)).rowcount or 0


def to_track(row: VesselRow) -> Track:
    t = Track(row.mmsi, **{f: getattr(row, f) for f in _TRACK_FIELDS})
    t.in_approach = parse_approach(row.in_approach)
    return t


def load_tracks(s: Session, heard_since: datetime | None = None) -> list[Track]:
    """The stored tracks (those heard since `heard_since`, when given): what a restarted feed resumes from."""
    q = select(VesselRow)
    if heard_since is not None:
        q = q.where(or_(col(VesselRow.position_at) >= heard_since, col(VesselRow.static_at) >= heard_since))
    return [to_track(r) for r in s.exec(q).all()]


def tracks_of_mmsis(s: Session, mmsis: Iterable[str]) -> list[Track]:
    """The stored tracks of these MMSIs (those stored), in chunks that keep each query's parameters few."""
    mmsis = sorted(set(mmsis))
    out: list[Track] = []
    for i in range(0, len(mmsis), 500):
        out += [to_track(r) for r in s.exec(select(VesselRow).where(col(VesselRow.mmsi).in_(mmsis[i:i + 500]))).all()]
    return out


def positions_of(s: Session, mmsi: str, since: datetime | None = None) -> Sequence[VesselPositionRow]:
    q = select(VesselPositionRow).where(VesselPositionRow.mmsi == mmsi)
    if since is not None:
        q = q.where(VesselPositionRow.at >= since)
    return s.exec(q.order_by(VesselPositionRow.at)).all()


def find_tracks(s: Session, kind: str, value: str) -> Sequence[VesselRow]:
    """Vessels by IMO, MMSI or (case-insensitive, exact) name."""
    if kind == "mmsi":
        row = s.get(VesselRow, value)
        return [row] if row else []
    if kind == "imo":
        return s.exec(select(VesselRow).where(VesselRow.imo == value)).all()
    return s.exec(select(VesselRow).where(func.upper(VesselRow.name) == value.upper()).limit(5)).all()


# Every character but letters and digits in AIS's six-bit text (names on AIS are upper case already).
_AIS_PUNCTUATION = " !\"#$%&'()*+,-./:;<=>?@[\\]^_"


def _name_key_sql(column):
    """`ioc.tracks.name_key` in SQL, for names heard on AIS."""
    expr = func.upper(column)
    for ch in _AIS_PUNCTUATION:
        expr = func.replace(expr, ch, "")
    return expr


def tracks_named(s: Session, keys: Iterable[str]) -> dict[str, list[VesselRow]]:
    """Vessel rows by `name_key` of their name, for these keys (a target known by name only)."""
    keys = [k for k in set(keys) if k]
    if not keys:
        return {}
    expr = _name_key_sql(VesselRow.name)
    out: dict[str, list[VesselRow]] = {}
    for row, key in s.exec(select(VesselRow, expr).where(expr.in_(keys))).all():
        out.setdefault(key, []).append(row)
    return out


def tracks_for_keys(s: Session, keys: Iterable[str]) -> Sequence[VesselRow]:
    """Vessel rows matching any of these vessel keys (`imo:...`, `mmsi:...`)."""
    imos = [k[4:] for k in keys if k.startswith("imo:")]
    mmsis = [k[5:] for k in keys if k.startswith("mmsi:")]
    if not imos and not mmsis:
        return []
    return s.exec(select(VesselRow).where(or_(col(VesselRow.imo).in_(imos), col(VesselRow.mmsi).in_(mmsis)))).all()


def add_notices(s: Session, notices: Sequence[Notice], now: datetime) -> list[int]:
    rows = [ArrivalNoticeRow(zone_code=n.zone, vessel_name=n.vessel_name, imo=n.imo, mmsi=n.mmsi,
                             call_sign=n.call_sign, flag=n.flag, eta=n.eta, last_port=n.last_port, cdc=n.cdc,
                             persons=n.persons, submitted=n.submitted, imported_at=now) for n in notices]
    s.add_all(rows)
    s.flush()
    return [r.id for r in rows]


def notices_between(s: Session, zone: str, start: datetime, end: datetime) -> Sequence[ArrivalNoticeRow]:
    return s.exec(select(ArrivalNoticeRow).where(
        ArrivalNoticeRow.zone_code == zone, ArrivalNoticeRow.eta >= start, ArrivalNoticeRow.eta <= end,
    ).order_by(ArrivalNoticeRow.eta, ArrivalNoticeRow.id)).all()


def notices_for(s: Session, zone: str | None, imo: str | None, mmsi: str | None,
                name: str | None = None) -> Sequence[ArrivalNoticeRow]:
    """Notices of one vessel (latest submitted first): by IMO or MMSI, or by name when it has neither."""
    conds = []
    if imo:
        conds.append(ArrivalNoticeRow.imo == imo)
    if mmsi:
        conds.append(ArrivalNoticeRow.mmsi == mmsi)
    if not conds and name:
        conds.append(func.upper(ArrivalNoticeRow.vessel_name) == name.upper())
    if not conds:
        return []
    q = select(ArrivalNoticeRow).where(or_(*conds))
    if zone is not None:
        q = q.where(ArrivalNoticeRow.zone_code == zone)
    return s.exec(q.order_by(col(ArrivalNoticeRow.imported_at).desc(), col(ArrivalNoticeRow.id).desc())).all()


def tracks_heard_since(s: Session, position_since: datetime, static_since: datetime) -> Sequence[VesselRow]:
    """Vessels with a position newer than `position_since`, or a destination reported since `static_since`
    (candidates for an AIS arrival: heading in, or bound for a port of the zone)."""
    return s.exec(select(VesselRow).where(or_(
        (col(VesselRow.position_at) >= position_since) & col(VesselRow.lat).is_not(None),
        (col(VesselRow.static_at) >= static_since) & col(VesselRow.destination).is_not(None),
    ))).all()


def notices_of_keys(s: Session, zones: Iterable[str], keys: Iterable[str]) -> Sequence[ArrivalNoticeRow]:
    """Notices in these zones of any of these vessel keys (`imo:`, `mmsi:`, `name:`), latest first."""
    keys = list(keys)
    imos = [k[4:] for k in keys if k.startswith("imo:")]
    mmsis = [k[5:] for k in keys if k.startswith("mmsi:")]
    names = [k[5:].upper() for k in keys if k.startswith("name:")]
    conds = []
    if imos:
        conds.append(col(ArrivalNoticeRow.imo).in_(imos))
    if mmsis:
        conds.append(col(ArrivalNoticeRow.mmsi).in_(mmsis))
    if names:
        conds.append(func.upper(ArrivalNoticeRow.vessel_name).in_(names))
    if not conds:
        return []
    return s.exec(select(ArrivalNoticeRow).where(col(ArrivalNoticeRow.zone_code).in_(list(zones)), or_(*conds))
                  .order_by(col(ArrivalNoticeRow.imported_at).desc(), col(ArrivalNoticeRow.id).desc())).all()
