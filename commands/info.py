"""`zone`, `help [COMMAND]` and `brief [now]`."""
from __future__ import annotations

from sqlmodel import select

from watchfloor.ioc.zones import get_zone
from watchfloor.storage.tables import OperationRow

from .briefing import build_briefing
from .context import Context
from .errors import CommandError
from .grammar import ALIASES, COMMANDS


def zone_command(ctx: Context) -> None:
    room = ctx.room
    if room.zone is None:
        ctx.reply("zone.j2", bound=False, room_id=room.id)
        return
    directory = ctx.engine.directory
    bridged = [r.id for r in directory.zone_rooms(room.zone.code, "joint") if r.platform != "console"]
    watch = [r.id for r in directory.zone_rooms(room.zone.code, "watch") if r.platform != "console"]
    present = sorted({row for row in ctx.s.exec(
        select(OperationRow.agency_code).where(OperationRow.zone_code == room.zone.code).distinct()).all()})
    ctx.reply("zone.j2", bound=True, z=room.zone, now=ctx.now, bridged=bridged, watch=watch, agencies=present,
              clearance=[m.value for m in sorted(room.clearance, key=lambda m: m.rank)], room_id=room.id)


def help_command(ctx: Context) -> None:
    topic = ctx.cmd.words[0].text.lower().lstrip("!/") if ctx.cmd.words else None
    topic = ALIASES.get(topic, topic) if topic else None
    if topic is not None and topic not in COMMANDS:
        raise CommandError("command", f"no help for '{topic[:24]}' (one of {', '.join(COMMANDS)})")
    ctx.reply("help.j2", topic=topic, ephemeral=True)


def brief_command(ctx: Context) -> None:
    action = ctx.cmd.action
    if action not in (None, "now"):
        raise CommandError("command", "usage: brief [now]")
    ctx.allow("now")
    zone = get_zone(ctx.zone.code)
    data = build_briefing(ctx.s, ctx.engine.directory, zone, ctx.now, ctx.room.clearance, ctx.sender.clearance,
                          show_withheld=ctx.room.show_withheld)
    ctx.audit("brief.now", None, {"zone": zone.code})
    ctx.reply("briefing.j2", **data)


HANDLERS = {"zone": zone_command, "help": help_command, "brief": brief_command}
