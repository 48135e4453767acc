"""The stored outbox: every message the bot posts is written here first and marked sent only after the
platform accepted it, so an outage delays messages, a crash loses none, and order per room is kept."""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, event, func, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col, select

from .tables import OutboxRow

PENDING, SENT, DEAD = "pending", "sent", "dead"


def enqueue(s: Session, *, room: str, kind: str, payload: dict[str, Any], now: datetime,
            dedupe_key: str | None = None, origin: tuple[str, str] | None = None,
            status: str = PENDING) -> OutboxRow | None:
    """Store a message to send. With a dedupe_key that was used before, nothing is stored and None returned."""
    row = OutboxRow(
        room=room, kind=kind, payload=json.dumps(payload, ensure_ascii=False), status=status,
        next_attempt_at=now, created_at=now, dedupe_key=dedupe_key,
        origin_room=origin[0] if origin else None, origin_event=origin[1] if origin else None,
        sent_at=now if status == SENT else None,
    )
    if dedupe_key is None:
        s.add(row)
        s.flush()
    else:
        try:
            with s.begin_nested():
                s.add(row)
                s.flush()
        except IntegrityError:
            return None
    if status == PENDING:
        s.info.setdefault(_NOTIFY, set()).add(room.split(":", 1)[0])
    return row


# Wake-ups across replicas (PostgreSQL): a transaction that stored rows to send says so at commit, one NOTIFY
# per platform, which the server delivers only if the transaction commits; the replica delivering that platform
# LISTENs (bot/duties.py). Polling remains the fallback for a notification lost with a connection.
OUTBOX_CHANNEL = "watchfloor_outbox"
_NOTIFY = "watchfloor.outbox_notify"


@event.listens_for(OrmSession, "before_commit")
def _notify_at_commit(s: OrmSession) -> None:
    platforms = s.info.pop(_NOTIFY, None)
    if not platforms or s.get_bind().dialect.name != "postgresql":
        return
    for platform in sorted(platforms):
        s.execute(text("SELECT pg_notify(:channel, :platform)"), {"channel": OUTBOX_CHANNEL, "platform": platform})


@event.listens_for(OrmSession, "after_rollback")
def _no_notify_after_rollback(s: OrmSession) -> None:
    s.info.pop(_NOTIFY, None)


def due(s: Session, room_prefix: str, now: datetime, busy: frozenset[str] = frozenset(),
        limit: int = 100) -> list[OutboxRow]:
    """The oldest pending message of each room of a platform, if its retry time has come.

    Only the head of each room's queue is offered, so a message waiting on a retry holds back the ones after it
    and the room's order is kept. Read through the pending index (one small row per room), not every pending
    row; rooms in `busy` are being sent and left out."""
    firsts = s.exec(select(OutboxRow.room, func.min(OutboxRow.id)).where(
        OutboxRow.status == PENDING, col(OutboxRow.room).startswith(room_prefix),
    ).group_by(OutboxRow.room)).all()
    ids = sorted(first for room, first in firsts if room not in busy)
    heads: list[OutboxRow] = []
    for i in range(0, len(ids), 500):
        heads += s.exec(select(OutboxRow).where(col(OutboxRow.id).in_(ids[i:i + 500]))).all()
    heads.sort(key=lambda r: r.id)
    return [r for r in heads if r.next_attempt_at <= now][:limit]


def heads_of(s: Session, rows: list[OutboxRow]) -> list[OutboxRow]:
    """Of rows just stored, those with nothing older waiting in their room: they may be sent at once."""
    if not rows:
        return []
    # One read for every room (the pending index gives each room's first row): it runs inside the command's
    # transaction, which must not cost a round trip per room.
    firsts = dict(s.exec(select(OutboxRow.room, func.min(OutboxRow.id)).where(
        OutboxRow.status == PENDING, col(OutboxRow.room).in_(sorted({r.room for r in rows})),
    ).group_by(OutboxRow.room)).all())
    by_room: dict[str, list[OutboxRow]] = {}
    for r in sorted(rows, key=lambda r: r.id):
        by_room.setdefault(r.room, []).append(r)
    return [r for room, rs in by_room.items() if rs[0].id == firsts.get(room) for r in rs]


