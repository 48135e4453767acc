"""The watch in alerts: whom an alert calls by name, which agencies have nobody on watch, and snoozes that end.

Apart from the command handlers (commands/watch_cmd.py): the deconfliction and the scheduled jobs use these, and
the handlers import the deconfliction through their context.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from watchfloor.ioc.markings import may_show
from watchfloor.ioc.model import conflict_ref
from watchfloor.ioc.zones import get_zone
from watchfloor.storage import locks
from watchfloor.storage import operations as ops_repo
from watchfloor.storage import targets as targets_repo
from watchfloor.storage import watch as watch_repo
from watchfloor.storage.audit import append as audit
from watchfloor.storage.audit import hold_chain
from watchfloor.storage.tables import ConflictRow, OutboxRow, TargetRow
from watchfloor.storage.watch_tables import WatchShiftRow

from .directory import Directory
from .posting import post
from .views import conflict_view


def person(row: WatchShiftRow) -> dict[str, Any]:
    return {"id": row.person, "name": row.name, "agency": row.agency_code, "since": row.started_at,
            "until": row.until}


def involved(views: list[dict[str, Any]]) -> list[str]:
    """The agencies an alert's conflicts involve, as far as the reader may see them: a withheld side names none."""
    out: set[str] = set()
    for v in views:
        if v.get("withheld"):
            continue
        out.update(op["agency"] for op in v.get("ops", []) if not op.get("withheld"))
        t = v.get("target")
        if t and not t.get("withheld"):
            out.update([t["agency"], *t["endorsers"], *([t["assigned"]] if t["assigned"] else [])])
    return sorted(out)


def alert_watch(people: list[WatchShiftRow], views: list[dict[str, Any]]) -> dict[str, Any]:
    """Who the alert calls (everyone on watch in the zone) and which involved agencies have nobody on watch."""
    on = {p.agency_code for p in people}
    return {"people": [person(p) for p in people], "unwatched": [a for a in involved(views) if a not in on]}


def agencies_of(s: Session, cf: ConflictRow) -> set[str]:
    """Every agency a conflict involves: both operations' agencies, or the target's nominator, endorsers and
    assignee."""
    if cf.target_id is None:
        return {r.agency_code for r in ops_repo.by_ids(s, [i for i in (cf.op_a, cf.op_b) if i is not None]).values()}
    target = s.get(TargetRow, cf.target_id)
    if target is None:
        return set()
    return {target.agency_code, *targets_repo.endorsers(s, target.id), target.assigned_agency} - {None}


def nobody_on_watch_for(s: Session, cf: ConflictRow, now: datetime) -> bool:
    """No supervisor of any agency the conflict involves is on watch in its zone: nobody of theirs will see it."""
    on = {p.agency_code for p in watch_repo.on_watch(s, cf.zone_code, now)}
    return not (agencies_of(s, cf) & on)


def wake_snoozed(s: Session, directory: Directory, now: datetime, deconfliction=None) -> list[ConflictRow]:
    """End the snoozes that are over: each said once in the zone's watch rooms; escalation then resumes."""
    due = (col(ConflictRow.snoozed_until).is_not(None), col(ConflictRow.snoozed_until) <= now)
    zones = sorted(set(s.exec(select(ConflictRow.zone_code).distinct().where(*due)).all()))
    if not zones:
        return []
    # The lock order of storage/locks.py: the zones' locks, in order, then the audit chain's, then the rows.
    locks.hold(s, *(locks.deconfliction_lock(z) for z in zones))
    hold_chain(s)
    rows = list(s.exec(select(ConflictRow).where(*due, col(ConflictRow.zone_code).in_(zones))
                       .order_by(ConflictRow.id).with_for_update()).all())
    for cf in rows:
        cf.snoozed_until = None
        s.add(cf)
        audit(s, at=now, actor="scheduler", action="conflict.wake", entity=conflict_ref(cf.id), zone=cf.zone_code,
              detail={"snoozed_by": cf.snoozed_by})
        if cf.status != "open":
            continue  # acknowledged meanwhile: nothing to wake anyone for
        ops = ops_repo.by_ids(s, [i for i in (cf.op_a, cf.op_b) if i is not None])
        target = s.get(TargetRow, cf.target_id) if cf.target_id else None
        endorsers = targets_repo.endorsers(s, cf.target_id) if cf.target_id else []
        tz = get_zone(cf.zone_code).tz

        def data(clearance, cf=cf, ops=ops, target=target, endorsers=endorsers, tz=tz):
            return {"tz": tz, "conflict": conflict_view(cf, ops, target, endorsers, clearance),
                    "verb": "snooze is over: not acknowledged, escalation resumes"}

        for room in directory.zone_rooms(cf.zone_code, "watch"):
            if not room.show_withheld and not may_show(cf.marking, room.clearance):
                continue
            post(s, room, "notice", "conflict_changed.j2", data, now,
                 extra={"conflict_update": cf.id, **thread_of(s, room.id, cf.id)})
        if deconfliction is not None:
            edit_alerts(s, directory, deconfliction, cf, now)
    return rows


RECENT_ALERTS = 200  # per room: an alert older than this many is history, not the watch's list of live ones


def alerts_carrying(s: Session, room_id: str, cf_id: int) -> list[OutboxRow]:
    """The posted alerts and escalations of a room that carry a conflict, newest first."""
    rows = s.exec(select(OutboxRow).where(
        OutboxRow.room == room_id, col(OutboxRow.kind).in_(("alert", "escalation")),
        col(OutboxRow.remote_id).is_not(None)).order_by(col(OutboxRow.id).desc()).limit(RECENT_ALERTS)).all()
    return [r for r in rows if cf_id in [int(i) for i in json.loads(r.payload).get("conflicts") or []]]


def thread_of(s: Session, room_id: str, cf_id: int) -> dict[str, str]:
    """Where a change of the conflict is said on Matrix: in the thread of its latest alert there (m.thread)."""
    if not room_id.startswith("matrix:"):
        return {}
    alerts = alerts_carrying(s, room_id, cf_id)
    return {"thread_root": alerts[0].remote_id} if alerts else {}


def edit_alerts(s: Session, directory: Directory, deconfliction, cf: ConflictRow, now: datetime) -> int:
    """Alerts kept current where they were posted, on Matrix: each posted alert or escalation carrying the
    conflict is replaced (m.replace) by itself as it stands now, owner, outcome or snooze shown. Slack alerts are
    changed by the notice itself (bot/slack_alerts.py). Returns the number of edits queued."""
    rooms = {r.id: r for r in directory.zone_rooms(cf.zone_code, "watch") if r.platform == "matrix"}
    rooms.update({r.id: r for r in directory.district_rooms(get_zone(cf.zone_code).district)
                  if r.platform == "matrix"})
    queued = 0
    for room_id, room in sorted(rooms.items()):
        for row in alerts_carrying(s, room_id, cf.id):
            ids = [int(i) for i in json.loads(row.payload).get("conflicts") or []]
            shown = list(s.exec(select(ConflictRow).where(col(ConflictRow.id).in_(ids))
                                .order_by(ConflictRow.id)).all())
            deconfliction._post_alert(s, room, cf.zone_code, shown, [], now, None, kind="edit",
                                      target_id=row.remote_id, escalation=row.kind == "escalation")
            queued += 1
    return queued
