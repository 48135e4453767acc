"""`cop [ZONE]`, `cop calendar [ZONE]`, `cop revoke`: personal links to a zone's common operating picture.

A link opens the page at the sender's own clearance, so it goes to the sender alone: a Slack ephemeral message or
the console. Matrix has no private reply inside a shared room, so there the bot asks for a direct chat, where the
zone is named (`cop LALB`): a link posted in a shared room could be opened by anyone in it first.
"""
from __future__ import annotations

from watchfloor.ioc.zones import Zone, get_zone
from watchfloor.storage import cop

from .context import Context
from .errors import CommandError

USAGE = "usage: cop [ZONE], cop calendar [ZONE] or cop revoke"
# Platforms whose replies to the sender alone stay private inside a shared room.
PRIVATE_REPLIES = ("slack", "console")


def _base_url(ctx: Context) -> str:
    """Where the picture is served; a link is given only when the bot serves it ([service] port) and knows the
    address users reach it at ([service] base_url)."""
    service = ctx.engine.directory.settings.service
    missing = [name for name, value in (("port", service.port), ("base_url", service.base_url)) if not value]
    if missing:
        raise CommandError("cop", "the picture is not served here; ask your administrator to set [service] "
                                  + " and ".join(missing))
    return service.base_url.rstrip("/")


def _zone(ctx: Context, word: str | None) -> Zone:
    """The zone named, else the room's; and only where the reply reaches the sender alone."""
    if word is not None:
        zone = get_zone(word)
        if zone is None:
            raise CommandError("zone", f"unknown zone '{word[:24]}'; {USAGE}")
    elif ctx.room.zone is None:
        raise CommandError("zone", f"name the zone here (cop LALB); {USAGE}")
    else:
        zone = ctx.room.zone
    if ctx.room.zone is not None and ctx.room.platform not in PRIVATE_REPLIES:
        raise CommandError("cop", f"a personal link is not posted in a shared room: send !cop {zone.code} "
                                  "in a direct chat with the bot")
    return zone


def _who(ctx: Context) -> dict[str, str | None]:
    """The sender as this room knows them, kept with the token: the server answering the page may not know them
    (a console's `--agency` lives in the console's own process)."""
    if ctx.sender.agency is None:
        return {"agency": None, "clearance": None}
    return {"agency": ctx.sender.agency, "clearance": " ".join(sorted(m.value for m in ctx.sender.clearance))}


def _link(ctx: Context, word: str | None) -> None:
    base = _base_url(ctx)
    zone = _zone(ctx, word)
    token = cop.issue(ctx.s, cop.LINK, ctx.sender.id, zone.code, ctx.now, **_who(ctx))
    # The audit trail is readable by administrators: it records that a link was given, never the token.
    ctx.audit("cop.link", zone.code, {"expires": ctx.now + cop.LINK_TTL})
    ctx.reply("cop_link.j2", ephemeral=True, url=f"{base}/cop/login/{token}", page_zone=zone.code,
              minutes=int(cop.LINK_TTL.total_seconds() // 60), hours=int(cop.SESSION_TTL.total_seconds() // 3600))


def _calendar(ctx: Context, word: str | None) -> None:
    base = _base_url(ctx)
    zone = _zone(ctx, word)
    token = cop.issue(ctx.s, cop.CALENDAR, ctx.sender.id, zone.code, ctx.now, **_who(ctx))
    ctx.audit("cop.calendar", zone.code, {})
    ctx.reply("cop_calendar.j2", ephemeral=True, page_zone=zone.code,
              url=f"{base}/cop/{zone.code}/ops.ics?token={token}")


def _revoke(ctx: Context, word: str | None) -> None:
    if word is not None:
        raise CommandError("command", USAGE)
    ended = cop.revoke(ctx.s, ctx.sender.id, ctx.now)
    ctx.audit("cop.revoke", None, ended)
    ctx.reply("cop_revoked.j2", ephemeral=True, **ended)


_ACTIONS = {"calendar": _calendar, "revoke": _revoke}


def cop_command(ctx: Context) -> None:
    words = [w.text for w in ctx.cmd.words]
    if ctx.cmd.pairs:
        raise CommandError(next(iter(ctx.cmd.pairs)), f"unknown key; {USAGE}")
    action = words[0].lower() if words and words[0].lower() in _ACTIONS else None
    rest = words[1:] if action else words
    if len(rest) > 1:
        raise CommandError("command", f"unexpected word '{rest[1][:24]}'; {USAGE}")
    ctx.allow(action)
    (_ACTIONS[action] if action else _link)(ctx, rest[0] if rest else None)


HANDLERS = {"cop": cop_command}
