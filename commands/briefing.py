"""The zone's morning briefing: today's operations by agency, arrivals and their cover, open conflicts,
yesterday's results and who takes part. Everything passes the room's clearance."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from ioc.markings import may_show
from ioc.model import LIVE_STATUSES, OPEN_CONFLICT_STATUSES
from ioc.zones import Zone
from storage import operations as ops_repo
from storage import targets as targets_repo
from storage.tables import AuditRow, ConflictRow, EndorsementRow, OperationRow, TargetRow

from .directory import Directory
from .views import conflict_view, op_view, target_view


def local_day(at: datetime, zone: Zone) -> tuple[datetime, datetime]:
    local = at.astimezone(zone.tz)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=1, hours=2)).replace(hour=0)  # next local midnight, across DST too
    return start, end


def build_briefing(s: Session, directory: Directory, zone: Zone, at: datetime, clearance,
                   reader=None) -> dict:
    day_start, day_end = local_day(at, zone)
    ops_today = ops_repo.listing(s, zone.code, window=(day_start, day_end),
                                 statuses=(*LIVE_STATUSES, "done"), limit=1000)
    by_agency: dict[str, list[dict]] = defaultdict(list)
    withheld_ops = 0
    for row in ops_today:
        v = op_view(row, clearance, reader)
        if v["withheld"]:
            withheld_ops += 1
        else:
            by_agency[row.agency_code].append(v)

    horizon = at + timedelta(hours=24)
    arrivals = []
    for t in targets_repo.open_in_zone(s, zone.code):
        if t.eta is None or not (at <= t.eta <= horizon):
            continue
        v = target_view(t, targets_repo.endorsers(s, t.id), clearance, reader)
        if not v["withheld"]:
            covers = sorted({r.agency_code for r in ops_repo.on_vessel(s, zone.code, t.vessel_key)
                             if may_show(r.marking, clearance, reader)})
            v["covered_by"] = covers
        arrivals.append(v)

    open_cf = list(s.exec(select(ConflictRow).where(
        ConflictRow.zone_code == zone.code, col(ConflictRow.status).in_(OPEN_CONFLICT_STATUSES))
        .order_by(ConflictRow.id)).all())
    op_rows = ops_repo.by_ids(s, {i for cf in open_cf for i in (cf.op_a, cf.op_b) if i is not None})
    conflicts = [conflict_view(cf, op_rows, s.get(TargetRow, cf.target_id) if cf.target_id else None,
                               targets_repo.endorsers(s, cf.target_id) if cf.target_id else [], clearance, reader)
                 for cf in open_cf]

    y_start = (day_start - timedelta(hours=22)).replace(hour=0)
    done_rows = s.exec(select(OperationRow).where(
        OperationRow.zone_code == zone.code, OperationRow.status == "done",
        col(OperationRow.updated_at) >= y_start, col(OperationRow.updated_at) < day_start)).all()
    closed_rows = s.exec(select(TargetRow).where(
        TargetRow.zone_code == zone.code, TargetRow.status == "closed",
        col(TargetRow.closed_at) >= y_start, col(TargetRow.closed_at) < day_start)).all()
    yesterday = {
        "ops": [v for v in (op_view(r, clearance, reader) for r in done_rows) if not v["withheld"]],
        "targets": [v for v in (target_view(r, [], clearance, reader) for r in closed_rows) if not v["withheld"]],
    }
    return {
        "z": zone, "tz": zone.tz, "at": at, "by_agency": dict(sorted(by_agency.items())),
        "withheld_ops": withheld_ops, "arrivals": arrivals, "conflicts": conflicts, "yesterday": yesterday,
        "participation": participation(s, zone.code, at),
    }


def participation(s: Session, zone: str, at: datetime, days: int = 7) -> list[dict]:
    """Per agency over the last week: operations, targets and endorsements contributed, and last activity."""
    since = at - timedelta(days=days)
    stats: dict[str, dict] = defaultdict(lambda: {"ops": 0, "targets": 0, "endorsements": 0, "last": None})
    for agency, n in s.exec(select(OperationRow.agency_code, func.count()).where(
            OperationRow.zone_code == zone, col(OperationRow.created_at) >= since, col(OperationRow.created_at) <= at)
            .group_by(OperationRow.agency_code)).all():
        stats[agency]["ops"] = n
    for agency, n in s.exec(select(TargetRow.agency_code, func.count()).where(
            TargetRow.zone_code == zone, col(TargetRow.created_at) >= since, col(TargetRow.created_at) <= at)
            .group_by(TargetRow.agency_code)).all():
        stats[agency]["targets"] = n
    for agency, n in s.exec(select(EndorsementRow.agency_code, func.count()).join(
            TargetRow, TargetRow.id == EndorsementRow.target_id).where(
            TargetRow.zone_code == zone, col(EndorsementRow.at) >= since, col(EndorsementRow.at) <= at)
            .group_by(EndorsementRow.agency_code)).all():
        stats[agency]["endorsements"] = n
    for agency, last in s.exec(select(AuditRow.agency_code, func.max(AuditRow.at)).where(
            AuditRow.zone_code == zone, col(AuditRow.agency_code).is_not(None), col(AuditRow.at) <= at)
            .group_by(AuditRow.agency_code)).all():
        stats[agency]["last"] = last
    return [{"agency": a, **v} for a, v in sorted(stats.items())]