def mark_sent(s: Session, row_id: int, remote_id: str | None, now: datetime) -> None:
    row = s.get(OutboxRow, row_id)
    row.status, row.remote_id, row.sent_at, row.last_error = SENT, remote_id, now, None
    s.add(row)


def mark_retry(s: Session, row_id: int, error: str, now: datetime, delay: timedelta,
               max_attempts: int | None = None) -> None:
    row = s.get(OutboxRow, row_id)
    row.attempts += 1
    row.last_error = error[:500]
    row.next_attempt_at = now + delay
    if max_attempts is not None and row.attempts >= max_attempts:
        row.status = DEAD
    s.add(row)


def mark_failed(s: Session, row_id: int, error: str, now: datetime, delay: timedelta, *, row_fault: bool,
                unexpected: bool, max_unexpected: int, dead_after: timedelta) -> bool:
    """Record a send the platform did not take; True when the row is now dead.

    `row_fault` says the platform answers otherwise (its health check passed), so the failure is this row's:
    only then does the row's own clock run and do unplanned errors count. During an outage rows wait, however
    long it lasts. A row is dead after `max_unexpected` unplanned errors, or after failing for `dead_after`.
    """
    row = s.get(OutboxRow, row_id)
    row.attempts += 1
    row.last_error = error[:500]
    row.next_attempt_at = now + delay
    if not row_fault:
        row.failing_since = None
    else:
        row.failing_since = row.failing_since or now
        if unexpected:
            row.unexpected_errors += 1
        if row.unexpected_errors >= max_unexpected or now - _aware(row.failing_since) >= dead_after:
            row.status = DEAD
    s.add(row)
    return row.status == DEAD


def record_page(s: Session, row_id: int, page_ids: list[str | None]) -> None:
    """Remember the pages of a long message already posted, so a retry posts only the rest."""
    row = s.get(OutboxRow, row_id)
    row.page_ids = json.dumps(page_ids)
    s.add(row)


def prune(s: Session, before: datetime, batch: int = 5000) -> int:
    """Delete sent and dead rows settled before `before`; returns how many. Pending rows are never pruned.

    The id map (which platform id a relayed copy got) is these rows: what is younger than `before` stays, so
    edits, replies and removals of recent messages still find their copies. Deleted in batches so a large
    backlog does not hold one long transaction."""
    total = 0
    for status, stamp in ((SENT, OutboxRow.sent_at), (DEAD, OutboxRow.created_at)):
        while True:
            ids = s.exec(select(OutboxRow.id).where(OutboxRow.status == status, stamp < before)
                         .limit(batch)).all()
            if not ids:
                break
            s.exec(delete(OutboxRow).where(col(OutboxRow.id).in_(ids)))
            total += len(ids)
            if len(ids) < batch:
                break
    return total


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def backoff(attempts: int, base: float = 1.0, cap: float = 60.0) -> timedelta:
    return timedelta(seconds=min(cap, base * (2 ** min(attempts, 10))))


def depth(s: Session) -> tuple[int, datetime | None]:
    n, oldest = s.exec(select(func.count(OutboxRow.id), func.min(OutboxRow.created_at))
                       .where(OutboxRow.status == PENDING)).one()
    return n, oldest


def copies_of(s: Session, origin_room: str, origin_event: str) -> Sequence[OutboxRow]:
    """The relayed copies of one message, in every room it went to."""
    return s.exec(select(OutboxRow).where(
        OutboxRow.origin_room == origin_room, OutboxRow.origin_event == origin_event,
        OutboxRow.kind == "relay")).all()


def origin_of(s: Session, room: str, remote_id: str) -> OutboxRow | None:
    """The outbox row that produced a message the bot posted in a room (to recognise its own relays)."""
    return s.exec(select(OutboxRow).where(OutboxRow.room == room, OutboxRow.remote_id == remote_id)).first()


def payload(row: OutboxRow) -> dict[str, Any]:
    return json.loads(row.payload)
