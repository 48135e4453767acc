"""The handover digest at a change of watch: what the incoming watch takes over. Everything passes the room's
clearance, as in the briefing; posted by `handover` and at the zone's `handover_times` (bot/scheduler.py)."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from watchfloor.ioc.markings import may_show
from watchfloor.ioc.model import LIVE_STATUSES, OPEN_CONFLICT_STATUSES, ConflictStatus
from watchfloor.ioc.zones import Zone, get_zone
from watchfloor.storage import operations as ops_repo
from watchfloor.storage import targets as targets_repo
from watchfloor.storage import watch as watch_repo
from watchfloor.storage.tables import ConflictRow, OutboxRow

from .briefing_arrivals import arrival_views, arrivals as arrivals_due
from .directory import Directory, Room
from .overdue import overdue_in_zone
from .posting import post
from .target_eta import with_best_etas
from .views import conflict_view, op_view
from .watch_alerts import person

HORIZON = timedelta(hours=12)
MAX_OPERATION = timedelta(days=7)  # bounds the look-back of "active now" on the window index


def build_handover(s: Session, directory: Directory, zone: Zone, at: datetime, clearance, reader=None,
                   show_withheld: bool = True) -> dict[str, Any]:
    horizon = at + HORIZON
    rows = list(s.exec(select(ConflictRow).where(
        ConflictRow.zone_code == zone.code, col(ConflictRow.status).in_(OPEN_CONFLICT_STATUSES))
        .order_by(ConflictRow.id)).all())
    ops = ops_repo.by_ids(s, {i for cf in rows for i in (cf.op_a, cf.op_b) if i is not None})
    targets = targets_repo.with_endorsers(s, {cf.target_id for cf in rows if cf.target_id is not None})
    unacked, acked = [], []
    for cf in rows:
        target, endorsers = targets.get(cf.target_id, (None, [])) if cf.target_id else (None, [])
        v = conflict_view(cf, ops, target, endorsers, clearance, reader)
        with_best_etas(s, [(target, v)], at)
        if v["withheld"] and not show_withheld:
            continue
        if v["withheld"]:
            v["held_in"] = [r.id for r in directory.zone_rooms(zone.code, "watch")
                            if r.platform != "console" and may_show(cf.marking, r.clearance)]
        v["age"] = _age(at - cf.raised_at)
        (acked if cf.status == ConflictStatus.ACKED.value else unacked).append(v)

    window = ops_repo.listing(s, zone.code, statuses=LIVE_STATUSES, window=(at, horizon), lookback=MAX_OPERATION,
                              limit=500)
    active, starting, overdue, withheld_ops = [], [], [], 0
    for row in window:
        v = op_view(row, clearance, reader, now=at)
        if v["withheld"]:
            withheld_ops += 1
            continue
        (active if row.start_at <= at else starting).append(v)
    # Past their end and nobody closed them: the incoming watch chases them up (commands/overdue.py).
    for row in overdue_in_zone(s, zone.code, at, MAX_OPERATION):
        v = op_view(row, clearance, reader, now=at)
        if v["withheld"]:
            withheld_ops += 1
            continue
        overdue.append(v)

    arriving, best, cdc, others = arrivals_due(s, zone.code, list(targets_repo.open_in_zone(s, zone.code)), at,
                                               horizon)
    endorse = targets_repo.endorsers_of(s, {t.id for t in arriving})
    arrivals = [v for _t, v in arrival_views(arriving, best, cdc, endorse, clearance, reader, show_withheld)]

    on_watch = watch_repo.on_watch(s, zone.code, at)
    # Whose watch ends at this handover: went off in the hour before it, or their `until` is now.
    standing = {p.person for p in on_watch}
    coming_off = [p for p in watch_repo.came_off(s, zone.code, at - timedelta(hours=1), at + timedelta(minutes=1))
                  if p.person not in standing]
    return {"z": zone, "tz": zone.tz, "at": at, "unacked": unacked, "acked": acked, "active": active,
            "starting": starting, "overdue": overdue, "withheld_ops": withheld_ops if show_withheld else 0,
            "arrivals": arrivals,
            "other_arrivals": others, "on_watch": [person(p) for p in on_watch],
            "coming_off": [person(p) for p in coming_off]}


def handover_key(zone_code: str, fire: datetime, room_id: str) -> str:
    return f"handover:{zone_code}:{fire.isoformat(timespec='minutes')}:{room_id}"


def post_handover(db, directory: Directory, zone_code: str, fire: datetime, now: datetime | None = None) -> int:
    """Post the digest of the handover at `fire` to each of the zone's watch rooms and agency addresses not yet
    given it; returns how many it went to now. The (zone, handover time, room) key in the outbox's UNIQUE
    dedupe_key makes a second leader, a restart or a repeated wall-clock hour post nothing more."""
    zone = get_zone(zone_code)
    now = now or fire
    rooms = sorted(directory.zone_rooms(zone.code, "watch"), key=lambda r: r.id) + directory.email_rooms(zone.code)
    keys = {r.id: handover_key(zone.code, fire, r.id) for r in rooms}
    with db.session() as s:
        done = set(s.exec(select(OutboxRow.dedupe_key).where(col(OutboxRow.dedupe_key).in_(list(keys.values())))))
        posted = 0
        for room in rooms:
            if keys[room.id] in done:
                continue
            row = post(s, room, "briefing", "handover.j2", _data_for(s, directory, zone, fire, room), now,
                       extra={"zone": zone.code, "handover": fire.isoformat()}, dedupe_key=keys[room.id])
            posted += row is not None
        return posted


def _data_for(s: Session, directory: Directory, zone: Zone, at: datetime, room: Room):
    cache: dict[Any, dict] = {}

    def data(clearance):
        key = frozenset(clearance)
        if key not in cache:
            cache[key] = build_handover(s, directory, zone, at, clearance, show_withheld=room.show_withheld)
        return cache[key]
    return data


def _age(d: timedelta) -> str:
    minutes = max(0, int(d.total_seconds() // 60))
    days, rest = divmod(minutes, 1440)
    return (f"{days}d " if days else "") + (f"{rest // 60}h " if rest >= 60 else "") + f"{rest % 60}m"
