"""The watch in alerts: whom an alert calls by name, which agencies have nobody on watch, and snoozes that end.

Apart from the command handlers (commands/watch_cmd.py): the deconfliction and the scheduled jobs use these, and
the handlers import the deconfliction through their context.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
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

from .directory import Directory, Room
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
        say_change(s, directory, deconfliction, cf, now, change="woke")
    return rows


def say_change(s: Session, directory: Directory, deconfliction, cf: ConflictRow, now: datetime, change: str,
               rooms: list[Room] | None = None, edit: bool = True) -> None:
    """A change of a conflict the scheduler made (woken, escalated, closed by itself), said once in each watch
    room of its zone (or in `rooms`), in the thread of the alert carrying it where there is one; Slack changes
    that alert by this notice (bot/slack/alerts.py), Matrix by an edit of its own (`edit_alerts`, unless `edit`
    is False: the caller edits once for all rooms). The words are conflict_changed.j2's, by `change`."""
    ops = ops_repo.by_ids(s, [i for i in (cf.op_a, cf.op_b) if i is not None])
    target = s.get(TargetRow, cf.target_id) if cf.target_id else None
    endorsers = targets_repo.endorsers(s, cf.target_id) if cf.target_id else []
    zone = get_zone(cf.zone_code)

    def data(clearance):
        view = conflict_view(cf, ops, target, endorsers, clearance)
        if view["withheld"] and deconfliction is not None:
            view["held_in"] = deconfliction.detail_rooms(cf.zone_code, cf.marking)
        return {"tz": zone.tz, "zone": zone, "conflict": view, "change": change, "at": now}

    told = [room for room in (directory.zone_rooms(cf.zone_code, "watch") if rooms is None else rooms)
            # A room configured not to learn that withheld items exist is not told.
            if room.show_withheld or may_show(cf.marking, room.clearance)]
    threads = threads_of(s, [room.id for room in told], cf.id)
    for room in told:
        # `conflict_state`: which of the alert's buttons still apply (bot/slack/alerts.py).
        post(s, room, "notice", "conflict_changed.j2", data, now,
             extra={"conflict_update": cf.id, "conflict_state": cf.status, **threads[room.id]})
    if edit and deconfliction is not None:
        edit_alerts(s, directory, deconfliction, cf, now)


def watch_zones(s: Session, directory: Directory, now: datetime) -> frozenset[str]:
    """The zones that keep a watch: those with `handover_times`, and any where someone stood a watch in the last
    day. Only there does "nobody of theirs is on watch" bring escalation forward: a zone that never uses
    `watch` keeps the contract's 15 minutes instead of escalating everything after 5."""
    configured = {z.code for z in directory.settings.zone if z.handover_times}
    return frozenset(configured | set(watch_repo.zones_watched(s, now - KEPT_WATCH, now)))


KEPT_WATCH = timedelta(hours=24)


def announce(s: Session, directory: Directory, zone_code: str, shift: WatchShiftRow, change: str, now: datetime,
             told: Room | None = None) -> None:
    """A watch started, ended or lapsed, said once in each of the zone's watch rooms. The room of the supervisor
    who said it (`told`) has their answer already: a chat room's is public, so it is left out; a console's is
    theirs alone, so the console room gets it for everyone else (`said_to`: not shown to them again)."""
    zone = get_zone(zone_code)
    for room in directory.zone_rooms(zone_code, "watch"):
        extra: dict[str, Any] = {"watch_change": change}
        if told is not None and room.id == told.id:
            if room.platform != "console":
                continue
            extra["said_to"] = shift.person
        post(s, room, "notice", "watch_announce.j2", lambda _c: {"tz": zone.tz, "z": zone, "who": person(shift),
                                                                 "change": change}, now, extra=extra)


def end_lapsed(s: Session, directory: Directory, now: datetime) -> list[WatchShiftRow]:
    """Watches whose `until` has passed end now, each said once in its zone's watch rooms (the lock and the
    `ended_at` written here make a second run, or a second leader, find nothing)."""
    zones = sorted({r.zone_code for r in watch_repo.lapsed(s, now, lock=False)})
    if not zones:
        return []
    # The lock order of storage/locks.py, as a `watch` command takes them: the zones' locks, then the rest.
    locks.hold(s, *(locks.deconfliction_lock(z) for z in zones))
    hold_chain(s)
    rows = [r for r in watch_repo.lapsed(s, now) if r.zone_code in zones]
    for row in rows:
        row.ended_at = row.until
        s.add(row)
        audit(s, at=now, actor="scheduler", action="watch.lapse", entity=None, zone=row.zone_code,
              detail={"person": row.person, "agency": row.agency_code, "until": row.until.isoformat()})
        announce(s, directory, row.zone_code, row, "lapsed", now)
    return rows


RECENT_ALERTS = 200  # per room: an alert older than this many is history, not the watch's list of live ones


