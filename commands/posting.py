"""Putting rendered messages into the outbox for a room, with the room's clearance applied.

Console rooms are shared by every console of a zone whatever each user's clearance, so they get one rendering
per clearance and each console prints its own; they are written as sent (the console reads them itself).
An e-mail address (`email:<address>`) gets the same template as a page with its subject (templates/mail.py).
"""
from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import Any

from sqlmodel import Session

from watchfloor.ioc.markings import Marking
from watchfloor.storage import outbox
from watchfloor.storage.tables import OutboxRow
from watchfloor.templates import render

from .directory import Room

CLEARANCE_LEVELS = (
    frozenset({Marking.UNCLASS}),
    frozenset({Marking.UNCLASS, Marking.FOUO}),
    frozenset({Marking.UNCLASS, Marking.FOUO, Marking.LES}),
)


def clearance_key(clearance) -> str:
    return ",".join(sorted(Marking(m).value for m in clearance))


def post(s: Session, room: Room, kind: str, template: str, data_for, now: datetime, *,
         extra: dict[str, Any] | None = None, dedupe_key: str | None = None,
         origin: tuple[str, str] | None = None) -> OutboxRow | None:
    """Render `template` with `data_for(clearance)` for the room and store it in the outbox.

    `data_for` receives the clearance to render for, so the caller decides what each clearance may see. `now` is
    when it is said: a time on that day reads without its date (templates' `clock` filter), unless the data
    names a `now` of its own (a briefing's day).
    """
    def data(clearance) -> dict[str, Any]:
        return {"now": now, **data_for(clearance)}

    payload: dict[str, Any] = dict(extra or {})
    if room.platform == "console":
        payload["by_clearance"] = {
            clearance_key(level): render(template, **data(level)).to_dict() for level in CLEARANCE_LEVELS}
        payload.update(payload["by_clearance"][clearance_key(CLEARANCE_LEVELS[0])])
        return outbox.enqueue(s, room=room.id, kind=kind, payload=payload, now=now, dedupe_key=dedupe_key,
                              origin=origin, status=outbox.SENT)
    if room.platform == "email":
        payload = email_payload(room, kind, template, data(room.clearance), payload, dedupe_key or room.id)
        if payload is None:
            return None
        return outbox.enqueue(s, room=room.id, kind=kind, payload=payload, now=now, dedupe_key=dedupe_key)
    payload.update(render(template, **data(room.clearance)).to_dict())
    return outbox.enqueue(s, room=room.id, kind=kind, payload=payload, now=now, dedupe_key=dedupe_key,
                          origin=origin)


def email_payload(room: Room, kind: str, template: str, data: dict[str, Any], extra: dict[str, Any],
                  key: str) -> dict[str, Any] | None:
    """The outbox payload of an e-mail to `room` (an address, cleared for its agency): `extra` with the subject,
    text and HTML page, and the picture named by a Content-ID derived from `key`. None, and an error logged, when
    the data holds anything the address may not read (templates/mail.py refuses it: nothing is sent)."""
    from watchfloor.templates.mail import AboveClearance, render_email

    cid = f"timeline.{hashlib.sha256(key.encode()).hexdigest()[:16]}@watchfloor" if extra.get("image") else None
    try:
        rendered = render_email(template, data, room.clearance, kind=kind, stubs=room.show_withheld, picture_cid=cid)
    except AboveClearance as e:
        logging.getLogger("watchfloor.posting").error("not e-mailed to %s: %s", room.id, e)
        return None
    payload = {**extra, **rendered}
    if cid:
        payload["image"] = {**extra["image"], "cid": cid}
    return payload


def for_clearance(payload: dict[str, Any], clearance) -> dict[str, Any]:
    """The rendering of a console payload a reader with this clearance may see."""
    variants = payload.get("by_clearance")
    if not variants:
        return payload
    best = clearance_key(CLEARANCE_LEVELS[0])
    mine = {Marking(m) for m in clearance}
    for level in CLEARANCE_LEVELS:
        if level <= mine:
            best = clearance_key(level)
    return variants[best]
