"""The life of a conflict: detect on every change, raise once, close by itself, alert, escalate.

The rules live in `ioc.conflicts`; this module applies them to what is stored, reading only the operations
near the changed one in space and time (indexed), and posts alerts to the zone's watch rooms.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ioc.conflicts import Finding, Rules, gap_finding, gap_key, gap_still_open, pair_findings, sweep
from ioc.markings import highest, may_show
from ioc.model import OPEN_CONFLICT_STATUSES, ConflictStatus, op_ref
from ioc.zones import get_zone
from storage import operations as ops_repo
from storage import targets as targets_repo
from storage.audit import append as audit
from storage.tables import ConflictRow, OperationRow, TargetRow

from .directory import Directory, Room
from .posting import post
from .views import conflict_view


@dataclass
class Changes:
    raised: list[ConflictRow] = field(default_factory=list)
    closed: list[ConflictRow] = field(default_factory=list)

    def merge(self, other: "Changes") -> None:
        self.raised.extend(other.raised)
        self.closed.extend(other.closed)

    def __bool__(self) -> bool:
        return bool(self.raised or self.closed)


def rules_from(settings) -> Rules:
    c = settings.conflicts
    return Rules(
        same_vessel_window=timedelta(hours=c.same_vessel_hours), gap_horizon=timedelta(hours=c.gap_horizon_hours),
        gap_min_endorsers=c.gap_min_endorsers, max_operation=timedelta(hours=c.max_operation_hours),
        max_radius_m=c.max_radius_km * 1000.0,
    )


class Deconfliction:
    def __init__(self, directory: Directory, rules: Rules):
        self.directory = directory
        self.rules = rules

    # --- detection -------------------------------------------------------------------------------------

    def check_operation(self, s: Session, row: OperationRow, now: datetime, actor: str) -> Changes:
        """Re-check one operation after it was logged, updated, cancelled or finished."""
        op = ops_repo.to_domain(row)
        findings: dict[str, Finding] = {}
        others: dict[int, OperationRow] = {}
        if op.is_live:
            near = list(ops_repo.near_in_space_and_time(s, op, self.rules.max_operation))
            if op.vessel_key:
                w = self.rules.same_vessel_window
                near += ops_repo.on_vessel(s, op.zone, op.vessel_key, around=(op.start - w, op.end + w))
            for other in near:
                if other.id == op.id:
                    continue
                others[other.id] = other
                for f in pair_findings(op, ops_repo.to_domain(other), self.rules):
                    findings[f.key] = f
        changes = Changes()
        for cf in self._open_pairs_of(s, op.id):
            if cf.key not in findings:
                changes.closed.append(self._close(s, cf, now, actor, self._why_gone(row, cf)))
        for f in findings.values():
            a, b = (row, others[f.op_ids[1]]) if f.op_ids[0] == op.id else (others[f.op_ids[0]], row)
            new = self._raise(s, f, row.zone_code, now, actor, a, b)
            if new:
                changes.raised.append(new)
        if row.vessel_key:
            target = targets_repo.open_for_vessel(s, row.zone_code, row.vessel_key)
            if target is not None:
                changes.merge(self.check_target(s, target, now, actor))
        return changes

    def check_target(self, s: Session, target: TargetRow, now: datetime, actor: str) -> Changes:
        t = targets_repo.to_domain(target, targets_repo.endorsers(s, target.id))
        covering = [ops_repo.to_domain(r) for r in ops_repo.on_vessel(s, target.zone_code, target.vessel_key)]
        changes = Changes()
        existing = self._open_by_key(s, gap_key(target.id))
        if existing is not None:
            if not gap_still_open(t, covering, now, self.rules):
                changes.closed.append(self._close(s, existing, now, actor, self._why_gap_gone(t, covering)))
            return changes
        f = gap_finding(t, covering, now, self.rules)
        if f is not None:
            new = self._raise(s, f, target.zone_code, now, actor, target=target)
            if new:
                changes.raised.append(new)
        return changes

    def scan_zone(self, s: Session, zone: str, now: datetime, actor: str = "scheduler") -> Changes:
        """Re-check a whole zone with one sweep (not all pairs), then every open target's coverage."""
        rows = {r.id: r for r in ops_repo.live_in_zone(s, zone)}
        found = {f.key: f for f in sweep((ops_repo.to_domain(r) for r in rows.values()), self.rules)}
        changes = Changes()
        for cf in s.exec(select(ConflictRow).where(
                ConflictRow.zone_code == zone, col(ConflictRow.status).in_(OPEN_CONFLICT_STATUSES),
                ConflictRow.kind != "gap")).all():
            if cf.key not in found:
                gone = rows.get(cf.op_a) or rows.get(cf.op_b) or s.get(OperationRow, cf.op_a)
                changes.closed.append(self._close(s, cf, now, actor, self._why_gone(gone, cf)))
        for f in found.values():
            new = self._raise(s, f, zone, now, actor, rows[f.op_ids[0]], rows[f.op_ids[1]])
            if new:
                changes.raised.append(new)
        for target in targets_repo.open_in_zone(s, zone):
            changes.merge(self.check_target(s, target, now, actor))
        open_gaps = s.exec(select(ConflictRow).where(
            ConflictRow.zone_code == zone, ConflictRow.kind == "gap",
            col(ConflictRow.status).in_(OPEN_CONFLICT_STATUSES))).all()
        for cf in open_gaps:  # targets closed since: their gaps close too
            target = s.get(TargetRow, cf.target_id)
            if target is None or target.status != "open":
                changes.closed.append(self._close(s, cf, now, actor, "target closed"))
        return changes

    # --- storage of conflicts ----------------------------------------------------------------------------

    def _open_pairs_of(self, s: Session, op_id: int) -> list[ConflictRow]:
        return list(s.exec(select(ConflictRow).where(
            col(ConflictRow.status).in_(OPEN_CONFLICT_STATUSES),
            (ConflictRow.op_a == op_id) | (ConflictRow.op_b == op_id))).all())

    def _open_by_key(self, s: Session, key: str) -> ConflictRow | None:
        return s.exec(select(ConflictRow).where(ConflictRow.open_key == key)).first()

    def _raise(self, s: Session, f: Finding, zone: str, now: datetime, actor: str,
               a: OperationRow | None = None, b: OperationRow | None = None,
               target: TargetRow | None = None) -> ConflictRow | None:
        if self._open_by_key(s, f.key) is not None:
            return None
        revs = (a.revision, b.revision) if a is not None else (target.revision, None)
        settled = s.exec(select(ConflictRow.id).where(
            ConflictRow.key == f.key, ConflictRow.rev_a == revs[0],
            ConflictRow.rev_b == revs[1] if revs[1] is not None else ConflictRow.rev_b.is_(None),
            ConflictRow.status == ConflictStatus.RESOLVED.value)).first()
        if settled is not None:
            return None  # a supervisor already decided on exactly this plan; only a change re-opens it
        marking = highest([a.marking, b.marking] if a is not None else [target.marking]).value
        row = ConflictRow(
            zone_code=zone, kind=f.kind, key=f.key, open_key=f.key,
            op_a=a.id if a is not None else None, op_b=b.id if b is not None else None,
            target_id=target.id if target is not None else None, rev_a=revs[0], rev_b=revs[1],
            marking=marking, status=ConflictStatus.OPEN.value, raised_at=now, raised_by=actor,
        )
        try:
            with s.begin_nested():
                s.add(row)
                s.flush()
        except IntegrityError:
            return None  # another process raised the same cause a moment ago
        audit(s, at=now, actor=actor, action="conflict.raise", entity=f"CF-{row.id}", zone=zone,
              detail={"kind": f.kind, "key": f.key})
        return row

    def _close(self, s: Session, cf: ConflictRow, now: datetime, actor: str, reason: str) -> ConflictRow:
        cf.status, cf.open_key, cf.closed_reason, cf.resolved_at = ConflictStatus.CLOSED.value, None, reason, now
        s.add(cf)
        audit(s, at=now, actor=actor, action="conflict.close", entity=f"CF-{cf.id}", zone=cf.zone_code,
              detail={"reason": reason})
        return cf

    @staticmethod
    def _why_gone(row: OperationRow | None, cf: ConflictRow) -> str:
        if row is None:
            return "its operations changed"
        if row.status == "cancelled":
            return f"{op_ref(row.id)} was cancelled"
        if row.status == "done":
            return f"{op_ref(row.id)} is done"
        return f"{op_ref(row.id)} was changed and no longer conflicts"

    @staticmethod
    def _why_gap_gone(t, covering) -> str:
        if t.status != "open":
            return "target closed"
        if any(op.is_live for op in covering):
            live = [op for op in covering if op.is_live]
            return f"now covered by {live[0].agency} {live[0].ref}"
        return "no longer a priority arrival within the horizon"

    # --- alerts ------------------------------------------------------------------------------------------

    def alert(self, s: Session, zone: str, changes: Changes, now: datetime, cause: str | None = None) -> None:
        """One alert per watch room for everything a command raised or closed, each rendered for the room."""
        if not changes:
            return
        for room in self.directory.zone_rooms(zone, "watch"):
            self._post_alert(s, room, zone, changes.raised, changes.closed, now, cause, kind="alert")

    def escalate(self, s: Session, now: datetime, after: timedelta) -> list[ConflictRow]:
        """Conflicts nobody acknowledged in time go once to their district's watch rooms."""
        due = s.exec(select(ConflictRow).where(
            ConflictRow.status == ConflictStatus.OPEN.value, col(ConflictRow.escalated_at).is_(None),
            col(ConflictRow.raised_at) <= now - after)).all()
        for cf in due:
            cf.escalated_at = now
            s.add(cf)
            zone = get_zone(cf.zone_code)
            audit(s, at=now, actor="scheduler", action="conflict.escalate", entity=f"CF-{cf.id}", zone=cf.zone_code,
                  detail={"district": zone.district})
            for room in self.directory.district_rooms(zone.district):
                self._post_alert(s, room, cf.zone_code, [cf], [], now, None, kind="escalation")
        return list(due)

    def _post_alert(self, s: Session, room: Room, zone: str, raised, closed, now, cause, kind: str) -> None:
        tz = get_zone(zone).tz
        all_rows = list(raised) + list(closed)
        op_rows = ops_repo.by_ids(s, {i for cf in all_rows for i in (cf.op_a, cf.op_b) if i is not None})
        targets = {cf.target_id: s.get(TargetRow, cf.target_id) for cf in all_rows if cf.target_id}
        endorse = {tid: targets_repo.endorsers(s, tid) for tid in targets}
        holders = self._detail_rooms

        def data(clearance):
            def view(cf):
                v = conflict_view(cf, op_rows, targets.get(cf.target_id), endorse.get(cf.target_id, []), clearance)
                if v["withheld"]:
                    v["held_in"] = holders(zone, cf.marking)
                return v
            return {"zone": get_zone(zone), "tz": tz, "raised": [view(c) for c in raised],
                    "closed": [view(c) for c in closed], "cause": cause, "escalation": kind == "escalation"}

        buttons = [cf.id for cf in raised if may_show(cf.marking, room.clearance)]
        post(s, room, kind, "alert.j2", data, now, extra={"conflicts": buttons})

    def _detail_rooms(self, zone: str, marking: str) -> list[str]:
        return [r.id for r in self.directory.zone_rooms(zone, "watch")
                if may_show(marking, r.clearance) and r.platform != "console"]


def changed(items: Iterable[ConflictRow]) -> list[str]:
    return [f"CF-{c.id}" for c in items]
