"""Exactly-once handling of platform messages: a UNIQUE (platform, event_id) row per message acted on."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from .tables import HandledEventRow


def claim(s: Session, platform: str, event_id: str, at: datetime) -> bool:
    """Record that this message is being handled; False when it was handled before (a retry or a replay).

    Runs inside the transaction that does the work, so the claim and the work commit or vanish together.
    """
    if s.exec(select(HandledEventRow.id).where(
            HandledEventRow.platform == platform, HandledEventRow.event_id == event_id)).first() is not None:
        return False
    try:
        with s.begin_nested():
            s.add(HandledEventRow(platform=platform, event_id=event_id[:255], at=at))
            s.flush()
    except IntegrityError:
        return False
    return True


def prune(s: Session, before: datetime) -> int:
    """Forget messages handled before `before`: no platform sends those again (Slack retries within minutes,
    Matrix resumes from our stored sync token). Returns how many were forgotten."""
    return s.exec(delete(HandledEventRow).where(HandledEventRow.at < before)).rowcount
