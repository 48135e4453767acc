"""`op log|list|show|update|cancel|done`."""
from __future__ import annotations

from datetime import datetime, timedelta

from watchfloor.ioc.conflicts import Rules
from watchfloor.ioc.geo import distance_m
from watchfloor.ioc.markings import Marking
from watchfloor.ioc.model import OP_TYPES, LIVE_STATUSES, OpStatus, op_ref
from watchfloor.storage import operations as repo
from watchfloor.ioc.zones import Zone
from watchfloor.storage.tables import OperationRow

from .briefing import local_day
from .context import Context, dispatch
from .errors import CommandError
from .grammar import Token
from .overdue import SHOWN_FOR as OVERDUE_SHOWN_FOR
from .values import (parse_end, parse_marking, parse_position, parse_radius, parse_ref, parse_start, parse_text,
                     parse_vessel_field)
from .views import op_view, record_withheld

OP_KEYS = ("vessel", "at", "radius", "start", "end", "mark", "note", "contact")
UPDATE_KEYS = OP_KEYS + ("type",)
DEFAULT_DURATION = timedelta(hours=2)


def _only_keys(ctx: Context, allowed: tuple[str, ...], what: str) -> None:
    for key in ctx.cmd.pairs:
        if key not in allowed:
            raise CommandError(key, f"unknown key for {what} (known: {', '.join(allowed)})")


def _words(ctx: Context, n_max: int, usage: str) -> None:
    if len(ctx.cmd.words) - 1 > n_max:
        extra = ctx.cmd.words[n_max + 1].text
        raise CommandError("command", f"unexpected word '{extra[:24]}'; usage: {usage}")


def _op_type(raw: str) -> str:
    t = raw.strip().lower()
    if t not in OP_TYPES:
        raise CommandError("type", f"unknown type '{raw[:24]}' (one of {', '.join(OP_TYPES)})")
    return t


def _apply_fields(ctx: Context, row: OperationRow, fresh: bool) -> list[str]:
    return apply_op_fields(row, ctx.cmd.pairs, zone=ctx.zone, now=ctx.now, rules=ctx.engine.rules,
                           far_km=ctx.engine.directory.settings.conflicts.far_from_zone_km, fresh=fresh)


def apply_op_fields(row: OperationRow, p: dict[str, Token], *, zone: Zone, now: datetime, rules: Rules,
                    far_km: float, fresh: bool) -> list[str]:
    """Validate every given key and set it on the row; returns warnings for the reply.

    Shared by `op log`, `op update` and `import ops`, so every way in checks the same rules.
    """
    tz = zone.tz
    warnings: list[str] = []
    if "type" in p:
        row.type = _op_type(p["type"].text)
    if "vessel" in p:
        row.vessel_key = parse_vessel_field(p["vessel"].text, p["vessel"].quoted).key if p["vessel"].text else None
    lat, lon, radius = row.lat, row.lon, row.radius_m
    if "at" in p:
        lat, lon = parse_position(p["at"].text)
    if "radius" in p:
        radius = parse_radius(p["radius"].text, rules.max_radius_m)
    if "at" in p or "radius" in p:
        repo.set_place(row, lat, lon, radius)
    if lat is not None and "at" in p:
        km = distance_m(lat, lon, zone.lat, zone.lon) / 1000
        if km > far_km:
            warnings.append(f"at: {km:.0f} km from {zone.name}; stored anyway — check the position")
    start, end = row.start_at, row.end_at
    if "start" in p:
        start = parse_start(p["start"].text, tz, now, warnings)
    elif fresh:
        start = now
    if "end" in p:
        end = parse_end(p["end"].text, start, tz, now, warnings)
    elif fresh:
        end = start + DEFAULT_DURATION
    elif "start" in p:
        end = start + (row.end_at - row.start_at)  # moving the start keeps the duration
    if end <= start:
        raise CommandError("end", "must be after start")
    if end - start > rules.max_operation:
        raise CommandError("end", f"an operation may last at most {rules.max_operation.total_seconds() / 3600:g} h")
    row.start_at, row.end_at = start, end
    if "mark" in p:
        row.marking = parse_marking(p["mark"].text).value
    for key in ("note", "contact"):
        if key in p:
            setattr(row, key, parse_text(key, p[key].text) or None)
    if row.lat is None and not row.vessel_key:  # an update must not leave it nowhere and on no vessel
        raise CommandError("at", "give a place (at=LAT,LON) or a vessel (vessel=IMO...)")
    return warnings


