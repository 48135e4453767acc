"""`watchfloor conflicts scan`: re-check a zone, post what changed, and list the open conflicts."""
from __future__ import annotations

from sqlmodel import col, select

from watchfloor.ioc.markings import ALL_MARKINGS
from watchfloor.ioc.model import OPEN_CONFLICT_STATUSES
from watchfloor.ioc.zones import get_zone
from watchfloor.storage import operations as ops_repo
from watchfloor.storage import targets as targets_repo
from watchfloor.storage.tables import ConflictRow, TargetRow
from watchfloor.templates import plural, render

from .engine import Engine
from .target_eta import best_etas, with_eta
from .views import conflict_view


def scan_and_list(engine: Engine, zone: str) -> list[str]:
    now = engine.clock()
    with engine.db.session() as s:
        changes = engine.deconfliction.scan_zone(s, zone, now, actor="scan")
        engine.deconfliction.alert(s, zone, changes, now, cause="conflicts scan")
        rows = list(s.exec(select(ConflictRow).where(
            ConflictRow.zone_code == zone, col(ConflictRow.status).in_(OPEN_CONFLICT_STATUSES))
            .order_by(ConflictRow.id)).all())
        ops = ops_repo.by_ids(s, {i for cf in rows for i in (cf.op_a, cf.op_b) if i is not None})
        lines = []
        tz = get_zone(zone).tz
        for cf in rows:
            target = s.get(TargetRow, cf.target_id) if cf.target_id else None
            endorsers = targets_repo.endorsers(s, cf.target_id) if cf.target_id else []
            view = conflict_view(cf, ops, target, endorsers, ALL_MARKINGS)
            with_eta(view.get("target"), best_etas(s, [target], now).get(target.id) if target else None)
            lines.append(render("conflict_line.j2", cf=view, tz=tz).text)
    lines.append(plural(len(rows), "open conflict"))
    return lines
