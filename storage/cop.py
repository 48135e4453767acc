"""Tokens of the common operating picture: issued at random, stored as their SHA-256, checked on every request."""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from .cop_tables import CopTokenRow

LINK, SESSION, CALENDAR = "link", "session", "calendar"
LINK_TTL = timedelta(minutes=10)
SESSION_TTL = timedelta(hours=12)
# Bytes of randomness: a calendar URL sits in calendar apps for months, so it gets the longer token.
_BYTES = {LINK: 32, SESSION: 32, CALENDAR: 48}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(s: Session, kind: str, user_id: str, zone: str, now: datetime) -> str:
    """A new token of `kind`; only its digest is kept, the caller hands the token itself to the person."""
    token = secrets.token_urlsafe(_BYTES[kind])
    ttl = {LINK: LINK_TTL, SESSION: SESSION_TTL}.get(kind)
    s.add(CopTokenRow(kind=kind, token_hash=digest(token), user_id=user_id, zone_code=zone, created_at=now,
                      expires_at=now + ttl if ttl else None))
    s.flush()
    return token


def _find(s: Session, kind: str, token: str) -> CopTokenRow | None:
    if not token or len(token) > 200:
        return None
    return s.exec(select(CopTokenRow).where(CopTokenRow.token_hash == digest(token), CopTokenRow.kind == kind)).first()


def redeem_link(s: Session, token: str, now: datetime) -> tuple[CopTokenRow | None, str]:
    """The link's row and "ok", or None and why not: "unknown", "used" or "expired".

    Marked used by one conditional UPDATE, so two requests racing with one link cannot both open a session."""
    row = _find(s, LINK, token)
    if row is None:
        return None, "unknown"
    if row.used_at is not None:
        return None, "used"
    if row.expires_at <= now:
        return None, "expired"
    taken = s.exec(update(CopTokenRow).where(col(CopTokenRow.id) == row.id, col(CopTokenRow.used_at).is_(None))
                   .values(used_at=now))
    if taken.rowcount != 1:
        return None, "used"
    return row, "ok"


def session(s: Session, token: str, now: datetime) -> CopTokenRow | None:
    row = _find(s, SESSION, token)
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    return row


def calendar(s: Session, token: str) -> CopTokenRow | None:
    row = _find(s, CALENDAR, token)
    return None if row is None or row.revoked_at is not None else row


def revoke_calendars(s: Session, user_id: str, now: datetime) -> int:
    result = s.exec(update(CopTokenRow).where(col(CopTokenRow.user_id) == user_id, col(CopTokenRow.kind) == CALENDAR,
                                              col(CopTokenRow.revoked_at).is_(None)).values(revoked_at=now))
    return result.rowcount