def _find(ctx: Context, raw_id: str | None, usage: str, lock: bool = True) -> OperationRow:
    if not raw_id:
        raise CommandError("id", f"missing operation id; usage: {usage}")
    n = parse_ref("id", raw_id, "OP")
    row = repo.get_for_update(ctx.s, n) if lock else repo.get(ctx.s, n)
    if row is None or row.zone_code != ctx.zone.code or not ctx.visible(row.marking):
        raise CommandError("id", f"unknown operation {op_ref(n)} in {ctx.zone.code}")
    return row


def log_op(ctx: Context) -> None:
    usage = "op log TYPE at=LAT,LON start=TIME end=TIME|DURATION [vessel= radius= mark= note= contact=]"
    ctx.allow("log")
    words = ctx.cmd.words
    if len(words) < 2:
        raise CommandError("type", f"missing; usage: {usage}")
    _words(ctx, 1, usage)
    _only_keys(ctx, OP_KEYS, "op log")
    row = OperationRow(
        zone_code=ctx.zone.code, agency_code=ctx.sender.agency, type=_op_type(words[1].text),
        start_at=ctx.now, end_at=ctx.now, created_by=ctx.sender.id, created_room=ctx.room.id,
        created_at=ctx.now, updated_at=ctx.now, marking=Marking.UNCLASS.value,
    )
    warnings = _apply_fields(ctx, row, fresh=True)
    if not ctx.visible(row.marking):
        raise CommandError("mark", f"this room or your agency is not cleared for {row.marking}; log it in a cleared room")
    ctx.s.add(row)
    ctx.s.flush()
    ctx.audit("op.log", op_ref(row.id), {"type": row.type, "marking": row.marking, "start": row.start_at,
                                        "end": row.end_at, "vessel": row.vessel_key})
    ctx.changes = ctx.engine.deconfliction.check_operation(ctx.s, row, ctx.now, ctx.sender.id)
    ctx.reply("op_logged.j2", op=op_view(row, ctx.room.clearance, ctx.sender.clearance, now=ctx.now),
              raised=[f"CF-{c.id}" for c in ctx.changes.raised], warnings=warnings, verb="logged")


def update_op(ctx: Context) -> None:
    usage = "op update OP-n key=value..."
    row = _find(ctx, ctx.cmd.words[1].text if len(ctx.cmd.words) > 1 else None, usage)
    ctx.allow("update", row.agency_code)
    _words(ctx, 1, usage)
    _only_keys(ctx, UPDATE_KEYS, "op update")
    if not ctx.cmd.pairs:
        raise CommandError("command", f"nothing to change; usage: {usage}")
    if row.status not in LIVE_STATUSES:
        raise CommandError("id", f"{op_ref(row.id)} is {row.status} and can no longer change")
    before = {k: str(getattr(row, k)) for k in ("type", "vessel_key", "lat", "lon", "radius_m", "start_at",
                                                "end_at", "marking", "note", "contact")}
    warnings = _apply_fields(ctx, row, fresh=False)
    if not ctx.visible(row.marking):
        raise CommandError("mark", f"this room or your agency is not cleared for {row.marking}")
    after = {k: str(getattr(row, k)) for k in before}
    previous_vessel = None if before["vessel_key"] == "None" else before["vessel_key"]
    row.revision += 1
    row.updated_at = ctx.now
    ctx.s.add(row)
    ctx.s.flush()
    ctx.audit("op.update", op_ref(row.id), {k: [before[k], after[k]] for k in before if before[k] != after[k]})
    ctx.changes = ctx.engine.deconfliction.check_operation(ctx.s, row, ctx.now, ctx.sender.id, previous_vessel)
    ctx.reply("op_logged.j2", op=op_view(row, ctx.room.clearance, ctx.sender.clearance, now=ctx.now),
              raised=[f"CF-{c.id}" for c in ctx.changes.raised], warnings=warnings, verb="updated",
              closed=[f"CF-{c.id}" for c in ctx.changes.closed])


