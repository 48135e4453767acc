"""What a command handler is given and how handlers are chained: the types the engine and the handlers share.

They live here, not in the engine, because the engine imports every handler module: a handler importing them
from the engine would close an import circle.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlmodel import Session

from watchfloor.ioc.conflicts import Rules
from watchfloor.ioc.markings import may_show
from watchfloor.ioc.zones import Zone
from watchfloor.storage import locks
from watchfloor.storage.audit import append as audit_append

from . import authz
from .deconflict import Changes, Deconfliction
from .directory import Directory, Room, Sender
from .errors import CommandError
from .grammar import ParsedCommand
from .message import ChatMessage


class Services(Protocol):
    """What a handler may use of the engine that runs it."""

    directory: Directory
    rules: Rules
    deconfliction: Deconfliction


@dataclass
class Context:
    s: Session
    engine: Services
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

    def lock_zone(self, zone: str) -> None:
        """Take the zone's deconfliction lock (see storage/locks.py for when, and in which order)."""
        locks.hold(self.s, locks.deconfliction_lock(zone))


Handler = Callable[[Context], None]


def dispatch(ctx: Context, topic: str, actions: dict[str, Handler], default: str | None = None) -> None:
    """Run the action the command's first word names; without one, `default`'s action, or else the command's help
    (to the sender only)."""
    action = ctx.cmd.action or default
    if action is None:
        ctx.reply("help.j2", topic=topic, ephemeral=True)
        return
    handler = actions.get(action)
    if handler is None:
        raise CommandError("command", f"unknown {topic} action '{action[:24]}' ({', '.join(actions)})")
    handler(ctx)
