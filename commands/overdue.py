"""Operations that outlive their plan: which are overdue now, and the one nudge each gets in its zone's joint rooms.

The rule is ioc/overdue.py's. The nudge goes once per operation, end and room: the key (operation, its end, room)
in the outbox's UNIQUE dedupe_key makes a second leader, a restart or the next minute's run post nothing more,
while a new end that passes in turn nudges once again. The scheduler's leader runs it every minute
(bot/scheduler.py).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from watchfloor.ioc.markings import may_show
from watchfloor.ioc.model import LIVE_STATUSES, op_ref
from watchfloor.ioc.overdue import OVERDUE_AFTER
from watchfloor.ioc.zones import Zone, all_zones
from watchfloor.storage.tables import OperationRow, OutboxRow

from .directory import Directory
from .errors import CommandError
from .posting import post
from .values import parse_end
from .views import op_view

# Listings look this far back for operations nobody closed: a zone's history holds many never closed (imports,
# years of it), and one forgotten for more than a week is history, not the watch's business.
SHOWN_FOR = timedelta(days=7)
# A nudge later than this (the bot was down for a day) would be news to nobody; listings still show it.
NUDGE_WITHIN = timedelta(hours=24)


def overdue_in_zone(s: Session, zone_code: str, now: datetime, max_operation: timedelta,
                    within: timedelta = SHOWN_FOR, limit: int = 200) -> list[OperationRow]:
    """The zone's operations overdue at `now` whose end was within `within`, oldest end first.

    Bounded below by the longest allowed operation, so the (zone, start) window index reads only that stretch.
    """
    due = now - OVERDUE_AFTER
    q = select(OperationRow).where(
        OperationRow.zone_code == zone_code,
        col(OperationRow.start_at) > now - within - max_operation,
        col(OperationRow.start_at) < due,
        col(OperationRow.end_at) > now - within,
        col(OperationRow.end_at) <= due,
        col(OperationRow.status).in_(LIVE_STATUSES),
    ).order_by(OperationRow.end_at, OperationRow.id).limit(limit)
    return list(s.exec(q).all())


def nudge_key(row: OperationRow, room_id: str) -> str:
    return f"overdue:{row.id}:{row.end_at.isoformat(timespec='minutes')}:{room_id}"[:255]


def nudge_overdue(db, directory: Directory, now: datetime, max_operation: timedelta) -> int:
    """Nudge every operation overdue at `now` (within NUDGE_WITHIN of its end) that has not been: its zone's joint
    rooms cleared for its marking get one notice each. Each zone in its own transaction. Returns the rows posted."""
    posted = 0
    for zone in all_zones().values():  # 37 indexed look-ups a minute
        posted += db.transaction(lambda s, z=zone: _nudge_zone(s, directory, z, now, max_operation))
    return posted


def _nudge_zone(s: Session, directory: Directory, zone: Zone, now: datetime, max_operation: timedelta) -> int:
    rows = overdue_in_zone(s, zone.code, now, max_operation, within=NUDGE_WITHIN)
    if not rows:
        return 0
    # A fixed room order, so replicas racing for the same keys take them in the same order.
    rooms = sorted(directory.zone_rooms(zone.code, "joint"), key=lambda r: r.id)
    wanted = {(row.id, room.id): nudge_key(row, room.id) for row in rows for room in rooms
              # A room not cleared for the marking gets nothing, not even that it exists. The console room is
              # one rendering per clearance: each reader sees it only if cleared (the template's `op.withheld`).
              if room.platform == "console" or may_show(row.marking, room.clearance)}
    done = set(s.exec(select(OutboxRow.dedupe_key).where(col(OutboxRow.dedupe_key).in_(list(wanted.values())))))
    posted = 0
    for row in rows:
        suggest = suggested_end(row, now, zone)
        for room in rooms:
            key = wanted.get((row.id, room.id))
            if key is None or key in done:
                continue

            def data(clearance, r=row):
                return {"op": op_view(r, clearance, now=now), "suggest": suggest, "tz": zone.tz}

            if post(s, room, "notice", "overdue_nudge.j2", data, now,
                    extra={"zone": zone.code, "overdue": op_ref(row.id)}, dedupe_key=key) is not None:
                posted += 1
    return posted


def suggested_end(row: OperationRow, now: datetime, zone: Zone) -> str:
    """The `end=` the nudge offers: the next half hour at least 30 minutes away, as `23:30` when `op update`
    reads that back as the same time (it is on the start's day or the night after), else with its date."""
    soon = now + timedelta(minutes=30)
    local = soon.astimezone(zone.tz)
    spare = timedelta(minutes=local.minute % 30, seconds=local.second, microseconds=local.microsecond)
    end = soon + (timedelta(minutes=30) - spare if spare else timedelta(0))
    hhmm = f"{end.astimezone(zone.tz):%H:%M}"
    try:
        if parse_end(hhmm, row.start_at, zone.tz, now) == end:
            return hhmm
    except CommandError:  # a wall-clock time that does not exist that night: say it with its date
        pass
    return f"{end.astimezone(zone.tz):%Y-%m-%dT%H:%M}"
