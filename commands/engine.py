"""From a chat message to its effects: claim it once, parse, authorize, run the handler, audit, reply.

Everything a command does — the claim on its message id, the change, the audit records, its reply and its
alerts in the outbox — commits in one transaction, so a retried or replayed message is answered once.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session

from watchfloor.ioc.markings import may_show
from watchfloor.ioc.zones import Zone
from watchfloor.storage import events
from watchfloor.storage.audit import append as audit_append
from watchfloor.storage.db import Database
from watchfloor.storage.tables import OutboxRow

from . import authz
from .deconflict import Changes, Deconfliction, rules_from
from .directory import Directory, Room, Sender
from .errors import CommandError
from .grammar import ParsedCommand, is_command, parse
from .message import ChatMessage
from .observers import notify
from .posting import post

log = logging.getLogger("watchfloor.commands")
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    s: Session
    engine: "Engine"
    msg: ChatMessage
    sender: Sender
    room: Room
    now: datetime
    cmd: ParsedCommand
    replies: list[tuple[str, dict[str, Any], bool]] = field(default_factory=list)
    changes: Changes = field(default_factory=Changes)

    @property
    def zone(self) -> Zone:
        if self.room.zone is None:
            raise CommandError("room", "this room is not bound to a zone; ask your administrator to add it")
        return self.room.zone

    @property
    def tz(self):
        return self.zone.tz

    def visible(self, marking: str) -> bool:
        return may_show(marking, self.room.clearance, self.sender.clearance)

    def reply(self, template: str, ephemeral: bool = False, **data: Any) -> None:
        self.replies.append((template, data, ephemeral))

    def audit(self, action: str, entity: str | None, detail: dict[str, Any]) -> None:
        audit_append(self.s, at=self.now, actor=self.sender.id, agency=self.sender.agency, room=self.room.id,
                     zone=self.room.zone.code if self.room.zone else None, command=self.msg.text[:500],
                     action=action, entity=entity, detail=detail)

    def allow(self, action: str | None, owner_agency: str | None = None) -> None:
        authz.check(self.sender, self.cmd.name, action, owner_agency)


Handler = Callable[[Context], None]


def dispatch(ctx: Context, topic: str, actions: dict[str, Handler]) -> None:
    """Run the action the command's first word names; without one, the command's help (to the sender only)."""
    action = ctx.cmd.action
    if action is None:
        ctx.reply("help.j2", topic=topic, ephemeral=True)
        return
    handler = actions.get(action)
    if handler is None:
        raise CommandError("command", f"unknown {topic} action '{action[:24]}' ({', '.join(actions)})")
    handler(ctx)


@dataclass
class Handled:
    """What one message produced: the rows it put in the outbox (replies first), or nothing if a repeat."""

    duplicate: bool = False
    rows: list[OutboxRow] = field(default_factory=list)
    error: str | None = None


class Engine:
    def __init__(self, db: Database, directory: Directory, clock: Clock = utcnow):
        self.db = db
        self.directory = directory
        self.clock = clock
        self.rules = rules_from(directory.settings)
        self.deconfliction = Deconfliction(directory, self.rules)
        self.handlers: dict[str, Handler] = {}
        from . import conflicts_cmd, info, ops, targets

        for module in (ops, targets, conflicts_cmd, info):
            self.handlers.update(module.HANDLERS)

    def handle(self, msg: ChatMessage) -> Handled:
        """Handle one chat message that is a command. Never raises for bad input: errors become replies."""
        if not is_command(msg.text):
            return Handled()
        now = self.clock()
        try:
            with self.db.session() as s:
                if not events.claim(s, msg.platform, msg.event_id, now):
                    return Handled(duplicate=True)
                ctx = self._context(s, msg, now)
                error = None
                try:
                    with s.begin_nested():
                        ctx.cmd = parse(msg.text)
                        self.handlers[ctx.cmd.name](ctx)
                except CommandError as e:
                    error = e.line
                    ctx.replies = [("error.j2", {"message": e.line}, True)]
                    ctx.changes = Changes()
                if ctx.changes and ctx.room.zone is not None:
                    self.deconfliction.alert(s, ctx.room.zone.code, ctx.changes, now,
                                             cause=_cause(ctx))
                rows = self._enqueue_replies(ctx)
            notify("command", ctx, "error" if error else "ok")
            return Handled(rows=rows, error=error)
        except Exception:
            # The command's words may carry FOUO/LES details: log which message it was, not what it said.
            log.exception("command failed: %s event %s in %s", msg.text.split(maxsplit=1)[0][:24], msg.event_id,
                          msg.room)
            return self._internal_error(msg, now)

    def _context(self, s: Session, msg: ChatMessage, now: datetime) -> Context:
        sender = self.directory.sender(msg.sender, msg.sender_name)
        room = self.directory.room(msg.room)
        return Context(s=s, engine=self, msg=msg, sender=sender, room=room, now=now,
                       cmd=ParsedCommand(name="help", raw=msg.text))

    def _enqueue_replies(self, ctx: Context) -> list[OutboxRow]:
        rows = []
        for template, data, ephemeral in ctx.replies:
            base = {"tz": ctx.room.zone.tz if ctx.room.zone else UTC, "zone": ctx.room.zone,
                    "sender": ctx.sender, "room": ctx.room}
            extra = {"reply_to": ctx.msg.event_id, "ephemeral": ephemeral, "user": ctx.msg.sender,
                     **{k: v for k, v in ctx.msg.extra.items() if k in ("response_url", "thread")}}
            row = post(ctx.s, ctx.room, "reply", template, lambda _c, d=data: {**base, **d}, ctx.now, extra=extra)
            rows.append(row)
        return rows

    def _internal_error(self, msg: ChatMessage, now: datetime) -> Handled:
        """Something broke: say so in one line (never a stack trace) and keep the message unclaimed."""
        line = "error: something went wrong on our side; nothing was changed. Please try again."
        try:
            with self.db.session() as s:
                room = self.directory.room(msg.room)
                row = post(s, room, "reply", "error.j2", lambda _c: {"message": line}, now,
                           extra={"reply_to": msg.event_id, "ephemeral": True, "user": msg.sender})
            return Handled(rows=[row], error=line)
        except Exception:
            log.exception("could not store the error reply")
            return Handled(error=line)


def _cause(ctx: Context) -> str:
    """Who did what, without the command's arguments: they may carry details above a watch room's clearance."""
    what = f"{ctx.cmd.name} {ctx.cmd.action}" if ctx.cmd.action else ctx.cmd.name
    return f"{ctx.sender.label} ({what})"
