"""From a chat message to its effects: claim it once, parse, authorize, run the handler, audit, reply.

Everything a command does — the claim on its message id, the change, the audit records, its reply and its
alerts in the outbox — commits in one transaction, so a retried or replayed message is answered once.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlmodel import Session

from watchfloor.storage import events, outbox
from watchfloor.storage.db import Database
from watchfloor.storage.outage import unreachable
from watchfloor.storage.tables import OutboxRow

from . import conflicts_cmd, cop_cmd, info, ops, targets, vessels_cmd, watch_cmd
from .context import Context, Handler
from .deconflict import Changes, Deconfliction, rules_from
from .directory import Directory
from .errors import CommandError
from .grammar import ParsedCommand, is_command, parse
from .message import ChatMessage
from .observers import notify
from .posting import post

log = logging.getLogger("watchfloor.commands")
Clock = Callable[[], datetime]
HANDLER_MODULES = (ops, targets, conflicts_cmd, info, vessels_cmd, cop_cmd, watch_cmd)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Handled:
    """What one message produced: the rows it put in the outbox (replies first), or nothing if a repeat."""

    duplicate: bool = False
    rows: list[OutboxRow] = field(default_factory=list)
    error: str | None = None
    # Of `rows`, those first in their room's queue when the command committed: they may be sent at once.
    # None when not known (the error path); the caller then asks the database itself.
    heads: list[OutboxRow] | None = None


class Engine:
    def __init__(self, db: Database, directory: Directory, clock: Clock = utcnow):
        self.db = db
        self.directory = directory
        self.clock = clock
        self.rules = rules_from(directory.settings)
        self.deconfliction = Deconfliction(directory, self.rules)
        self.handlers: dict[str, Handler] = {}
        for module in HANDLER_MODULES:
            self.handlers.update(module.HANDLERS)

    def handle(self, msg: ChatMessage, *, raise_unreachable: bool = False) -> Handled:
        """Handle one chat message that is a command. Never raises for bad input: errors become replies.

        With `raise_unreachable`, a database that cannot be reached raises instead of being answered: the caller
        keeps the message (a Matrix sync token not moved past it) and hands it in again once the database is back.
        """
        if not is_command(msg.text):
            return Handled()
        now = self.clock()
        try:
            # A deadlock or serialization failure runs the whole transaction again, the claim included: the
            # sender sees one answer, as if it had gone through the first time.
            done = self.db.transaction(lambda s: self._run(s, msg, now))
            if done is None:
                return Handled(duplicate=True)
            ctx, rows, error, heads = done
            notify("command", ctx, "error" if error else "ok")
            return Handled(rows=rows, error=error, heads=heads)
        except Exception as e:
            if raise_unreachable and unreachable(e):
                raise
            # The command's words may carry FOUO/LES details: log which message it was, not what it said.
            log.exception("command failed: %s event %s in %s", msg.text.split(maxsplit=1)[0][:24], msg.event_id,
                          msg.room)
            return self._internal_error(msg, now, raise_unreachable)

    def _run(self, s: Session, msg: ChatMessage, now: datetime
             ) -> tuple[Context, list[OutboxRow], str | None, list[OutboxRow]] | None:
        """One attempt at the command's transaction; None when the message was handled before."""
        if not events.claim(s, msg.platform, msg.event_id, now):
            return None
        ctx = self._context(s, msg, now)
        if ctx.room.zone is not None:
            # Before anything is read: the lock order (storage/locks.py) starts with the zone's lock, and what
            # the command reads after it includes every change of the zone committed before.
            ctx.lock_zone(ctx.room.zone.code)
        error = None
        try:
            # A rejected command leaves nothing but its claim and its error reply: whatever the handler had
            # changed before it found the bad value is rolled back with this savepoint.
            with s.begin_nested():
                ctx.cmd = parse(msg.text)
                self.handlers[ctx.cmd.name](ctx)
        except CommandError as e:
            error = e.line
            ctx.replies = [("error.j2", {"message": e.line}, True)]
            ctx.changes = Changes()
        if ctx.changes and ctx.room.zone is not None:
            self.deconfliction.alert(s, ctx.room.zone.code, ctx.changes, now, cause=_cause(ctx))
        rows = self._enqueue_replies(ctx)
        # Asked in this transaction, not in one of its own after it: a command's answer goes out sooner.
        return ctx, rows, error, outbox.heads_of(s, rows)

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

    def _internal_error(self, msg: ChatMessage, now: datetime, raise_unreachable: bool = False) -> Handled:
        """Something broke: say so in one line (never a stack trace) and keep the message unclaimed."""
        line = "error: something went wrong on our side; nothing was changed. Please try again."
        try:
            with self.db.session() as s:
                room = self.directory.room(msg.room)
                row = post(s, room, "reply", "error.j2", lambda _c: {"message": line}, now,
                           extra={"reply_to": msg.event_id, "ephemeral": True, "user": msg.sender})
            return Handled(rows=[row], error=line)
        except Exception as e:
            if raise_unreachable and unreachable(e):
                raise
            log.exception("could not store the error reply")
            return Handled(error=line)


def _cause(ctx: Context) -> str:
    """Who did what, without the command's arguments: they may carry details above a watch room's clearance."""
    what = f"{ctx.cmd.name} {ctx.cmd.action}" if ctx.cmd.action else ctx.cmd.name
    return f"{ctx.sender.label} ({what})"
