"""Targets and their endorsements."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import text
from sqlmodel import Session, col, select

from watchfloor.ioc.markings import Marking
from watchfloor.ioc.model import Target

from . import locks
from .tables import EndorsementRow, TargetRow


def endorsers(s: Session, target_id: int) -> list[str]:
    rows = s.exec(select(EndorsementRow).where(EndorsementRow.target_id == target_id).order_by(EndorsementRow.id))
    return [r.agency_code for r in rows.all()]


def endorsers_of(s: Session, target_ids: set[int]) -> dict[int, list[str]]:
    """The endorsing agencies of many targets in one query (listings, briefings)."""
    out: dict[int, list[str]] = defaultdict(list)
    if target_ids:
        for row in s.exec(select(EndorsementRow).where(col(EndorsementRow.target_id).in_(list(target_ids)))
                          .order_by(EndorsementRow.id)).all():
            out[row.target_id].append(row.agency_code)
    return out


def with_endorsers(s: Session, target_ids: set[int]) -> dict[int, tuple[TargetRow, list[str]]]:
    """Targets and their endorsing agencies in one query (conflict listings name a target per gap)."""
    out: dict[int, tuple[TargetRow, list[str]]] = {}
    if not target_ids:
        return out
    q = (select(TargetRow, EndorsementRow.agency_code)
         .outerjoin(EndorsementRow, col(EndorsementRow.target_id) == col(TargetRow.id))
         .where(col(TargetRow.id).in_(list(target_ids))).order_by(TargetRow.id, EndorsementRow.id))
    for row, agency in s.exec(q).all():
        _, agencies = out.setdefault(row.id, (row, []))
        if agency is not None:
            agencies.append(agency)
    return out


def to_domain(row: TargetRow, agencies: Sequence[str]) -> Target:
    return Target(id=row.id, zone=row.zone_code, vessel_key=row.vessel_key, eta=row.eta, priority=row.priority,
                  status=row.status, marking=Marking(row.marking), endorsers=frozenset(agencies),
                  revision=row.revision)


def lock_vessel(s: Session, zone: str, vessel_key: str) -> None:
    """Serialise nominations of one vessel (PostgreSQL), so two at once make one target and an endorsement."""
    if s.get_bind().dialect.name == "postgresql":
        s.exec(text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=locks.vessel_lock(zone, vessel_key)))


def open_for_vessel(s: Session, zone: str, vessel_key: str) -> TargetRow | None:
    return s.exec(select(TargetRow).where(
        TargetRow.zone_code == zone, TargetRow.vessel_key == vessel_key, TargetRow.status == "open",
    ).order_by(TargetRow.id).limit(1)).first()


def open_in_zone(s: Session, zone: str) -> Sequence[TargetRow]:
    return s.exec(select(TargetRow).where(TargetRow.zone_code == zone, TargetRow.status == "open")
                  .order_by(TargetRow.eta, TargetRow.id)).all()


def listing(s: Session, zone: str, *, include_closed: bool = False, limit: int = 200) -> Sequence[TargetRow]:
    q = select(TargetRow).where(TargetRow.zone_code == zone)
    if not include_closed:
        q = q.where(TargetRow.status == "open")
    return s.exec(q.order_by(col(TargetRow.eta).is_(None), TargetRow.eta, TargetRow.id).limit(limit)).all()
