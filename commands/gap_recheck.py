"""Re-checking the gaps of targets whose best ETA may have changed without anyone touching the target: the AIS feed
(a ship speeding up, turning away, its identity learnt) and imports (`import ais`, `import noa`).

The gap rule uses the best ETA (commands/target_eta.py), so a gap opens or closes as that ETA moves. Each zone is
checked in its own transaction, taking the zone's lock first as the scheduler's scan does, and the zone's watch
rooms are alerted of what opened or closed.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlmodel import col, select

from watchfloor.storage.tables import TargetRow

from .deconflict import Changes, Deconfliction, rules_from


def recheck_gaps(db, directory, due: Iterable[tuple[str, int]], now: datetime, cause: str,
                 deconfliction: Deconfliction | None = None) -> Changes:
    """Re-check these (zone, target id) pairs; what they raised or closed, alerted once per zone."""
    from watchfloor.storage import locks
    from watchfloor.storage.audit import hold_chain

    deconfliction = deconfliction or Deconfliction(directory, rules_from(directory.settings))
    due = set(due)
    total = Changes()
    for zone in sorted({z for z, _ in due}):
        with db.session() as s:
            locks.hold(s, locks.deconfliction_lock(zone))
            hold_chain(s)
            changes = Changes()
            for tid in sorted(tid for z, tid in due if z == zone):
                row = s.get(TargetRow, tid)
                if row is not None and row.status == "open":
                    changes.merge(deconfliction.check_target(s, row, now, "ais"))
            if changes:
                deconfliction.alert(s, zone, changes, now, cause=cause)
        total.merge(changes)
    return total


def recheck_zone(db, directory, zone: str, now: datetime, cause: str) -> Changes:
    """Re-check every open target of a zone (after its notices of arrival were imported)."""
    with db.session() as s:
        ids = s.exec(select(TargetRow.id).where(TargetRow.zone_code == zone, col(TargetRow.status) == "open")).all()
    return recheck_gaps(db, directory, [(zone, tid) for tid in ids], now, cause)