def alerts_carrying(s: Session, room_ids, cf_id: int) -> dict[str, list[OutboxRow]]:
    """The posted alerts and escalations of the rooms that carry a conflict, newest first per room: one query
    for any number of rooms (each room's latest RECENT_ALERTS looked through)."""
    room_ids = sorted(set(room_ids))
    if not room_ids:
        return {}
    recent = func.row_number().over(partition_by=OutboxRow.room, order_by=col(OutboxRow.id).desc())
    latest = select(OutboxRow.id, recent.label("recent")).where(
        col(OutboxRow.room).in_(room_ids), col(OutboxRow.kind).in_(("alert", "escalation")),
        col(OutboxRow.remote_id).is_not(None)).subquery()
    rows = s.exec(select(OutboxRow).join(latest, latest.c.id == OutboxRow.id)
                  .where(latest.c.recent <= RECENT_ALERTS).order_by(col(OutboxRow.id).desc())).all()
    out: dict[str, list[OutboxRow]] = {}
    for r in rows:
        if cf_id in conflicts_in(r):
            out.setdefault(r.room, []).append(r)
    return out


def conflicts_in(row: OutboxRow) -> list[int]:
    """The conflicts a posted alert or escalation carries."""
    return [int(i) for i in json.loads(row.payload).get("conflicts") or []]


def carried(s: Session, room: Room) -> set[int]:
    """The conflicts the room's posted alerts and escalations carry (one read for many conflicts). A console
    room's alerts are never "posted" somewhere else: it has none to change."""
    if room.platform == "console":
        return set()
    rows = s.exec(select(OutboxRow.payload).where(
        OutboxRow.room == room.id, col(OutboxRow.kind).in_(("alert", "escalation")),
        col(OutboxRow.remote_id).is_not(None)).order_by(col(OutboxRow.id).desc()).limit(RECENT_ALERTS)).all()
    return {int(i) for p in rows for i in json.loads(p).get("conflicts") or []}


def threads_of(s: Session, room_ids, cf_id: int) -> dict[str, dict[str, str]]:
    """Where a change of the conflict is said on Matrix, per room: in the thread of its latest alert there
    (m.thread); one query for all the rooms. A room without one (or not on Matrix) maps to {}."""
    room_ids = list(room_ids)
    alerts = alerts_carrying(s, [r for r in room_ids if r.startswith("matrix:")], cf_id)
    return {r: ({"thread_root": alerts[r][0].remote_id} if alerts.get(r) else {}) for r in room_ids}


# bot/slack/adapter.py's prefix of the event id of a button press or a reaction: its reply changes the alert itself.
SLACK_ACTION = "slack-action:"


def edit_alerts(s: Session, directory: Directory, deconfliction, cf: ConflictRow, now: datetime,
                also: Room | None = None) -> int:
    """Alerts kept current where they were posted, on Matrix: each posted alert or escalation carrying the
    conflict is replaced (m.replace) by itself as it stands now, owner, outcome or snooze shown. Slack alerts are
    changed by the notice itself (bot/slack/alerts.py), which goes to every watch channel but the one where the
    change was asked for: that one (`also`, see `own_alert`) is edited here (chat.update), and so are the
    district's escalations on every platform, since no notice goes to a district room. Returns the number of
    edits queued.

    The same few queries however many rooms and alerts: the alerts of every room in one, the conflicts they
    show in one, and what those conflicts show (`alert_facts`) once for all."""
    rooms = {r.id: r for r in directory.zone_rooms(cf.zone_code, "watch") if r.platform == "matrix"}
    rooms.update({r.id: r for r in directory.district_rooms(get_zone(cf.zone_code).district)
                  if r.platform != "console"})
    if also is not None:
        rooms[also.id] = also
    alerts = alerts_carrying(s, rooms, cf.id)
    if not alerts:
        return 0
    ids = sorted({i for rows in alerts.values() for row in rows for i in conflicts_in(row)})
    conflicts = {c.id: c for c in s.exec(select(ConflictRow).where(col(ConflictRow.id).in_(ids))).all()}
    facts = deconfliction.alert_facts(s, cf.zone_code, list(conflicts.values()), now)
    queued = 0
    for room_id, rows in sorted(alerts.items()):
        for row in rows:
            shown = [conflicts[i] for i in sorted(set(conflicts_in(row))) if i in conflicts]
            deconfliction._post_alert(s, rooms[room_id], cf.zone_code, shown, [], now, None, kind="edit",
                                      target_id=row.remote_id, escalation=row.kind == "escalation", facts=facts)
            queued += 1
    return queued


def own_alert(room: Room, event_id: str) -> Room | None:
    """The Slack channel a conflict command was typed in (slash or `!`), whose alert no notice changes: a
    notice goes only to the other watch channels, and only a button's or a reaction's answer changes the alert
    it was given on. None elsewhere (Matrix rooms are all edited anyway)."""
    return room if room.platform == "slack" and not event_id.startswith(SLACK_ACTION) else None
