"""What every chat platform adapter provides. Adapters know rooms, users and messages — nothing of
operations or targets: they turn platform events into `ChatMessage`s and send what the outbox holds."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from watchfloor.commands.message import ChatMessage

OnMessage = Callable[[ChatMessage], Awaitable[None]]


class TransientSendError(Exception):
    """The platform did not take the message now (down, 5xx, rate limited): retry later, keep the order.

    `ambiguous`: the request may have reached the platform and been taken all the same (a timeout, the
    connection dropped mid-request, a 5xx): before sending again, delivery looks for the post (`find_sent`).
    A clear refusal (rate limited, connection refused, not joined yet) is not ambiguous."""

    def __init__(self, reason: str, retry_after: float | None = None, *, ambiguous: bool = False):
        super().__init__(reason)
        self.retry_after = retry_after
        self.ambiguous = ambiguous


class PermanentSendError(Exception):
    """The platform will never take this message (unknown room, forbidden): record it and move on."""


class PlatformAuthError(Exception):
    """The platform refused our credentials (Slack `invalid_auth`/`token_revoked`, Matrix `M_UNKNOWN_TOKEN`):
    nothing will go through until an operator acts. The platform is marked down (not retried per message)."""


@dataclass(frozen=True)
class MessageLimits:
    """What one posted message may hold on a platform. Delivery sends a longer message as several posts in
    order, cut at line or block boundaries, rather than have the platform refuse it."""

    max_text: int | None = None    # characters of the text
    max_blocks: int | None = None  # Slack Block Kit blocks (their text counts towards max_text too)
    max_bytes: int | None = None   # bytes of the text and HTML, JSON-encoded (a Matrix event's content)


class Adapter(Protocol):
    platform: str  # "matrix" | "slack" — the prefix of its room ids
    # Optional: `limits: MessageLimits`; without it delivery uses the platform's known limits (delivery.LIMITS).
    # Optional: `find_sent` (below); without it a send whose answer was lost may be posted again (at least once).
    # Optional: `picture_apart = True`: a payload's picture ("image") is a post of its own after the text; delivery
    # then sends it as the row's last page (bot.paging), a payload holding only the picture (`PICTURE` set), which
    # `find_pages` must be able to find.

    async def start(self, on_message: OnMessage) -> None:
        """Connect and begin delivering platform messages to `on_message` (returns once running)."""

    async def stop(self) -> None:
        """Stop receiving; finish what is in flight."""

    async def send(self, room: str, kind: str, payload: dict[str, Any], *, target_id: str | None = None,
                   reply_to_remote: str | None = None) -> str | None:
        """Post one outbox message; return the platform's id of the posted message.

        `kind` is reply | alert | escalation | notice | relay | edit | redact | briefing. For edit and redact,
        `target_id` is the platform id of the message to change in that room. `reply_to_remote` is the platform
        id, in that room, of the message this one answers. Raises TransientSendError, PermanentSendError or PlatformAuthError.
        """

    async def healthy(self) -> bool:
        """True when the platform answers."""


class FindsSent(Protocol):
    """What an adapter that marks its posts with their outbox row offers (optional, see bot.delivery)."""

    async def find_sent(self, room: str, outbox_ids: Collection[int], *,
                        threads: Collection[str] = ()) -> dict[int, str]:
        """The platform ids of posts already in `room` made for these outbox rows (their first post, for a row
        of several pages), looked for among the room's recent messages, and in `threads` (the platform ids of
        the messages some of them answer, for a platform whose history leaves thread replies out). Rows not
        found are left out.
        Raises TransientSendError when the platform cannot be asked now (then nothing is sent meanwhile);
        PermanentSendError when it will never answer this (a missing scope): delivery then sends without
        looking, as adapters without `find_sent` do."""

    async def find_pages(self, room: str, outbox_id: int, *, threads: Collection[str] = ()) -> dict[int, str]:
        """The posted pages of one row sent as several posts (bot.paging): page number, from 1 -> platform id.
        Asked only for such a row found posted, so a page whose send was lost is not posted again. With
        `picture_apart`, the picture page too (the row's last), however the platform lets it be recognised."""


# Where a post names its outbox row: Slack message metadata's event_type, the Matrix event content's key.
OUTBOX_EVENT_TYPE = "watchfloor_outbox"
OUTBOX_KEY = "org.watchfloor.outbox"


def outbox_mark(payload: dict[str, Any]) -> dict[str, int]:
    """What a post says of its outbox row, for `find_sent`: `outbox_id`, and `page` past the first page of a long
    message; nothing for a payload not from the outbox. Each adapter puts it where its platform keeps such data."""
    if payload.get("outbox_id") is None:
        return {}
    mark = {"outbox_id": payload["outbox_id"]}
    if (payload.get("page") or 1) > 1:
        mark["page"] = payload["page"]
    return mark
