"""Who is on watch: shifts started, ended, and read as of a time."""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, or_, select

from .watch_tables import WatchShiftRow


def _current(zone: str, now: datetime):
    return (WatchShiftRow.zone_code == zone, col(WatchShiftRow.ended_at).is_(None),
            or_(col(WatchShiftRow.until).is_(None), col(WatchShiftRow.until) > now))


def on_watch(s: Session, zone: str, now: datetime) -> list[WatchShiftRow]:
    """The shifts standing in the zone at `now`, by agency then name. A shift past its `until` has ended by
    itself: nobody needs to say `watch off` at the end of a watch."""
    return list(s.exec(select(WatchShiftRow).where(*_current(zone, now))
                       .order_by(WatchShiftRow.agency_code, WatchShiftRow.name, WatchShiftRow.id)).all())


def shift_of(s: Session, zone: str, person: str, now: datetime) -> WatchShiftRow | None:
    return s.exec(select(WatchShiftRow).where(*_current(zone, now), WatchShiftRow.person == person)
                  .with_for_update()).first()


def go_on(s: Session, zone: str, person: str, name: str, agency: str, now: datetime,
          until: datetime | None) -> tuple[WatchShiftRow, bool]:
    """Start a shift, or move the end of the one standing; returns the shift and whether it is new."""
    row = shift_of(s, zone, person, now)
    new = row is None
    if new:
        row = WatchShiftRow(zone_code=zone, person=person, name=name, agency_code=agency, started_at=now)
    row.until = until
    s.add(row)
    s.flush()
    return row, new


def go_off(s: Session, zone: str, person: str, now: datetime) -> WatchShiftRow | None:
    row = shift_of(s, zone, person, now)
    if row is not None:
        row.ended_at = now
        s.add(row)
    return row


def came_off(s: Session, zone: str, since: datetime, now: datetime) -> list[WatchShiftRow]:
    """Shifts that ended (by `watch off` or at their `until`) in (since, now]: who is coming off."""
    ended = s.exec(select(WatchShiftRow).where(
        WatchShiftRow.zone_code == zone, col(WatchShiftRow.ended_at) > since, col(WatchShiftRow.ended_at) <= now))
    lapsed = s.exec(select(WatchShiftRow).where(
        WatchShiftRow.zone_code == zone, col(WatchShiftRow.ended_at).is_(None),
        col(WatchShiftRow.until) > since, col(WatchShiftRow.until) <= now))
    return sorted({r.id: r for r in [*ended.all(), *lapsed.all()]}.values(), key=lambda r: (r.agency_code, r.name))


def zones_watched(s: Session, since: datetime, now: datetime) -> list[str]:
    """Zones where someone stood a watch at some moment in (since, now]: zones that keep a watch."""
    return sorted(set(s.exec(select(WatchShiftRow.zone_code).distinct().where(
        WatchShiftRow.started_at <= now,
        or_(col(WatchShiftRow.ended_at).is_(None), col(WatchShiftRow.ended_at) > since),
        or_(col(WatchShiftRow.until).is_(None), col(WatchShiftRow.until) > since))).all()))


def lapsed(s: Session, now: datetime, lock: bool = True) -> list[WatchShiftRow]:
    """Shifts whose `until` has passed and that nobody ended yet; locked, so each is ended (and said) once."""
    q = select(WatchShiftRow).where(
        col(WatchShiftRow.ended_at).is_(None), col(WatchShiftRow.until).is_not(None), col(WatchShiftRow.until) <= now)
    q = q.order_by(WatchShiftRow.id)
    return list(s.exec(q.with_for_update() if lock else q).all())
