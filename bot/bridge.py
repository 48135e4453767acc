"""The bridge: a message said in one of a zone's joint rooms is relayed to every other joint room of the zone,
whatever the platform, through the outbox.

The outbox is the id map between rooms: each relayed copy records its origin (room, message id), so replies,
edits and redactions find their counterparts in every room, also after a restart. Markings decide where a
message may go (`may_show`, the one visibility rule). Messages are claimed once (as commands are), so a replayed
sync or a retried event is never relayed twice; the bot's own posts are never relayed (no echo loops).
"""
from __future__ import annotations

import logging
from typing import Any

from sqlmodel import Session

from watchfloor.commands.directory import Room
from watchfloor.commands.grammar import is_command
from watchfloor.commands.message import ChatMessage
from watchfloor.commands.posting import post
from watchfloor.ioc.markings import marking_of_text, may_show
from watchfloor.storage import events, outbox
from watchfloor.storage.tables import OutboxRow

from watchfloor.bot import metrics
from watchfloor.bot.logs import log_relay

log = logging.getLogger("watchfloor.bridge")


class Bridge:
    def __init__(self, parts):
        self.parts = parts
        self.directory = parts.directory

    def targets(self, room: Room) -> list[Room]:
        """The other joint rooms of the room's zone (console rooms are local views, not bridged rooms)."""
        if room.zone is None or "joint" not in room.kinds:
            return []
        return [r for r in self.directory.zone_rooms(room.zone.code, "joint")
                if r.id != room.id and r.platform != "console"]

    def relay(self, msg: ChatMessage) -> list[OutboxRow]:
        """Put the copies of one message (or of its edit or removal) in the outbox. Sync: run in a thread."""
        room = self.directory.room(msg.room)
        targets = self.targets(room)
        if not targets or msg.extra.get("from_bot"):
            return []
        if not (msg.extra.get("edit_of") or msg.extra.get("redacts")) and is_command(msg.text):
            return []  # commands (and so their replies) stay in their room
        now = self.parts.engine.clock()
        with self.parts.db.session() as s:
            if outbox.origin_of(s, msg.room, msg.event_id) is not None:
                return []  # one of our own posts coming back
            # Keyed by room too: a Slack message id (its ts) is unique only within its channel.
            if not events.claim(s, msg.platform, f"relay:{msg.room}:{msg.event_id}", now):
                return []
            if msg.extra.get("redacts"):
                return self._redact(s, msg, now)
            if msg.extra.get("edit_of"):
                return self._edit(s, msg, targets, now)
            return self._new(s, msg, targets, now)

    def _label(self, msg: ChatMessage) -> str:
        return self.directory.sender(msg.sender, msg.sender_name).label

    def _new(self, s: Session, msg: ChatMessage, targets: list[Room], now) -> list[OutboxRow]:
        marking = marking_of_text(msg.text)
        label = self._label(msg)
        reply_origin = self._reply_origin(s, msg)
        rows = []
        for target in targets:
            if may_show(marking, target.clearance):
                extra: dict[str, Any] = {"reply_origin": reply_origin} if reply_origin else {}
                row = post(s, target, "relay", "relay.j2", lambda _c: {"label": label, "text": msg.text, "emote": bool(msg.extra.get("emote"))}, now,
                           extra=extra, origin=(msg.room, msg.event_id))
                sender = self.directory.sender(msg.sender)
                metrics.record_relay(target.platform, sender.agency)
                log_relay(origin_room=msg.room, to_room=target.id, marking=marking.value, event_id=msg.event_id,
                          agency=sender.agency)
            elif self.parts.settings.bridge.withheld_notice and target.show_withheld:
                row = post(s, target, "notice", "withheld.j2",
                           lambda _c: {"label": label, "marking": marking.value}, now,
                           origin=(msg.room, msg.event_id))
            else:
                continue
            rows.append(row)
        return rows

    def _reply_origin(self, s: Session, msg: ChatMessage) -> list[str] | None:
        """The message a reply answers, named by where it was first said (a copy maps back to its original)."""
        if not msg.reply_to:
            return None
        ours = outbox.origin_of(s, msg.room, msg.reply_to)
        if ours is None:
            return [msg.room, msg.reply_to]
        if ours.kind == "relay" and ours.origin_room:
            return [ours.origin_room, ours.origin_event]
        return None  # a reply to one of the bot's own notices: relayed as a plain message

    def _copies(self, s: Session, msg: ChatMessage, original: str) -> list[OutboxRow]:
        return [c for c in outbox.copies_of(s, msg.room, original) if c.status != outbox.DEAD]

    def _edit(self, s: Session, msg: ChatMessage, targets: list[Room], now) -> list[OutboxRow]:
        original = msg.extra["edit_of"]
        marking = marking_of_text(msg.text)
        label = self._label(msg)
        by_id = {t.id: t for t in targets}
        rows = []
        for copy in self._copies(s, msg, original):
            target = by_id.get(copy.room)
            if target is None:
                continue
            ref = {"target_origin": [msg.room, original]}
            if may_show(marking, target.clearance):
                row = post(s, target, "edit", "relay.j2", lambda _c: {"label": label, "text": msg.text, "emote": bool(msg.extra.get("emote"))}, now,
                           extra=ref, origin=(msg.room, msg.event_id))
            else:
                # Edited up to a marking this room is not cleared for: the copy must go, and one still waiting
                # in the outbox must never go out at all.
                _withdraw(copy, f"edited to {marking.value}")
                row = outbox.enqueue(s, room=target.id, kind="redact", now=now, origin=(msg.room, msg.event_id),
                                     payload={**ref, "reason": f"edited to {marking.value}", "text": ""})
            rows.append(row)
        return rows

    def _redact(self, s: Session, msg: ChatMessage, now) -> list[OutboxRow]:
        original = msg.extra["redacts"]
        copies = self._copies(s, msg, original)
        for copy in copies:
            _withdraw(copy, "removed at the source")
        return [outbox.enqueue(s, room=copy.room, kind="redact", now=now, origin=(msg.room, msg.event_id),
                               payload={"target_origin": [msg.room, original], "reason": "removed at the source",
                                        "text": ""})
                for copy in copies]


def _withdraw(copy: OutboxRow, reason: str) -> None:
    """A copy not sent yet is dropped rather than posted and then removed (notifications would keep it).
    The redaction is still queued behind it, for a copy the delivery worker is sending at this moment."""
    if copy.status == outbox.PENDING:
        copy.status, copy.last_error = outbox.DEAD, f"withdrawn: {reason}"
