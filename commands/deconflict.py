"""The life of a conflict: detect on every change, raise once, close by itself, alert, escalate.

The rules live in `ioc.conflicts`; this module applies them to what is stored, reading only the operations
near the changed one in space and time (indexed), and posts alerts to the zone's watch rooms.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy import func
from sqlmodel import Session, col, or_, select

from watchfloor.ioc.conflicts import Finding, Rules, covers, gap_finding, gap_key, gap_still_open, pair_findings, sweep
from watchfloor.ioc.markings import Marking, highest, may_show
from watchfloor.ioc.model import LIVE_STATUSES, OPEN_CONFLICT_STATUSES, ConflictKind, ConflictStatus, Operation, op_ref
from watchfloor.ioc.vessels import Vessel
from watchfloor.ioc.zones import get_zone
from watchfloor.storage import locks
from watchfloor.storage import operations as ops_repo
from watchfloor.storage import targets as targets_repo
from watchfloor.storage import watch as watch_repo
from watchfloor.storage.audit import append as audit
from watchfloor.storage.audit import hold_chain
from watchfloor.storage.tables import ConflictRow, OperationRow, OutboxRow, TargetRow

from .directory import Directory, Room
from .email_alerts import email_alerts
from .observers import notify
from .posting import post
from .target_eta import best_eta_at, best_etas, with_eta
from .views import conflict_view
from .watch_alerts import alert_watch, carried, edit_alerts, nobody_on_watch_for, say_change


@dataclass
class AlertFacts:
    """What an alert shows of its conflicts besides the conflict rows: their operations, targets (with endorsing
    agencies and best ETAs), and who is on watch in the zone."""
    ops: dict
    targets: dict
    endorsers: dict
    etas: dict
    on_watch: list


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

    def check_operation(self, s: Session, row: OperationRow, now: datetime, actor: str,
                        previous_vessel: str | None = None) -> Changes:
        """Re-check one operation after it was logged, updated, cancelled or finished.

        Reads only the operations near it in space and time and those on its vessel, through the
        (zone, start) and (zone, vessel) indexes, so the cost follows the local density, not the total stored.
        `previous_vessel` is the vessel the operation covered before an update: that vessel's target may
        now be uncovered.
        """
        op = ops_repo.to_domain(row)
        findings, others = self.findings_for(s, op)
        changes = Changes()
        for cf in self._open_pairs_of(s, row.zone_code, op.id):
            if cf.key not in findings:
                changes.closed.append(self._close(s, cf, now, actor, self._why_gone(row, cf)))
        for f in findings.values():
            a, b = (row, others[f.op_ids[1]]) if f.op_ids[0] == op.id else (others[f.op_ids[0]], row)
            new = self._raise(s, f, row.zone_code, now, actor, a, b)
            if new:
                changes.raised.append(new)
        for vessel in dict.fromkeys(v for v in (row.vessel_key, previous_vessel) if v):
            target = targets_repo.open_for_vessel(s, row.zone_code, vessel)
            if target is not None:
                changes.merge(self.check_target(s, target, now, actor))
        return changes

    def findings_for(self, s: Session, op: Operation) -> tuple[dict[str, Finding], dict[int, OperationRow]]:
        """Every pair conflict of `op` with what is stored, and the other operations involved."""
        findings: dict[str, Finding] = {}
        others: dict[int, OperationRow] = {}
        if not op.is_live:
            return findings, others
        near = list(ops_repo.near_in_space_and_time(s, op, self.rules.max_operation))
        if op.vessel_key and Vessel.from_key(op.vessel_key).is_identified:
            # No time bound in SQL: with one, SQLite prefers the (zone, start) index and walks all history
            # before the window; a vessel has few live operations, and the rule below checks the window.
            near += ops_repo.on_vessel(s, op.zone, op.vessel_key)
        for other in near:
            if other.id == op.id or other.id in others:
                continue
            pairs = pair_findings(op, ops_repo.to_domain(other), self.rules)
            if pairs:
                others[other.id] = other
                for f in pairs:
                    findings[f.key] = f
        return findings, others

    def check_target(self, s: Session, target: TargetRow, now: datetime, actor: str) -> Changes:
        t = targets_repo.to_domain(target, targets_repo.endorsers(s, target.id))
        t.eta = best_eta_at(s, target, now)  # fresh AIS, else the notice of arrival's, else the typed one
        covering = [ops_repo.to_domain(r) for r in ops_repo.on_vessel(s, target.zone_code, target.vessel_key)]
        changes = Changes()
        existing = self._open_by_key(s, gap_key(target.id), lock=True)
        if existing is not None:
            if not gap_still_open(t, covering, now, self.rules):
                changes.closed.append(self._close(s, existing, now, actor, self._why_gap_gone(t, covering, now)))
            else:
                self._track_revisions(existing, target.revision, self._coverage_mark(s, target),
                                      Marking(target.marking).value)
            return changes
        f = gap_finding(t, covering, now, self.rules)
        if f is not None:
            new = self._raise(s, f, target.zone_code, now, actor, target=target)
            if new:
                changes.raised.append(new)
        return changes

    def scan_zone(self, s: Session, zone: str, now: datetime, actor: str = "scheduler") -> Changes:
        """Re-check a whole zone with one sweep (not all pairs), then every open target's coverage.

        Takes the zone's deconfliction lock, then the audit chain's, before locking any conflict (the lock
        order in storage/locks.py): a caller that locks or appends anything first must take the zone's before.
        """
        locks.hold(s, locks.deconfliction_lock(zone))
        hold_chain(s)
        # Operations over for longer than the same-vessel window can no longer conflict with anything new.
        since = now - self.rules.same_vessel_window
        rows = ops_repo.current_in_zone(s, zone, since, self.rules.max_operation)
        found = {f.key: f for f in sweep(rows.values(), self.rules)}
        changes = Changes()
        open_pairs = s.exec(select(ConflictRow).where(
            ConflictRow.zone_code == zone, col(ConflictRow.status).in_(OPEN_CONFLICT_STATUSES),
            ConflictRow.kind != ConflictKind.GAP.value).with_for_update()).all()
        still_open: dict[str, ConflictRow] = {}
        for cf in open_pairs:
            if cf.key in found:
                still_open[cf.key] = cf
                continue
            # Name the side that went away (cancelled, done) rather than the one still standing.
            gone = next((s.get(OperationRow, i) for i in (cf.op_a, cf.op_b) if i is not None and i not in rows),
                        None)
            if gone is not None and gone.status in LIVE_STATUSES and gone.end_at <= since:
                reason = f"{op_ref(gone.id)} has ended"
            else:
                reason = self._why_gone(gone or rows.get(cf.op_a), cf)
            changes.closed.append(self._close(s, cf, now, actor, reason))
        settled = {(k, ra, rb) for k, ra, rb in s.exec(select(ConflictRow.key, ConflictRow.rev_a, ConflictRow.rev_b)
                                                       .where(ConflictRow.zone_code == zone,
                                                              ConflictRow.status == ConflictStatus.RESOLVED.value,
                                                              ConflictRow.kind != ConflictKind.GAP.value)).all()}
        for f in sorted(found.values()):
            a, b = rows[f.op_ids[0]], rows[f.op_ids[1]]
            if f.key in still_open:
                self._track_revisions(still_open[f.key], a.revision, b.revision,
                                      highest([a.marking, b.marking]).value)
                continue
            new = self._raise(s, f, zone, now, actor, a, b, settled=settled)
            if new:
                changes.raised.append(new)
        for target in targets_repo.open_in_zone(s, zone):
            changes.merge(self.check_target(s, target, now, actor))
        open_gaps = s.exec(select(ConflictRow).where(
            ConflictRow.zone_code == zone, ConflictRow.kind == ConflictKind.GAP.value,
            col(ConflictRow.status).in_(OPEN_CONFLICT_STATUSES)).with_for_update()).all()
        for cf in open_gaps:  # targets closed since: their gaps close too
            target = s.get(TargetRow, cf.target_id)
            if target is None or target.status != "open":
                changes.closed.append(self._close(s, cf, now, actor, "target closed"))
        return changes

    # --- storage of conflicts ----------------------------------------------------------------------------

    def _open_pairs_of(self, s: Session, zone: str, op_id: int) -> list[ConflictRow]:
        # Locked so an acknowledgement or resolution committing meanwhile is seen before we close (PostgreSQL
        # re-reads a locked row; SQLite transactions are serialised anyway).
        return list(s.exec(select(ConflictRow).where(
            ConflictRow.zone_code == zone, col(ConflictRow.status).in_(OPEN_CONFLICT_STATUSES),
            (ConflictRow.op_a == op_id) | (ConflictRow.op_b == op_id)).with_for_update()).all())

    def _open_by_key(self, s: Session, key: str, lock: bool = False) -> ConflictRow | None:
        q = select(ConflictRow).where(ConflictRow.open_key == key)
        return s.exec(q.with_for_update() if lock else q).first()

    @staticmethod
    def _track_revisions(cf: ConflictRow, rev_a: int | None, rev_b: int | None, marking: str) -> None:
        """An open conflict follows its items: their revisions, so a resolution pins the plan that was decided
        on, and their marking, so an item marked up later takes the conflict's details out of uncleared rooms."""
        if (cf.rev_a, cf.rev_b) != (rev_a, rev_b):
            cf.rev_a, cf.rev_b = rev_a, rev_b
        if cf.marking != marking:
            cf.marking = marking

    @staticmethod
    def _coverage_mark(s: Session, target: TargetRow) -> int:
        """The newest operation ever logged on the target's vessel: a gap resolved before some cover was
        logged (and then cancelled or moved) is a new situation, not the one the supervisor decided on."""
        return s.exec(select(func.max(OperationRow.id)).where(
            OperationRow.zone_code == target.zone_code, OperationRow.vessel_key == target.vessel_key)).one() or 0

    def revisions_of(self, s: Session, cf: ConflictRow) -> tuple[int | None, int | None]:
        """The current revisions of a conflict's items, as `_raise` records them."""
        if cf.target_id is not None:
            target = s.get(TargetRow, cf.target_id)
            return (target.revision, self._coverage_mark(s, target)) if target is not None else (cf.rev_a, cf.rev_b)
        a, b = s.get(OperationRow, cf.op_a), s.get(OperationRow, cf.op_b)
        return (a.revision if a else cf.rev_a), (b.revision if b else cf.rev_b)

    def _raise(self, s: Session, f: Finding, zone: str, now: datetime, actor: str,
               a: OperationRow | None = None, b: OperationRow | None = None,
               target: TargetRow | None = None,
               settled: set[tuple[str, int | None, int | None]] | None = None) -> ConflictRow | None:
        """Record a finding as a new conflict unless it is open already or was resolved for this very plan.

        `settled`, when given, is the zone's resolved (key, rev_a, rev_b) read at once by a scan, and the caller
        has already matched the open ones.
        """
        revs = (a.revision, b.revision) if a is not None else (target.revision, self._coverage_mark(s, target))
        if settled is None:
            existing = self._open_by_key(s, f.key)
            if existing is not None:
                marking = highest([a.marking, b.marking] if a is not None else [target.marking]).value
                self._track_revisions(existing, *revs, marking)
                return None
            decided = s.exec(select(ConflictRow.id).where(
                ConflictRow.key == f.key, ConflictRow.rev_a == revs[0], ConflictRow.rev_b == revs[1],
                ConflictRow.status == ConflictStatus.RESOLVED.value)).first() is not None
        else:
            decided = (f.key, *revs) in settled
        if decided:
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
    def _why_gap_gone(t, covering, now) -> str:
        if t.status != "open":
            return "target closed"
        live = sorted((op for op in covering if covers(op, t, now)), key=lambda o: (o.marking.rank, o.id))
        if live:
            # This reason is shown in every watch room: a marked cover is named by its id only.
            who = f"{live[0].agency} " if live[0].marking == Marking.UNCLASS else ""
            return f"now covered by {who}{live[0].ref}"
        return "no longer a priority arrival within the horizon"

    # --- alerts ------------------------------------------------------------------------------------------

    def alert(self, s: Session, zone: str, changes: Changes, now: datetime, cause: str | None = None) -> None:
        """One alert per watch room for everything a command raised or closed, each rendered for the room."""
        if not changes:
            return
        rooms = self.directory.zone_rooms(zone, "watch")
        for room in rooms:
            # A conflict closing by itself changes the alert that raised it where that alert was posted, and
            # is said once in its thread; only the others are listed in a new alert.
            shown = carried(s, room) if changes.closed else set()
            posted = [cf for cf in changes.closed if cf.id in shown]
            for cf in posted:
                say_change(s, self.directory, self, cf, now, change="closed", rooms=[room], edit=False)
            closed = [cf for cf in changes.closed if cf not in posted]
            if changes.raised or closed:
                self._post_alert(s, room, zone, changes.raised, closed, now, cause, kind="alert")
        for cf in changes.closed:
            edit_alerts(s, self.directory, self, cf, now)
        email_alerts(s, self, zone, changes.raised, now, cause)  # the agencies involved that take them by e-mail
        notify("alerts", zone, changes.raised, changes.closed, len(rooms))

    def escalate(self, s: Session, now: datetime, after: timedelta, unwatched_after: timedelta | None = None,
                 watch_zones: frozenset[str] = frozenset()) -> list[ConflictRow]:
        """Conflicts nobody acknowledged in time go once to their district's watch rooms; sooner, after
        `unwatched_after`, those of `watch_zones` whose agencies have nobody on watch (commands/watch_alerts.py)."""
        early = min(after, unwatched_after) if unwatched_after is not None else after
        waiting = (ConflictRow.status == ConflictStatus.OPEN.value, col(ConflictRow.escalated_at).is_(None),
                   col(ConflictRow.raised_at) <= now - early,
                   # A snoozed conflict waits for its snooze to end (`conflicts snooze`).
                   or_(col(ConflictRow.snoozed_until).is_(None), col(ConflictRow.snoozed_until) <= now))
        zones = sorted(set(s.exec(select(ConflictRow.zone_code).distinct().where(*waiting)).all()))
        if not zones:
            notify("escalations", [])
            return []
        # The lock order of storage/locks.py: the zones' locks, in order, then the audit chain's, then the rows.
        locks.hold(s, *(locks.deconfliction_lock(z) for z in zones))
        hold_chain(s)
        due = s.exec(select(ConflictRow).where(*waiting, col(ConflictRow.zone_code).in_(zones))
                     .order_by(ConflictRow.id).with_for_update()).all()
        due = [cf for cf in due if cf.raised_at <= now - after
               or (cf.zone_code in watch_zones and nobody_on_watch_for(s, cf, now))]
        for cf in due:
            cf.escalated_at = now
            s.add(cf)
            zone = get_zone(cf.zone_code)
            audit(s, at=now, actor="scheduler", action="conflict.escalate", entity=f"CF-{cf.id}", zone=cf.zone_code,
                  detail={"district": zone.district})
            for room in self.directory.district_rooms(zone.district):
                self._post_alert(s, room, cf.zone_code, [cf], [], now, None, kind="escalation")
            email_alerts(s, self, cf.zone_code, [cf], now, kind="escalation")
            # The zone's own alert shows it went up, and its thread says so once (commands/watch_alerts.py).
            say_change(s, self.directory, self, cf, now, change="escalated")
        notify("escalations", due)
        return list(due)

    def alert_facts(self, s: Session, zone: str, rows, now: datetime, watch: bool = True) -> AlertFacts:
        """What alerts showing `rows` (conflicts of one zone) read, in a fixed number of queries however many
        conflicts and alerts: `edit_alerts` reads it once for every alert it edits."""
        op_rows = ops_repo.by_ids(s, {i for cf in rows for i in (cf.op_a, cf.op_b) if i is not None})
        loaded = targets_repo.with_endorsers(s, {cf.target_id for cf in rows if cf.target_id})
        targets = {tid: target for tid, (target, _) in loaded.items()}
        etas = best_etas(s, list(targets.values()), now)  # the ETA the gap rule used
        # Alerts and escalations call the zone's supervisors on watch by name, so their phones notify.
        on_watch = watch_repo.on_watch(s, zone, now) if watch else []
        return AlertFacts(op_rows, targets, {tid: agencies for tid, (_, agencies) in loaded.items()}, etas,
                          on_watch)

    def _post_alert(self, s: Session, room: Room, zone: str, raised, closed, now, cause, kind: str,
                    target_id: str | None = None, escalation: bool = False,
                    dedupe_key: str | None = None, facts: AlertFacts | None = None) -> OutboxRow | None:
        """Post an alert; with kind "edit" and `target_id`, the alert posted as that message, shown as it is now.
        Returns the row stored (None: nothing to tell this room, or `dedupe_key` used already).
        `facts`: read already (`alert_facts`) for these conflicts, or read here."""
        if not room.show_withheld:
            # A room configured to hide withheld items is not told they exist, not even by an alert.
            raised = [c for c in raised if may_show(c.marking, room.clearance)]
            closed = [c for c in closed if may_show(c.marking, room.clearance)]
            if not raised and not closed:
                return None
        tz = get_zone(zone).tz
        all_rows = list(raised) + list(closed)
        if facts is None:
            facts = self.alert_facts(s, zone, all_rows, now, watch=bool(raised))
        op_rows, targets, endorse, etas = facts.ops, facts.targets, facts.endorsers, facts.etas
        holders = self.detail_rooms
        on_watch = facts.on_watch if raised else []

        def data(clearance):
            def view(cf):
                v = conflict_view(cf, op_rows, targets.get(cf.target_id), endorse.get(cf.target_id, []), clearance)
                with_eta(v.get("target"), etas.get(cf.target_id))
                v["escalated_at"] = cf.escalated_at  # an alert kept current shows when it went to the district
                if v["withheld"]:
                    v["held_in"] = holders(zone, cf.marking)
                return v
            # The cause quotes the command, which may carry a marked item's details (mark=LES, at=, note=):
            # only a room cleared for everything in the alert sees it.
            quoted = cause if all(may_show(c.marking, clearance) for c in all_rows) else None
            views = [view(c) for c in raised]
            return {"zone": get_zone(zone), "tz": tz, "raised": views, "closed": [view(c) for c in closed],
                    "cause": quoted, "escalation": escalation or kind == "escalation",
                    "watch": alert_watch(on_watch, views)}

        buttons = [cf.id for cf in raised if may_show(cf.marking, room.clearance)]
        extra: dict = {"conflicts": buttons, **({"target_id": target_id} if target_id else {})}
        if raised and kind == "alert":
            extra["raised"] = [cf.id for cf in raised]  # which alert this is (commands/email_alerts.py)
        if room.platform == "matrix" and on_watch and kind != "edit":  # m.mentions: see bot/matrix/events.py
            extra["mentions"] = [p.person.split(":", 1)[1] for p in on_watch if p.person.startswith("matrix:")]
        return post(s, room, kind, "alert.j2", data, now, extra=extra, dedupe_key=dedupe_key)

    def detail_rooms(self, zone: str, marking: str) -> list[str]:
        """The zone's watch rooms cleared to read an item with this marking (named where it is withheld)."""
        return [r.id for r in self.directory.zone_rooms(zone, "watch")
                if may_show(marking, r.clearance) and r.platform != "console"]


