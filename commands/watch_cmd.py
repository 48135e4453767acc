"""`watch`, `watch on [until=TIME]`, `watch off`, `handover`, and `conflicts snooze CF-n 2h [reason=".."]`."""
from __future__ import annotations

from datetime import datetime, time, timedelta

from watchfloor.storage import watch as watch_repo

from .context import Context, dispatch
from .errors import CommandError
from .handover import build_handover
from .ops import _only_keys, _words
from .values import parse_time
from .watch_alerts import announce, person

MAX_SHIFT = timedelta(hours=24)
# Without `until=` in a zone without handover times: a watch that lasted until `watch off` was never over for a
# supervisor who went home without saying so, and alerts kept calling them.
DEFAULT_SHIFT = timedelta(hours=12)


def next_handover(times: list[time], tz, now: datetime) -> datetime | None:
    """The first of the zone's handover times after now (zone local), or None when the zone has none."""
    local = now.astimezone(tz)
    for day in range(0, 3):
        for t in sorted(times):
            candidate = datetime.combine(local.date() + timedelta(days=day), t).replace(tzinfo=tz)
            if candidate.astimezone(now.tzinfo) > now:
                return candidate.astimezone(now.tzinfo)
    return None


def handover_times(ctx: Context) -> list[time]:
    for z in ctx.engine.directory.settings.zone:
        if z.code == ctx.zone.code:
            return list(z.handover_times)
    return []


def watch_command(ctx: Context) -> None:
    dispatch(ctx, "watch", {"list": _listing, "on": _on, "off": _off}, default="list")


def _listing(ctx: Context) -> None:
    _words(ctx, 0, "watch")
    _only_keys(ctx, (), "watch")
    _list(ctx)


def _list(ctx: Context) -> None:
    people = watch_repo.on_watch(ctx.s, ctx.zone.code, ctx.now)
    by_agency: dict[str, list[dict]] = {}
    for p in people:
        by_agency.setdefault(p.agency_code, []).append(person(p))
    ctx.reply("watch.j2", z=ctx.zone, now=ctx.now, by_agency=by_agency)


def _on(ctx: Context) -> None:
    usage = "watch on [until=TIME]"
    ctx.allow("on")
    _words(ctx, 0, usage)
    _only_keys(ctx, ("until",), "watch on")
    zone = ctx.zone
    if "until" in ctx.cmd.pairs:
        until = parse_time("until", ctx.cmd.pairs["until"].text, ctx.tz, ctx.now)
        if until <= ctx.now:
            raise CommandError("until", f"{until.astimezone(ctx.tz):%a %d %b %H:%M %Z} has passed; give a time "
                                        "to come")
        if until - ctx.now > MAX_SHIFT:
            raise CommandError("until", "a watch is at most 24 hours; go on again for the next one")
    else:
        until = next_handover(handover_times(ctx), ctx.tz, ctx.now) or ctx.now + DEFAULT_SHIFT
    shift, new = watch_repo.go_on(ctx.s, zone.code, ctx.sender.id, ctx.sender.name, ctx.sender.agency, ctx.now,
                                  until)
    ctx.audit("watch.on", None, {"zone": zone.code, "until": until.isoformat() if until else None, "new": new})
    ctx.reply("watch_changed.j2", on=True, new=new, who=person(shift), z=zone)
    if new:  # a watch moved to end later is the same watch: said when it started
        announce(ctx.s, ctx.engine.directory, zone.code, shift, "on", ctx.now, told=ctx.room)


def _off(ctx: Context) -> None:
    ctx.allow("off")
    _words(ctx, 0, "watch off")
    _only_keys(ctx, (), "watch off")
    shift = watch_repo.go_off(ctx.s, ctx.zone.code, ctx.sender.id, ctx.now)
    if shift is None:  # off already (or never on): going off again changes nothing
        ctx.reply("watch_changed.j2", on=False, new=False, who=None, z=ctx.zone)
        return
    ctx.audit("watch.off", None, {"zone": ctx.zone.code})
    ctx.reply("watch_changed.j2", on=False, new=False, who=person(shift), z=ctx.zone)
    announce(ctx.s, ctx.engine.directory, ctx.zone.code, shift, "off", ctx.now, told=ctx.room)


def handover_command(ctx: Context) -> None:
    if ctx.cmd.action not in (None, "now"):
        raise CommandError("command", "usage: handover [now]")
    ctx.allow("now")
    _words(ctx, 0, "handover [now]")
    _only_keys(ctx, (), "handover")
    data = build_handover(ctx.s, ctx.engine.directory, ctx.zone, ctx.now, ctx.room.clearance, ctx.sender.clearance,
                          show_withheld=ctx.room.show_withheld)
    ctx.audit("handover.now", None, {"zone": ctx.zone.code})
    ctx.reply("handover.j2", **data)


HANDLERS = {"watch": watch_command, "handover": handover_command}
