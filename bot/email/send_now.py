"""`watchfloor brief --zone Z --email ADDRESS`: one briefing sent at once, to check an e-mail set-up.

Made exactly as the scheduled one (the same data, picture and page, for the clearance of the agency the address
belongs to; an address of no agency gets what UNCLASS may read) but handed straight to the relay rather than
through the outbox, so the command can say what the relay answered.
"""
from __future__ import annotations

from datetime import UTC, datetime
from email.utils import make_msgid, parseaddr

from watchfloor.commands.briefing import build_briefing
from watchfloor.commands.directory import Room, email_room
from watchfloor.commands.posting import email_payload
from watchfloor.ioc.markings import DEFAULT_ROOM_CLEARANCE
from watchfloor.ioc.zones import Zone

from watchfloor.bot.adapter import PermanentSendError, PlatformAuthError, TransientSendError
from watchfloor.bot.email.adapter import EmailAdapter
from watchfloor.bot.email.message import build_message


class BriefingNotSent(Exception):
    """One line saying why (the relay's answer, or what the data held)."""


async def send_briefing_now(parts, zone: Zone, at: datetime, address: str) -> str:
    """Send the zone's briefing of `at` to `address`; returns the line to print."""
    room, agency = _room(parts.directory, zone, address)
    from watchfloor.bot.timeline import timeline
    from watchfloor.commands.cop_feed import agency_colours

    with parts.db.session() as s:
        data = build_briefing(s, parts.directory, zone, at, room.clearance, show_withheld=False)
        # each agency in its colour of the zone, as on the page and in the scheduled briefing
        colours = agency_colours(s, zone.code, data["by_agency"])
    picture = timeline(data, colours)
    extra = {"image": picture.attachment()} if picture is not None else {}
    payload = email_payload(room, "briefing", "briefing.j2", data, extra, f"brief-now:{zone.code}:{at.isoformat()}")
    if payload is None:
        raise BriefingNotSent("the briefing holds something this address may not read; nothing was sent")
    sender = parts.settings.email.sender
    msgid = make_msgid("brief", domain=parseaddr(sender)[1].rpartition("@")[2] or None)
    message = build_message(sender, address, payload, msgid=msgid, date=datetime.now(UTC))
    try:
        await EmailAdapter(parts.settings.email).send_message(message, address)
    except (TransientSendError, PermanentSendError, PlatformAuthError) as e:
        raise BriefingNotSent(f"not sent to {address}: {e}") from None
    who = f"as {agency} reads it" if agency else "at UNCLASS: the address is in no agency"
    return f"sent to {address} ({who}): {payload['subject']}"


def _room(directory, zone: Zone, address: str) -> tuple[Room, str | None]:
    """The address as a room of the zone, cleared for its agency (an address of an agency of other zones too), and
    that agency; an address of no agency is read at UNCLASS."""
    rid = email_room(address)
    found = directory.email_recipient(rid)
    if found is None:
        return Room(rid, zone, frozenset({"email"}), DEFAULT_ROOM_CLEARANCE, False, zone.district), None
    agency, room = found
    return Room(rid, zone, room.kinds, room.clearance, False, zone.district), agency
