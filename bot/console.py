"""The console room: a zone's chat room on a terminal or a pipe, no Slack or Matrix needed.

Prints the replies to its own commands and every alert or notice the bot posts in the zone's console room,
including those caused by another console on the same database, each at this user's clearance.
"""
from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from sqlmodel import col, select

from watchfloor.commands.directory import Room, Sender
from watchfloor.commands.engine import Engine
from watchfloor.commands.message import ChatMessage
from watchfloor.commands.posting import for_clearance
from watchfloor.storage.outbox import payload
from watchfloor.storage.tables import OutboxRow


class ConsoleRoom:
    def __init__(self, engine: Engine, room: Room, sender: Sender, out: TextIO = sys.stdout):
        self.engine = engine
        self.room = room
        self.sender = sender
        self.out = out
        self.cursor = self._latest_id()

    def _latest_id(self) -> int:
        with self.engine.db.session() as s:
            last = s.exec(select(OutboxRow.id).where(OutboxRow.room == self.room.id)
                          .order_by(col(OutboxRow.id).desc()).limit(1)).first()
        return last or 0

    def say(self, line: str) -> None:
        text = line.strip()
        if not text:
            return
        msg = ChatMessage(platform="console", room=self.room.id, sender=self.sender.id, text=text,
                          event_id=f"console-{uuid.uuid4()}", sender_name=self.sender.name)
        handled = self.engine.handle(msg)
        for row in handled.rows:
            self._print(row)
        self.poll(skip={r.id for r in handled.rows})

    def poll(self, skip: set[int] = frozenset()) -> None:
        """Print what the bot posted in this room since last time (alerts, notices, others' briefings)."""
        with self.engine.db.session() as s:
            rows = s.exec(select(OutboxRow).where(OutboxRow.room == self.room.id, OutboxRow.id > self.cursor)
                          .order_by(OutboxRow.id)).all()
        for row in rows:
            self.cursor = max(self.cursor, row.id)
            if row.id in skip:
                continue
            if row.kind == "reply" and payload(row).get("user") != self.sender.id:
                continue  # someone else's answer, rendered for their clearance
            if payload(row).get("said_to") == self.sender.id:
                continue  # told to everyone else: this user had it as their answer
            self._print(row)

    def _print(self, row: OutboxRow) -> None:
        variant = for_clearance(payload(row), self.sender.clearance)
        body = variant["text"]
        if not body.strip():  # rendered empty for this reader's clearance (a nudge, a notice): nothing to say
            return
        if variant.get("image"):  # a briefing's timeline: a terminal cannot show it, so write it and say where
            from watchfloor.bot.timeline import save

            body += f"\npicture: {save(variant['image'])}"
        if row.kind in ("alert", "escalation"):
            body = "\n".join("ALERT | " + line for line in body.splitlines())
        print(body, file=self.out, flush=True)


def lines(stdin: TextIO, prompt: str, history: Path | None) -> Iterator[str]:
    """Lines from a pipe, or from a prompt with line editing and history on a terminal."""
    if not stdin.isatty():
        for line in stdin:
            yield line.rstrip("\n")
        return
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    session = PromptSession(history=FileHistory(str(history)) if history else InMemoryHistory())
    while True:
        try:
            yield session.prompt(prompt)
        except KeyboardInterrupt:
            continue
        except EOFError:
            return
