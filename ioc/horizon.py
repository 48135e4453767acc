"""The watch's horizon: what has just happened and the rest of the watch (the contract's "The picture at harbour
scale"). The operating picture's timeline and the briefing's picture both draw it, and the briefing lists the
operations that meet it, so tonight's operation is in this evening's briefing."""
from __future__ import annotations

from datetime import datetime, timedelta

HORIZON_BACK = timedelta(hours=6)
HORIZON_AHEAD = timedelta(hours=18)


def horizon(now: datetime) -> tuple[datetime, datetime]:
    """The watch's horizon around `now`, to the minute (so a layout holds for a minute)."""
    minute = now.replace(second=0, microsecond=0)
    return minute - HORIZON_BACK, minute + HORIZON_AHEAD
