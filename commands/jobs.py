"""The periodic deconfliction jobs the scheduler fires: re-scan zones as time passes, escalate what waits.

Each zone is scanned in its own transaction, so one zone's trouble neither holds back nor rolls back another's,
and each transaction posts its own alerts (one per watch room), committed together with the conflicts. A
transaction the database aborts to break a deadlock runs again.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from watchfloor.ioc.model import LIVE_STATUSES, OPEN_CONFLICT_STATUSES
from watchfloor.storage.tables import ConflictRow, OperationRow, TargetRow

from .deconflict import Changes
from .engine import Engine
from .watch_alerts import end_lapsed, wake_snoozed, watch_zones

log = logging.getLogger("watchfloor.jobs")


def zones_to_scan(engine: Engine) -> list[str]:
    """Every configured zone, plus any zone holding live operations, open targets or open conflicts."""
    codes = [z.code for z in engine.directory.configured_zones()]
    with engine.db.session() as s:
        codes += s.exec(select(OperationRow.zone_code).distinct()
                        .where(col(OperationRow.status).in_(LIVE_STATUSES))).all()
        codes += s.exec(select(TargetRow.zone_code).distinct().where(TargetRow.status == "open")).all()
        # A zone whose last operation was just cancelled still has conflicts to close.
        codes += s.exec(select(ConflictRow.zone_code).distinct()
                        .where(col(ConflictRow.status).in_(OPEN_CONFLICT_STATUSES))).all()
    return sorted(set(codes))


def scan_all(engine: Engine) -> Changes:
    """Scan every zone that may have something to find; alerts are posted for what each scan changed."""
    total = Changes()
    now = engine.clock()
    for zone in zones_to_scan(engine):
        try:
            changes = engine.db.transaction(lambda s, z=zone: _scan(engine, s, z, now))
        except Exception:
            log.exception("conflict scan of zone %s failed", zone)
            continue
        total.merge(changes)
    return total


def escalate_due(engine: Engine) -> list[ConflictRow]:
    """Escalate, once each, the conflicts nobody acknowledged within `escalate_after_minutes`; snoozes that are
    over end first (said in the watch rooms), so a conflict woken now escalates now if still unacknowledged."""
    after = timedelta(minutes=engine.directory.settings.conflicts.escalate_after_minutes)
    now = engine.clock()
    engine.db.transaction(lambda s: wake_snoozed(s, engine.directory, now, engine.deconfliction))
    # Watches past their `until` end first (said in the watch rooms): their agencies are unwatched from now.
    engine.db.transaction(lambda s: end_lapsed(s, engine.directory, now))
    # Sooner in every zone that keeps a watch (commands/watch_alerts.py): elsewhere nobody is ever "on watch".
    unwatched = timedelta(minutes=engine.directory.settings.conflicts.escalate_unwatched_minutes)
    return engine.db.transaction(lambda s: engine.deconfliction.escalate(
        s, now, after, unwatched, watch_zones(s, engine.directory, now)))


def _scan(engine: Engine, s: Session, zone: str, now: datetime) -> Changes:
    changes = engine.deconfliction.scan_zone(s, zone, now, actor="scheduler")
    engine.deconfliction.alert(s, zone, changes, now, cause="periodic scan")
    return changes
