"""Tokens of the common operating picture: issued at random, stored as their SHA-256, checked on every request;
and the palette slot each agency keeps in a zone."""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from .cop_tables import CopColourRow, CopTokenRow

LINK, SESSION, CALENDAR = "link", "session", "calendar"
LINK_TTL = timedelta(minutes=10)
SESSION_TTL = timedelta(hours=12)
# Bytes of randomness: a calendar URL sits in calendar apps for months, so it gets the longer token.
_BYTES = {LINK: 32, SESSION: 32, CALENDAR: 48}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(s: Session, kind: str, user_id: str, zone: str, now: datetime, agency: str | None = None,
          clearance: str | None = None) -> str:
    """A new token of `kind`; only its digest is kept, the caller hands the token itself to the person.
    `agency` and `clearance` (markings, space-separated): the person as the room that asked knew them."""
    token = secrets.token_urlsafe(_BYTES[kind])
    ttl = {LINK: LINK_TTL, SESSION: SESSION_TTL}.get(kind)
    s.add(CopTokenRow(kind=kind, token_hash=digest(token), user_id=user_id, zone_code=zone, created_at=now,
                      expires_at=now + ttl if ttl else None, agency_code=agency, clearance=clearance))
    s.flush()
    return token


def _find(s: Session, kind: str, token: str) -> CopTokenRow | None:
    if not token or len(token) > 200:
        return None
    return s.exec(select(CopTokenRow).where(CopTokenRow.token_hash == digest(token), CopTokenRow.kind == kind)).first()


def redeem_link(s: Session, token: str, now: datetime) -> tuple[CopTokenRow | None, str]:
    """The link's row and "ok", or None and why not: "unknown", "used" or "expired".

    Two checks: a link already used says so (also once its ten minutes are over), and the use itself is one
    conditional UPDATE, so of two requests racing with one link only the one whose UPDATE took the row opens a
    session (tests/test_cop_guards.py breaks each)."""
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


def revoke(s: Session, user_id: str, now: datetime) -> dict[str, int]:
    """End everything the person holds: calendar feeds, open page sessions and links not used yet. Counts by
    kind."""
    out = {}
    for kind in (CALENDAR, SESSION, LINK):
        q = update(CopTokenRow).where(col(CopTokenRow.user_id) == user_id, col(CopTokenRow.kind) == kind,
                                      col(CopTokenRow.revoked_at).is_(None))
        if kind == LINK:
            q = q.where(col(CopTokenRow.used_at).is_(None))
        # a link is ended by using it up; a session or feed by revoking it
        out[kind] = s.exec(q.values(used_at=now) if kind == LINK else q.values(revoked_at=now)).rowcount
    return out


def end_session(s: Session, token: str, now: datetime) -> CopTokenRow | None:
    """Sign-out: the session ends now. Its row, or None when it was not a live session."""
    row = session(s, token, now)
    if row is not None:
        s.exec(update(CopTokenRow).where(col(CopTokenRow.id) == row.id).values(revoked_at=now))
    return row


def revocation_mark(s: Session):
    """Moves whenever a session or feed is revoked anywhere (an index's last entry): open live streams then look
    at their own session again."""
    return s.exec(select(func.max(CopTokenRow.revoked_at))).one()


def colour_slots(s: Session, zone: str, agencies) -> dict[str, int]:
    """Each agency's palette slot in the zone; one not seen before gets the lowest slot free, kept from then on.
    Two replicas giving a slot at once: the loser reads the winner's."""
    wanted = set(agencies)
    have = {r.agency_code: r.slot for r in s.exec(select(CopColourRow).where(CopColourRow.zone_code == zone)).all()}
    for agency in sorted(wanted - have.keys()):
        while agency not in have:
            taken = set(have.values())
            slot = next(i for i in range(len(taken) + 1) if i not in taken)
            try:
                with s.begin_nested():
                    s.add(CopColourRow(zone_code=zone, agency_code=agency, slot=slot))
                have[agency] = slot
            except IntegrityError:  # another replica gave this agency, or this slot, first: read theirs
                have = {r.agency_code: r.slot
                        for r in s.exec(select(CopColourRow).where(CopColourRow.zone_code == zone)).all()}
    return {a: have[a] for a in wanted}
