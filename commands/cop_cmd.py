"""`cop`, `cop calendar`, `cop revoke`: personal links to the zone's common operating picture.

Answered to the sender alone: a link opens a page at the sender's own clearance, so it is theirs, not the room's.
"""
from __future__ import annotations

from watchfloor.storage import cop

from .context import Context
from .errors import CommandError


def _base_url(ctx: Context) -> str:
    base = ctx.engine.directory.settings.service.base_url
    if not base:
        raise CommandError("cop", "the picture is not served here; ask your administrator to set [service] base_url")
    return base.rstrip("/")


def _link(ctx: Context) -> None:
    base = _base_url(ctx)
    token = cop.issue(ctx.s, cop.LINK, ctx.sender.id, ctx.zone.code, ctx.now)
    ctx.audit("cop.link", None, {"expires": ctx.now + cop.LINK_TTL})  # never the token: the trail is readable
    ctx.reply("cop_link.j2", ephemeral=True, url=f"{base}/cop/login/{token}",
              minutes=int(cop.LINK_TTL.total_seconds() // 60), hours=int(cop.SESSION_TTL.total_seconds() // 3600))


def _calendar(ctx: Context) -> None:
    base = _base_url(ctx)
    token = cop.issue(ctx.s, cop.CALENDAR, ctx.sender.id, ctx.zone.code, ctx.now)
    ctx.audit("cop.calendar", None, {})
    ctx.reply("cop_calendar.j2", ephemeral=True, url=f"{base}/cop/{ctx.zone.code}/ops.ics?token={token}")


def _revoke(ctx: Context) -> None:
    n = cop.revoke_calendars(ctx.s, ctx.sender.id, ctx.now)
    ctx.audit("cop.revoke", None, {"count": n})
    ctx.reply("cop_revoked.j2", ephemeral=True, count=n)


_ACTIONS = {"calendar": _calendar, "revoke": _revoke}


def cop_command(ctx: Context) -> None:
    action = ctx.cmd.action
    if ctx.cmd.pairs or len(ctx.cmd.words) > 1:
        raise CommandError("command", "usage: cop, cop calendar or cop revoke")
    if action is None:
        _link(ctx)
        return
    handler = _ACTIONS.get(action)
    if handler is None:
        raise CommandError("command", f"unknown cop action '{action[:24]}' (calendar, revoke)")
    ctx.allow(action)
    handler(ctx)


HANDLERS = {"cop": cop_command}
