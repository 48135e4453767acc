"""The one message type every adapter produces: who said what, where, under which platform id."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ChatMessage:
    platform: str         # console | matrix | slack
    room: str             # platform-qualified room id: "matrix:!abc:localhost", "slack:C0JOINT", "console:LALB"
    sender: str           # platform-qualified user id: "matrix:@alice:localhost", "slack:U012", "console:alice"
    text: str
    event_id: str         # the platform's id of this message; a retry or replay carries the same one
    sender_name: str | None = None
    reply_to: str | None = None   # the platform id of the message this one answers
    extra: dict[str, Any] = field(default_factory=dict)  # platform details a reply needs (response_url, ...)
