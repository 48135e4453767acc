"""Conflict alerts by e-mail: to the agencies they involve (`[[agency]] email_alerts`), and to the zone's
`watch_email` while every chat platform of its watch rooms is down.

The e-mails are outbox rows like any post (rooms `email:<address>`, rendered by templates/mail.py for the
address's clearance) and bot/email/ sends them. They copy the chat alert and say how to act in chat; they never
replace it, and nothing changes them afterwards (an e-mail cannot be edited).
"""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from watchfloor.storage import outbox
from watchfloor.storage.tables import ConflictRow, OutboxRow

from .directory import Directory
from .watch_alerts import agencies_of

# How long every chat platform of a zone's watch rooms must have taken nothing before its alerts go to watch_email.
WATCH_EMAIL_AFTER = timedelta(minutes=5)


def email_alerts(s: Session, deconfliction, zone: str, raised: list[ConflictRow], now: datetime,
                 cause: str | None = None, kind: str = "alert") -> int:
    """Each address of an agency with `email_alerts` in the zone gets the raised conflicts that involve its
    agency (an escalation: `kind="escalation"`), in the transaction that raised them; returns the rows stored."""
    if not raised:
        return 0
    involved = {cf.id: agencies_of(s, cf) for cf in raised}
    stored = 0
    for agency, room in deconfliction.directory.email_alert_rooms(zone):
        mine = [cf for cf in raised if agency in involved[cf.id]]
        if mine:
            stored += deconfliction._post_alert(s, room, zone, mine, [], now, cause, kind=kind) is not None
    return stored


def watch_email_fallback(s: Session, directory: Directory, deconfliction, now: datetime,
                         after: timedelta = WATCH_EMAIL_AFTER) -> int:
    """The zone's alerts waiting in its watch rooms go to its `watch_email` addresses, once each, when every chat
    watch room of the zone has had a message waiting for `after` (every chat platform there is down, or nobody
    delivers it). Read from the outbox, which every replica shares; the dedupe key (alert, address) makes a second
    run, or a second leader, send nothing more. Returns the rows stored."""
    stored = 0
    for z in directory.settings.zone:
        addresses = directory.watch_email_rooms(z.code)
        chat = sorted(r.id for r in directory.zone_rooms(z.code, "watch") if r.platform != "console")
        if not addresses or not chat:
            continue
        oldest = dict(s.exec(select(OutboxRow.room, func.min(OutboxRow.created_at)).where(
            col(OutboxRow.room).in_(chat), OutboxRow.status == outbox.PENDING).group_by(OutboxRow.room)).all())
        if len(oldest) < len(chat) or any(_aware(t) > now - after for t in oldest.values()):
            continue  # some watch room is getting its messages: the watch reads the alerts there
        alerts: dict[tuple[int, ...], None] = {}
        for payload in s.exec(select(OutboxRow.payload).where(
                col(OutboxRow.room).in_(chat), OutboxRow.status == outbox.PENDING, OutboxRow.kind == "alert")
                .order_by(OutboxRow.id)).all():
            ids = tuple(sorted(json.loads(payload).get("raised") or []))
            if ids:
                alerts.setdefault(ids)  # one alert: the same conflicts in each of its rooms
        # A conflict is raised in one alert only: its first id names that alert.
        keys = {(ids, room.id): f"watch-email:{z.code}:CF-{ids[0]}:{room.id}" for ids in alerts for room in addresses}
        sent = set(s.exec(select(OutboxRow.dedupe_key).where(col(OutboxRow.dedupe_key).in_(list(keys.values())))))
        for ids in alerts:
            todo = [room for room in addresses if keys[(ids, room.id)] not in sent]
            if not todo:
                continue
            rows = list(s.exec(select(ConflictRow).where(col(ConflictRow.id).in_(ids)).order_by(ConflictRow.id)))
            for room in todo:
                row = deconfliction._post_alert(s, room, z.code, rows, [], now, None, kind="alert",
                                                dedupe_key=keys[(ids, room.id)])
                stored += row is not None
    return stored


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
