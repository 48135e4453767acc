"""Telling one person something on Matrix that the room need not read: in their direct room with the bot.

Matrix has no message only one member of a room sees (Slack's ephemeral). A refusal of an acknowledging
reaction (someone who may not acknowledge reacted ✅ on an alert) goes to the person's direct room with the bot
instead: created on first need (`is_direct`, so their client lists it under people) and remembered in the
database, so every later one goes to the same room.
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from nio import RoomCreateResponse, RoomPreset

from watchfloor.storage.kv import kv_get, kv_set

log = logging.getLogger("watchfloor.matrix")

REMEMBERED = 2000  # reactions handed in recently; their answers are delivered within moments


class DirectRooms:
    def __init__(self, client, parts):
        self.client = client
        self.parts = parts
        self._reactions: OrderedDict[str, None] = OrderedDict()
        self._creating = asyncio.Lock()

    def reaction(self, event_id: str) -> None:
        """A reaction was handed in as a command: an answer to it is for its sender alone."""
        self._reactions[event_id] = None
        while len(self._reactions) > REMEMBERED:
            self._reactions.popitem(last=False)

    def private_to(self, kind: str, payload: dict[str, Any], reply_to_remote: str | None) -> str | None:
        """The Matrix user an outbox row should go to privately (an answer to a reaction meant for its sender
        alone: a refusal), else None. An acknowledgement's answer stays in the room: everyone may read it."""
        user = str(payload.get("user") or "")
        if kind != "reply" or not payload.get("ephemeral") or reply_to_remote not in self._reactions \
                or not user.startswith("matrix:"):
            return None
        return user.split(":", 1)[1]

    async def room_for(self, user_id: str) -> str | None:
        """The person's direct room with the bot, created the first time; None when it cannot be created."""
        key = f"matrix:direct:{self.client.user_id}:{user_id}"
        async with self._creating:
            known = await asyncio.to_thread(self._load, key)
            if known:
                return known
            resp = await self.client.room_create(is_direct=True, invite=[user_id],
                                                 preset=RoomPreset.trusted_private_chat)
            if not isinstance(resp, RoomCreateResponse):
                log.warning("matrix: could not open a direct room with %s: %s", user_id,
                            getattr(resp, "message", resp))
                return None
            await asyncio.to_thread(self._store, key, resp.room_id)
            return resp.room_id

    def _load(self, key: str) -> str | None:
        with self.parts.db.session() as s:
            return kv_get(s, key)

    def _store(self, key: str, room_id: str) -> None:
        with self.parts.db.session() as s:
            kv_set(s, key, room_id, self.parts.engine.clock())
