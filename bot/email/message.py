"""One outbox row as a MIME message, built with the standard `email` package (never by hand): a plain-text part and
an HTML part, the timeline picture inline beside the HTML (multipart/related, named by its Content-ID)."""
from __future__ import annotations

import base64
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any


def message_id(outbox_id: int, created: datetime, sender: str) -> str:
    """The Message-ID of an outbox row: the same on every try, so a message sent again after a lost answer or a
    crash is recognisable as the same one (by the recipient's server or client, and by us in the relay's logs)."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "watchfloor.invalid"
    stamp = created.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    return f"<outbox.{outbox_id}.{stamp}.watchfloor@{domain}>"


def build_message(sender: str, to: str, payload: dict[str, Any], *, msgid: str, date: datetime) -> EmailMessage:
    """`payload` as templates/mail.py made it: subject, text, html, marking, and `image` (PNG, base64, cid)."""
    msg = EmailMessage()
    msg["Subject"] = payload["subject"]
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = format_datetime(date.astimezone(UTC))
    msg["Message-ID"] = msgid
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to the bot
    msg["X-Watchfloor-Marking"] = payload.get("marking") or "UNCLASS"
    msg.set_content(payload["text"])
    msg.add_alternative(payload["html"], subtype="html")
    image = payload.get("image")
    if image and image.get("cid"):
        html = msg.get_payload()[1]
        html.add_related(base64.b64decode(image["data_b64"]), maintype="image", subtype="png",
                         cid=f"<{image['cid']}>", filename=image.get("filename") or "timeline.png",
                         disposition="inline")
    return msg
