"""The zone's morning briefing: today's operations by agency, arrivals and their cover, open conflicts,
yesterday's results and who takes part. Everything passes the room's clearance."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from watchfloor.ioc.horizon import horizon as watch_horizon
from watchfloor.ioc.markings import Marking, may_show
from watchfloor.ioc.model import LIVE_STATUSES, OPEN_CONFLICT_STATUSES
from watchfloor.ioc.overdue import is_overdue
from watchfloor.ioc.zones import Zone
from watchfloor.storage import operations as ops_repo
from watchfloor.storage import targets as targets_repo
from watchfloor.storage.tables import AuditRow, ConflictRow, EndorsementRow, OperationRow, TargetRow

from .briefing_arrivals import arrival_views, arrivals as arrivals_due
from .directory import Directory
from .target_eta import with_best_etas
from .views import conflict_view, op_view, target_view


MAX_OPERATION = timedelta(days=7)  # bounds the look-back of "yesterday" on the window index


def local_day(at: datetime, zone: Zone) -> tuple[datetime, datetime]:
    local = at.astimezone(zone.tz)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=1, hours=2)).replace(hour=0)  # next local midnight, across DST too
    return start, end


def build_briefing(s: Session, directory: Directory, zone: Zone, at: datetime, clearance,
                   reader=None, show_withheld: bool = True) -> dict:
    """Everything the briefing at `at` shows to a room with `clearance` (and, for a reply, a reader).

    Items above the clearance are left out; with `show_withheld` they are listed as stubs (`TGT-4 (LES, details
    withheld)`) or counted, as the room's config says.
    """
    day_start, day_end = local_day(at, zone)
    # The zone's day, and the watch's horizon the picture draws (6 h back, 18 h ahead: tonight's operations too).
    h0, h1 = watch_horizon(at)
    until = max(day_end, h1)
    ops_today = ops_repo.listing(s, zone.code, window=(min(day_start, h0), until),
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
    # By their best ETA (AIS, notice of arrival or typed); other vessels due by a notice of arrival listed too.
    arriving, best, cdc, other_arrivals = arrivals_due(s, zone.code, list(targets_repo.open_in_zone(s, zone.code)),
                                                       at, horizon)
    open_cf = list(s.exec(select(ConflictRow).where(
        ConflictRow.zone_code == zone.code, col(ConflictRow.status).in_(OPEN_CONFLICT_STATUSES))
        .order_by(ConflictRow.id)).all())
    # A handful of queries for the whole briefing, not a few per target and conflict (37 zones at 07:00).
    gap_targets = _targets_by_id(s, {cf.target_id for cf in open_cf if cf.target_id})
    endorse = targets_repo.endorsers_of(s, {t.id for t in arriving} | set(gap_targets))
    covering_ops = _live_on_vessels(s, zone.code, {t.vessel_key for t in arriving}, at)
    arrivals = []
    for t, v in arrival_views(arriving, best, cdc, endorse, clearance, reader, show_withheld):
        if v["withheld"]:
            arrivals.append(v)
            continue
        covering = covering_ops.get(t.vessel_key, [])
        v["covered_by"] = sorted({r.agency_code for r in covering if may_show(r.marking, clearance, reader)})
        # A cover the room may not see still counts: "not covered" would send someone out for nothing.
        v["covered_withheld"] = sum(1 for r in covering if not may_show(r.marking, clearance, reader))
        # Who asked for this vessel (nominated, endorsed, assigned) but has nothing planned on it.
        interested = {t.agency_code, *v["endorsers"], *([t.assigned_agency] if t.assigned_agency else [])}
        v["not_covering"] = sorted(interested - set(v["covered_by"]))
        arrivals.append(v)

    op_rows = ops_repo.by_ids(s, {i for cf in open_cf for i in (cf.op_a, cf.op_b) if i is not None})
    conflicts = [conflict_view(cf, op_rows, gap_targets.get(cf.target_id), endorse.get(cf.target_id, []),
                               clearance, reader)
                 for cf in open_cf]
    with_best_etas(s, [(gap_targets.get(cf.target_id), v) for v, cf in zip(conflicts, open_cf)], at)
    for v, cf in zip(conflicts, open_cf):
        if v["withheld"]:  # say where the details are, as alerts do
            v["held_in"] = [r.id for r in directory.zone_rooms(zone.code, "watch")
                            if r.platform != "console" and may_show(cf.marking, r.clearance)]
    if not show_withheld:
        conflicts = [cf for cf in conflicts if not cf["withheld"]]

    y_start = (day_start - timedelta(hours=22)).replace(hour=0)
    # What ran yesterday, by the operations' own times (ended yesterday, zone local), not by when someone last
    # touched them: one marked done this morning is yesterday's work. Done, cancelled, or nobody closed it.
    ran = ops_repo.listing(s, zone.code, statuses=(*LIVE_STATUSES, "done", "cancelled"), window=(y_start, day_start),
                           lookback=MAX_OPERATION, limit=1000)
    done_rows = [r for r in ran if r.end_at <= day_start and (r.status in ("done", "cancelled")
                                                                or is_overdue(r.status, r.end_at, at))]
    closed_rows = s.exec(select(TargetRow).where(
        TargetRow.zone_code == zone.code, TargetRow.status == "closed",
        col(TargetRow.closed_at) >= y_start, col(TargetRow.closed_at) < day_start)).all()
    yesterday = {
        "ops": [v for v in (op_view(r, clearance, reader, now=at) for r in done_rows) if not v["withheld"]],
        "targets": [v for v in (target_view(r, [], clearance, reader) for r in closed_rows) if not v["withheld"]],
    }
    return {
        "z": zone, "tz": zone.tz, "at": at, "day": (day_start, day_end), "until": until, "by_agency": dict(sorted(by_agency.items())),
        "withheld_ops": withheld_ops if show_withheld else 0, "arrivals": arrivals, "other_arrivals": other_arrivals, "conflicts": conflicts, "yesterday": yesterday,
        "participation": participation(s, zone.code, at, clearance=clearance),
    }


def participation(s: Session, zone: str, at: datetime, days: int = 7, clearance=None) -> list[dict]:
    """Per agency over the last week: operations, targets and endorsements contributed, and last activity.

    With a clearance, only items the room may see are counted: a count is a disclosure too.
    """
    since = at - timedelta(days=days)
    marks = [Marking(m).value for m in clearance] if clearance is not None else [m.value for m in Marking]
    stats: dict[str, dict] = defaultdict(lambda: {"ops": 0, "targets": 0, "endorsements": 0, "last": None})
    for agency, n in s.exec(select(OperationRow.agency_code, func.count()).where(
            OperationRow.zone_code == zone, col(OperationRow.created_at) >= since, col(OperationRow.created_at) <= at,
            col(OperationRow.marking).in_(marks))
            .group_by(OperationRow.agency_code)).all():
        stats[agency]["ops"] = n
    for agency, n in s.exec(select(TargetRow.agency_code, func.count()).where(
            TargetRow.zone_code == zone, col(TargetRow.created_at) >= since, col(TargetRow.created_at) <= at,
            col(TargetRow.marking).in_(marks))
            .group_by(TargetRow.agency_code)).all():
        stats[agency]["targets"] = n
    for agency, n in s.exec(select(EndorsementRow.agency_code, func.count()).join(
            TargetRow, TargetRow.id == EndorsementRow.target_id).where(
            TargetRow.zone_code == zone, col(EndorsementRow.at) >= since, col(EndorsementRow.at) <= at,
            col(TargetRow.marking).in_(marks))
            .group_by(EndorsementRow.agency_code)).all():
        stats[agency]["endorsements"] = n
    if set(marks) == {m.value for m in Marking}:
        # Cleared for everything: any recorded action counts (acknowledgements and resolutions included).
        lasts = s.exec(select(AuditRow.agency_code, func.max(AuditRow.at)).where(
            AuditRow.zone_code == zone, col(AuditRow.agency_code).is_not(None), col(AuditRow.at) <= at)
            .group_by(AuditRow.agency_code)).all()
    else:
        # The trail does not say which marking an action touched, so a less cleared room learns only of
        # activity on items it may see: when an agency last acted on an LES item is a disclosure too.
        lasts = [*s.exec(select(OperationRow.agency_code, func.max(OperationRow.updated_at)).where(
                     OperationRow.zone_code == zone, col(OperationRow.updated_at) <= at,
                     col(OperationRow.marking).in_(marks)).group_by(OperationRow.agency_code)).all(),
                 *s.exec(select(TargetRow.agency_code, func.max(TargetRow.updated_at)).where(
                     TargetRow.zone_code == zone, col(TargetRow.updated_at) <= at,
                     col(TargetRow.marking).in_(marks)).group_by(TargetRow.agency_code)).all(),
                 *s.exec(select(EndorsementRow.agency_code, func.max(EndorsementRow.at)).join(
                     TargetRow, TargetRow.id == EndorsementRow.target_id).where(
                     TargetRow.zone_code == zone, col(EndorsementRow.at) <= at,
                     col(TargetRow.marking).in_(marks)).group_by(EndorsementRow.agency_code)).all()]
    for agency, last in lasts:
        if last is not None and (stats[agency]["last"] is None or last > stats[agency]["last"]):
            stats[agency]["last"] = last
    return [{"agency": a, **v} for a, v in sorted(stats.items())]


def _targets_by_id(s: Session, ids: set[int]) -> dict[int, TargetRow]:
    if not ids:
        return {}
    return {t.id: t for t in s.exec(select(TargetRow).where(col(TargetRow.id).in_(ids))).all()}


def _live_on_vessels(s: Session, zone: str, keys: set[str], at: datetime) -> dict[str, list[OperationRow]]:
    """Operations that cover the vessels: live and not over at the briefing time."""
    out: dict[str, list[OperationRow]] = defaultdict(list)
    if keys:
        for row in s.exec(select(OperationRow).where(
                OperationRow.zone_code == zone, col(OperationRow.vessel_key).in_(keys),
                col(OperationRow.status).in_(LIVE_STATUSES), col(OperationRow.end_at) > at)).all():
            out[row.vessel_key].append(row)
    return out
