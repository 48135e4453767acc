"""`conflicts [list|all]`, `conflicts ack CF-n`, `conflicts resolve CF-n proceed|joint|delay|cancel`."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlmodel import col, select

from watchfloor.ioc.markings import may_show
from watchfloor.ioc.model import OPEN_CONFLICT_STATUSES, RESOLUTIONS, ConflictStatus, conflict_ref
from watchfloor.ioc.zones import get_zone
from watchfloor.storage import operations as ops_repo
from watchfloor.storage import outbox
from watchfloor.storage import targets as targets_repo
from watchfloor.storage.audit import hold_chain
from watchfloor.storage.tables import ConflictRow, TargetRow
from watchfloor.templates import clock_time

from .context import Context, dispatch
from .errors import CommandError
from .grammar import Token
from .ops import _only_keys, _words
from .posting import post
from .values import parse_duration, parse_ref, parse_text
from .target_eta import with_best_etas
from .views import conflict_view, record_withheld
from .watch_alerts import edit_alerts, own_alert, threads_of

MAX_SNOOZE = timedelta(hours=24)


def views(ctx: Context, rows: list[ConflictRow]) -> list[dict]:
    ops = ops_repo.by_ids(ctx.s, {i for cf in rows for i in (cf.op_a, cf.op_b) if i is not None})
    targets = targets_repo.with_endorsers(ctx.s, {cf.target_id for cf in rows if cf.target_id is not None})
    out, shown = [], []
    for cf in rows:
        target, endorsers = targets.get(cf.target_id, (None, [])) if cf.target_id else (None, [])
        out.append(conflict_view(cf, ops, target, endorsers, ctx.room.clearance, ctx.sender.clearance))
        shown.append((target, out[-1]))
    with_best_etas(ctx.s, shown, ctx.now)
    return out


def _find(ctx: Context, usage: str) -> ConflictRow:
    if len(ctx.cmd.words) < 2:
        raise CommandError("id", f"missing conflict id; usage: {usage}")
    n = parse_ref("id", ctx.cmd.words[1].text, "CF")
    if ctx.room.zone is None:
        # An escalation's buttons and commands work in the district watch room: it acts in the conflict's zone,
        # whose lock the engine could not take before knowing it (a conflict never changes zone).
        code = ctx.s.exec(select(ConflictRow.zone_code).where(ConflictRow.id == n)).first()
        if code is not None and _in_district(ctx, code):
            ctx.lock_zone(code)
            ctx.room = replace(ctx.room, zone=get_zone(code))
    # The audit chain's lock before the conflict row's, as every command takes them (storage/locks.py): an
    # acknowledgement taking them the other way round deadlocked with a cancel closing the same conflict.
    hold_chain(ctx.s)
    # Locked and re-read: an acknowledgement racing an automatic close waits for it and then sees it closed.
    row = ctx.s.exec(select(ConflictRow).where(ConflictRow.id == n).with_for_update()
                     .execution_options(populate_existing=True)).first()
    if row is None or row.zone_code != ctx.zone.code or not ctx.visible(row.marking):
        # A conflict above this room's or reader's clearance is acknowledged where its details are held.
        raise CommandError("id", f"unknown conflict {conflict_ref(n)} in {ctx.zone.code}")
    return row


def _in_district(ctx: Context, zone_code: str) -> bool:
    return "district" in ctx.room.kinds and get_zone(zone_code).district == ctx.room.district


def list_conflicts(ctx: Context, include_all: bool) -> None:
    _only_keys(ctx, (), "conflicts")
    q = select(ConflictRow).where(ConflictRow.zone_code == ctx.zone.code)
    if not include_all:
        q = q.where(col(ConflictRow.status).in_(OPEN_CONFLICT_STATUSES))
    rows = list(ctx.s.exec(q.order_by(ConflictRow.id).limit(500)).all())
    items = views(ctx, rows)
    record_withheld(ctx, "conflicts", items)
    if not ctx.room.show_withheld:
        items = [i for i in items if not i["withheld"]]
    ctx.reply("conflict_list.j2", conflicts=items, include_all=include_all)


def ack(ctx: Context) -> None:
    usage = "conflicts ack CF-n"
    ctx.allow("ack")
    if len(ctx.cmd.words) < 2 and ctx.msg.extra.get("reaction_to"):
        _ack_by_reaction(ctx, ctx.msg.extra["reaction_to"])
        return
    cf = _find(ctx, usage)
    _words(ctx, 1, usage)
    _only_keys(ctx, (), "conflicts ack")
    if cf.status not in OPEN_CONFLICT_STATUSES:
        # An acknowledgement racing an automatic close must not re-open it.
        raise CommandError("id", f"{conflict_ref(cf.id)} is already {cf.status}"
                                 + (f" ({cf.closed_reason})" if cf.closed_reason else ""))
    if cf.status == ConflictStatus.ACKED.value and cf.acked_by == ctx.sender.id:
        ctx.reply("conflict_changed.j2", conflict=views(ctx, [cf])[0], verb="already yours")
        return
    previous = cf.acked_by
    cf.status, cf.acked_by, cf.acked_at = ConflictStatus.ACKED.value, ctx.sender.id, ctx.now
    cf.snoozed_until = None  # owned now: nothing left to wake anyone for
    ctx.s.add(cf)
    ctx.audit("conflict.ack", conflict_ref(cf.id), {"owner": ctx.sender.id, "previous_owner": previous})
    ctx.reply("conflict_changed.j2", conflict=views(ctx, [cf])[0], verb="acknowledged")
    _tell_watch(ctx, cf, "acknowledged")


def _ack_by_reaction(ctx: Context, alert_id: str) -> None:
    """✅ on an alert (Matrix): acknowledge its open conflicts. A reaction on anything else, or on an alert whose
    conflicts are all owned or over already (a second reaction), does nothing."""
    row = outbox.origin_of(ctx.s, ctx.room.id, alert_id)
    if row is None or row.kind not in ("alert", "escalation"):
        return
    for n in outbox.payload(row).get("conflicts") or []:
        status = ctx.s.exec(select(ConflictRow.status).where(ConflictRow.id == int(n))).first()
        if status == ConflictStatus.OPEN.value:
            ctx.cmd = replace(ctx.cmd, words=[Token("ack"), Token(conflict_ref(int(n)))])
            ack(ctx)


def resolve(ctx: Context) -> None:
    usage = 'conflicts resolve CF-n proceed|joint|delay|cancel [note=".."]'
    ctx.allow("resolve")
    cf = _find(ctx, usage)
    if len(ctx.cmd.words) < 3:
        raise CommandError("resolution", f"missing; one of {', '.join(RESOLUTIONS)}")
    _words(ctx, 2, usage)
    _only_keys(ctx, ("note",), "conflicts resolve")
    resolution = ctx.cmd.words[2].text.lower()
    if resolution not in RESOLUTIONS:
        raise CommandError("resolution", f"'{resolution[:24]}' is not one of {', '.join(RESOLUTIONS)}")
    if cf.status not in OPEN_CONFLICT_STATUSES:
        raise CommandError("id", f"{conflict_ref(cf.id)} is already {cf.status}"
                                 + (f" ({cf.closed_reason})" if cf.closed_reason else ""))
    note = parse_text("note", ctx.cmd.pairs["note"].text) if "note" in ctx.cmd.pairs else None
    # The decision holds for the plan as it stands now; a later change to either side raises it again.
    cf.rev_a, cf.rev_b = ctx.engine.deconfliction.revisions_of(ctx.s, cf)
    cf.status, cf.open_key = ConflictStatus.RESOLVED.value, None
    cf.resolution, cf.resolved_by, cf.resolved_at, cf.note = resolution, ctx.sender.id, ctx.now, note
    cf.snoozed_until = None
    if cf.acked_by is None:
        cf.acked_by, cf.acked_at = ctx.sender.id, ctx.now
    ctx.s.add(cf)
    ctx.audit("conflict.resolve", conflict_ref(cf.id), {"resolution": resolution, "note": note})
    ctx.reply("conflict_changed.j2", conflict=views(ctx, [cf])[0], verb=f"resolved: {resolution}")
    _tell_watch(ctx, cf, f"resolved: {resolution}")


def _tell_watch(ctx: Context, cf: ConflictRow, verb: str) -> None:
    """Other watch rooms of the zone learn who owns the conflict or how it ended."""
    ops = ops_repo.by_ids(ctx.s, [i for i in (cf.op_a, cf.op_b) if i is not None])
    target = ctx.s.get(TargetRow, cf.target_id) if cf.target_id else None
    endorsers = targets_repo.endorsers(ctx.s, cf.target_id) if cf.target_id else []
    deconf = ctx.engine.deconfliction

    def data(clearance):
        view = conflict_view(cf, ops, target, endorsers, clearance)
        with_best_etas(ctx.s, [(target, view)], ctx.now)
        if view["withheld"]:
            view["held_in"] = deconf.detail_rooms(ctx.zone.code, cf.marking)
        return {"tz": ctx.tz, "conflict": view, "verb": verb}

    told = [room for room in ctx.engine.directory.zone_rooms(ctx.zone.code, "watch") if room.id != ctx.room.id
            # A room configured not to learn that withheld items exist is not told.
            and (room.show_withheld or may_show(cf.marking, room.clearance))]
    threads = threads_of(ctx.s, [room.id for room in told], cf.id)  # one query for every room
    for room in told:
        post(ctx.s, room, "notice", "conflict_changed.j2", data, ctx.now,
             extra={"conflict_update": cf.id, "conflict_state": cf.status, **threads[room.id]})
    # The alerts themselves show the change too, in this room as well (commands/watch_alerts.py).
    edit_alerts(ctx.s, ctx.engine.directory, deconf, cf, ctx.now, also=own_alert(ctx.room, ctx.msg.event_id))


def snooze(ctx: Context) -> None:
    """No escalation of an unacknowledged conflict until the snooze is over (commands/watch_alerts.py wakes it)."""
    usage = 'conflicts snooze CF-n DURATION [reason=".."]'
    ctx.allow("snooze")
    cf = _find(ctx, usage)
    if len(ctx.cmd.words) < 3:
        raise CommandError("duration", f"missing; e.g. 2h or 90m; usage: {usage}")
    _words(ctx, 2, usage)
    _only_keys(ctx, ("reason",), "conflicts snooze")
    length = parse_duration("duration", ctx.cmd.words[2].text)
    if length > MAX_SNOOZE:
        raise CommandError("duration", "at most 24h; snooze again when it wakes")
    reason = parse_text("reason", ctx.cmd.pairs["reason"].text) if "reason" in ctx.cmd.pairs else None
    if cf.status != ConflictStatus.OPEN.value:
        what = "acknowledged by its owner and does not escalate" if cf.status == ConflictStatus.ACKED.value \
            else cf.status
        raise CommandError("id", f"{conflict_ref(cf.id)} is already {what}")
    cf.snoozed_until, cf.snoozed_by, cf.snooze_reason = ctx.now + length, ctx.sender.id, reason
    ctx.s.add(cf)
    ctx.audit("conflict.snooze", conflict_ref(cf.id), {"until": cf.snoozed_until.isoformat(), "reason": reason})
    until = clock_time(cf.snoozed_until, ctx.tz, ctx.now)
    ctx.reply("conflict_changed.j2", conflict=views(ctx, [cf])[0], verb=f"snoozed until {until}")
    _tell_watch(ctx, cf, f"snoozed until {until} by {ctx.sender.name}")


def conflicts_command(ctx: Context) -> None:
    dispatch(ctx, "conflicts", {"list": lambda c: list_conflicts(c, include_all=False),
                                "all": lambda c: list_conflicts(c, include_all=True),
                                "ack": ack, "resolve": resolve, "snooze": snooze}, default="list")


HANDLERS = {"conflicts": conflicts_command}
