"""Operations that outlive their plan (the contract's "The day as it really runs").

An operation still planned or active OVERDUE_AFTER after its end is overdue: its agency forgot to close it, or it
ran long. It shows as overdue everywhere (listings, the handover, the page, the calendar) until it is done,
cancelled or given a new end, and the zone's joint rooms are nudged once. As before, an operation past its end
covers no arrival: being overdue changes what people are told, not what the conflict rules see.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from .model import LIVE_STATUSES

OVERDUE_AFTER = timedelta(minutes=30)


def is_overdue(status: str, end: datetime, now: datetime) -> bool:
    """Still planned or active, and its end OVERDUE_AFTER or more behind `now`."""
    return status in LIVE_STATUSES and now - end >= OVERDUE_AFTER


def overdue_since(end: datetime) -> datetime:
    """When an operation that ended at `end` becomes overdue (the nudge is due then)."""
    return end + OVERDUE_AFTER
