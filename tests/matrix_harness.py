"""Driving the Matrix bot in-process against a real Synapse: people, rooms, a bot, and patient waiting."""
from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from watchfloor.bot.delivery import Delivery
from watchfloor.bot.matrix import MatrixAdapter
from watchfloor.bot.runner import Service
from tests.helpers import make_parts


@dataclass
class Person:
    user_id: str
    token: str
    name: str

    @property
    def key(self) -> str:
        return f"matrix:{self.user_id}"


def person(synapse, display: str) -> Person:
    u = synapse.register(f"{display.lower()}-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(12), displayname=display)
    return Person(u["user_id"], u["access_token"], display)


@dataclass
class World:
    """A zone (LALB) whose joint rooms and watch room are Matrix rooms, a bot account, and its people."""

    synapse: Any
    bot_user: dict[str, Any]
    alice: Person  # CBP
    bob: Person    # USCG
    sam: Person    # USCG supervisor
    joint: list[str]
    watch: str
    settings: dict[str, Any] = field(default_factory=dict)


def make_world(synapse, *, joint: int = 2, clearances: list[list[str]] | None = None, **extra) -> World:
    bot_user = synapse.make_user("watchfloor")
    alice, bob, sam = person(synapse, "Alice"), person(synapse, "Bob"), person(synapse, "Sam")
    everyone = [bot_user["user_id"], bob.user_id, sam.user_id]
    joint_rooms = [synapse.create_room(alice.token, name=f"joint-{i}", invite=everyone) for i in range(joint)]
    watch = synapse.create_room(sam.token, name="watch", invite=[bot_user["user_id"], alice.user_id])
    for room in joint_rooms:
        synapse.join(bob.token, room)
        synapse.join(sam.token, room)
    synapse.join(alice.token, watch)
    settings = {
        "matrix": {"homeserver": synapse.base_url, "user_id": bot_user["user_id"],
                   "password": bot_user["password"], "device_id": "WFTEST"},
        "zone": [{"code": "LALB", "joint_rooms": [f"matrix:{r}" for r in joint_rooms],
                  "watch_rooms": [f"matrix:{watch}"]}],
        "agency": [{"code": "CBP", "members": [alice.key], "clearance": ["UNCLASS", "FOUO", "LES"]},
                   {"code": "USCG", "members": [bob.key], "supervisors": [sam.key]}],
        "room": [{"id": f"matrix:{r}", "clearance": c} for r, c in zip(joint_rooms, clearances or [])],
        **extra,
    }
    return World(synapse, bot_user, alice, bob, sam, joint_rooms, watch, settings)


class Bot:
    """The adapter, the bridge and delivery as `watchfloor run` wires them, in this event loop."""

    def __init__(self, world: World, db_url: str, timeline_limit: int = 100, around=None, **settings_over):
        self.world = world
        # `around(msg, handle)`: called with each message the adapter hands on, instead of `handle(msg)` (the
        # service's), to time a fault (the database going away) exactly around the handling of one message.
        self.around = around
        self.timeline_limit = timeline_limit
        self.db_url = db_url
        self.settings = {**world.settings, **settings_over}
        self.parts = None
        self.adapter: MatrixAdapter | None = None
        self.service: Service | None = None

    async def start(self) -> "Bot":
        self.parts = await asyncio.to_thread(make_parts, self.db_url, **self.settings)
        self.adapter = MatrixAdapter(self.parts, self.parts.settings.matrix, sync_timeout_ms=5000,
                                     retry_cap=1.0, timeline_limit=self.timeline_limit)
        delivery = Delivery(self.parts, [self.adapter], poll_interval=0.2, backoff_base=0.25, backoff_cap=1.0)
        self.service = Service(self.parts, [self.adapter], delivery=delivery)
        if self.around is not None:
            handle, around = self.service.on_message, self.around

            async def on_message(msg):
                await around(msg, handle)
            self.service.on_message = on_message
        await self.service.start()
        assert self.adapter.ready.is_set(), "the bot did not finish its first sync"
        return self

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop()
            self.parts.db.dispose()
            self.service = None

    async def __aenter__(self) -> "Bot":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()


async def say(synapse, who: Person, room: str, text: str, **content) -> str:
    return await asyncio.to_thread(synapse.send_text, who.token, room, text, content or None)


async def history(synapse, who: Person, room: str, limit: int = 200) -> list[dict[str, Any]]:
    return await asyncio.to_thread(synapse.messages, who.token, room, limit)


def bodies(events: list[dict[str, Any]]) -> list[str | None]:
    return [e["content"].get("body") for e in events]


def from_bot(events: list[dict[str, Any]], bot_id: str, etype: str = "m.room.message") -> list[dict[str, Any]]:
    return [e for e in events if e["sender"] == bot_id and e["type"] == etype]


async def wait_for(check, timeout: float = 20.0, interval: float = 0.2):
    """Poll `check()` (async) until it returns something truthy; fail with the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting; last seen: {last!r}")


async def bot_messages(world: World, who: Person, room: str, *, at_least: int = 1, timeout: float = 20.0,
                       etype: str = "m.room.message") -> list[dict[str, Any]]:
    async def check():
        found = from_bot(await history(world.synapse, who, room), world.bot_user["user_id"], etype)
        return found if len(found) >= at_least else None
    return await wait_for(check, timeout)
