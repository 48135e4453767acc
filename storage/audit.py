"""The append-only audit trail with a hash chain: every record holds the hash of the one before it.

`verify` walks the chain and names the first record that was altered or removed; the chain head kept in the
kv table catches a removed last record too.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, select

from . import locks
from .kv import kv_get, kv_set
from .tables import AuditRow

GENESIS = "0" * 64
_CHAIN_LOCK = locks.AUDIT_CHAIN
_HEAD_KEY = "audit.head"


def _digest(prev_hash: str, row: AuditRow) -> str:
    body = {
        "at": row.at.isoformat(timespec="microseconds") if row.at else None,
        "actor": row.actor,
        "agency": row.agency_code,
        "room": row.room,
        "zone": row.zone_code,
        "command": row.command,
        "action": row.action,
        "entity": row.entity,
        "detail": row.detail,
    }
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canon).encode("utf-8")).hexdigest()


def _normalize_at(at: datetime) -> datetime:
    # Hash what the database gives back: an aware UTC time.
    return at.astimezone(UTC)


def hold_chain(s: Session) -> None:
    """Take the audit chain's lock now rather than at the first record: for code that locks conflict rows
    before it appends (see the lock order in storage/locks.py)."""
    locks.hold(s, _CHAIN_LOCK)


def append(
    s: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    entity: str | None = None,
    detail: dict | None = None,
    agency: str | None = None,
    room: str | None = None,
    zone: str | None = None,
    command: str | None = None,
) -> AuditRow:
    hold_chain(s)
    last = s.exec(select(AuditRow).order_by(AuditRow.id.desc()).limit(1)).first()
    prev = last.hash if last else GENESIS
    row = AuditRow(
        at=_normalize_at(at), actor=actor, agency_code=agency, room=room, zone_code=zone, command=command,
        action=action, entity=entity, detail=json.dumps(detail or {}, sort_keys=True, default=str),
        prev_hash=prev, hash="",
    )
    row.hash = _digest(prev, row)
    s.add(row)
    s.flush()
    kv_set(s, _HEAD_KEY, json.dumps({"id": row.id, "hash": row.hash}), at)
    return row


def chained(s: Session, *, at: datetime, actor: str, zone: str | None,
            records: list[tuple[str, str | None, dict]]) -> list[tuple]:
    """Many records at once, linked as `append` links them one at a time: (at, actor, zone_code, action, entity,
    detail, prev_hash, hash) tuples for a bulk insert, in order. Takes the chain's lock; after inserting them, the
    caller records the new head with `set_head`."""
    hold_chain(s)
    last = s.exec(select(AuditRow.hash).order_by(AuditRow.id.desc()).limit(1)).first()
    prev = last or GENESIS
    at = _normalize_at(at)
    out = []
    for action, entity, detail in records:
        row = AuditRow(at=at, actor=actor, zone_code=zone, action=action, entity=entity,
                       detail=json.dumps(detail or {}, sort_keys=True, default=str), prev_hash=prev, hash="")
        row.hash = _digest(prev, row)
        out.append((at, actor, zone, action, entity, row.detail, prev, row.hash))
        prev = row.hash
    return out


def set_head(s: Session, last_id: int, last_hash: str, at: datetime) -> None:
    kv_set(s, _HEAD_KEY, json.dumps({"id": last_id, "hash": last_hash}), at)


@dataclass
class ChainProblem:
    record_id: int | None
    reason: str

    def __str__(self) -> str:
        where = f"record {self.record_id}" if self.record_id is not None else "the end of the trail"
        return f"{where}: {self.reason}"


def _rows(s: Session, batch: int = 5000) -> Iterator[AuditRow]:
    last_id = 0
    while True:
        rows = s.exec(select(AuditRow).where(AuditRow.id > last_id).order_by(AuditRow.id).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id


def verify(s: Session) -> tuple[int, ChainProblem | None]:
    """Return (records checked, first problem or None)."""
    prev_hash = GENESIS
    prev_id = None
    count = 0
    for row in _rows(s):
        count += 1
        if _digest(row.prev_hash, row) != row.hash:
            return count, ChainProblem(row.id, "was altered (its content does not match its hash)")
        if row.prev_hash != prev_hash:
            # The row itself is intact, so what it followed is gone: name the missing ids where we can.
            first = (prev_id or 0) + 1
            if row.id - first >= 1:
                missing = f"{first}" if row.id - first == 1 else f"{first}..{row.id - 1}"
                return count, ChainProblem(int(first), (
                    f"was removed (record {row.id} does not follow "
                    f"{f'record {prev_id}' if prev_id is not None else 'the start'}; missing id {missing})"))
            after = f"record {prev_id}" if prev_id is not None else "the start"
            return count, ChainProblem(row.id, f"does not follow {after}: its link was altered")
        prev_hash, prev_id = row.hash, row.id
    head = kv_get(s, _HEAD_KEY)
    if head:
        expected = json.loads(head)
        if expected["hash"] != prev_hash:
            return count, ChainProblem(
                expected["id"], "was removed (the trail ends before the last record written)")
    return count, None