def _finish(ctx: Context, status: OpStatus, key: str, action: str) -> None:
    usage = f"op {action} OP-n [{key}=\"...\"]"
    row = _find(ctx, ctx.cmd.words[1].text if len(ctx.cmd.words) > 1 else None, usage)
    ctx.allow(action, row.agency_code)
    _words(ctx, 1, usage)
    _only_keys(ctx, (key,), f"op {action}")
    if row.status not in LIVE_STATUSES:
        raise CommandError("id", f"{op_ref(row.id)} is already {row.status}")
    text = parse_text(key, ctx.cmd.pairs[key].text) if key in ctx.cmd.pairs else None
    row.status = status.value
    row.outcome = text
    row.revision += 1
    row.updated_at = ctx.now
    ctx.s.add(row)
    ctx.s.flush()
    ctx.audit(f"op.{action}", op_ref(row.id), {key: text})
    ctx.changes = ctx.engine.deconfliction.check_operation(ctx.s, row, ctx.now, ctx.sender.id)
    ctx.reply("op_finished.j2", op=op_view(row, ctx.room.clearance, ctx.sender.clearance, now=ctx.now),
              action=action, closed=[f"CF-{c.id}" for c in ctx.changes.closed], raised=[f"CF-{c.id}" for c in ctx.changes.raised])


def list_ops(ctx: Context) -> None:
    which = ctx.cmd.words[1].text.lower() if len(ctx.cmd.words) > 1 else "live"
    _words(ctx, 1, "op list [today|active|all]")
    _only_keys(ctx, (), "op list")
    now, back = ctx.now, ctx.engine.rules.max_operation
    if which == "today":
        rows = repo.listing(ctx.s, ctx.zone.code, window=local_day(now, ctx.zone), lookback=back,
                            statuses=(*LIVE_STATUSES, OpStatus.DONE.value))
    elif which == "active":
        rows = repo.listing(ctx.s, ctx.zone.code, statuses=LIVE_STATUSES, window=(now, now + timedelta(seconds=1)),
                            lookback=back)
    elif which == "all":
        rows = repo.listing(ctx.s, ctx.zone.code, limit=500, newest=True)
    elif which == "live":
        # Not over yet, and those past their end nobody closed (shown overdue until done, cancelled or moved).
        rows = repo.listing(ctx.s, ctx.zone.code, statuses=LIVE_STATUSES,
                            window=(now - OVERDUE_SHOWN_FOR, now + timedelta(days=3650)), lookback=back, limit=500)
    else:
        raise CommandError("filter", f"'{which[:24]}' is not one of today, active, all")
    items = [op_view(r, ctx.room.clearance, ctx.sender.clearance, now=now) for r in rows]
    record_withheld(ctx, "op list", items)
    if not ctx.room.show_withheld:
        items = [i for i in items if not i["withheld"]]
    ctx.reply("op_list.j2", ops=items, which=which)


def show_op(ctx: Context) -> None:
    row = _find(ctx, ctx.cmd.words[1].text if len(ctx.cmd.words) > 1 else None, "op show OP-n", lock=False)
    _words(ctx, 1, "op show OP-n")
    ctx.reply("op_show.j2", op=op_view(row, ctx.room.clearance, ctx.sender.clearance, now=ctx.now))


_ACTIONS = {
    "log": log_op,
    "list": list_ops,
    "show": show_op,
    "update": update_op,
    "cancel": lambda ctx: _finish(ctx, OpStatus.CANCELLED, "reason", "cancel"),
    "done": lambda ctx: _finish(ctx, OpStatus.DONE, "outcome", "done"),
}


def op_command(ctx: Context) -> None:
    dispatch(ctx, "op", _ACTIONS)


HANDLERS = {"op": op_command}
