"""Driving the Matrix bot in-process against a real Synapse: people, rooms, a bot, and patient waiting."""
from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from watchfloor.bot.delivery import Delivery
from watchfloor.bot.matrix.adapter import MatrixAdapter
from watchfloor.bot.runner import Service
from tests.helpers import make_parts


@dataclass
class Person:
    user_id: str
    token: str
    name: str
    device_id: str = ""
    password: str = ""

    @property
    def key(self) -> str:
        return f"matrix:{self.user_id}"


def person(synapse, display: str) -> Person:
    u = synapse.register(f"{display.lower()}-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(12), displayname=display)
    return Person(u["user_id"], u["access_token"], display, u.get("device_id", ""), u["password"])


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
        # The bot's keys live in its store: one per world, so a restarted bot is the same device.
        "matrix": {"homeserver": synapse.base_url, "user_id": bot_user["user_id"],
                   "password": bot_user["password"], "device_id": "WFTEST",
                   "store_path": tempfile.mkdtemp(prefix="wf-matrix-store-")},
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

    def __init__(self, world: World, db_url: str, timeline_limit: int = 100, around=None,
                 unreadable_after: float = 60.0, **settings_over):
        self.world = world
        # `around(msg, handle)`: called with each message the adapter hands on, instead of `handle(msg)` (the
        # service's), to time a fault (the database going away) exactly around the handling of one message.
        self.around = around
        self.timeline_limit = timeline_limit
        self.unreadable_after = unreadable_after
        self.db_url = db_url
        self.settings = {**world.settings, **settings_over}
        self.parts = None
        self.adapter: MatrixAdapter | None = None
        self.service: Service | None = None

    async def start(self) -> "Bot":
        self.parts = await asyncio.to_thread(make_parts, self.db_url, **self.settings)
        self.adapter = MatrixAdapter(self.parts, self.parts.settings.matrix, sync_timeout_ms=5000,
                                     retry_cap=1.0, timeline_limit=self.timeline_limit,
                                     unreadable_after=self.unreadable_after)
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


class E2EUser:
    """A person's Matrix client with encryption (matrix-nio, its own store): it sends encrypted and reads what
    the bot says, decrypted, as Element would."""

    def __init__(self, synapse, who: Person, store_dir: str):
        from nio import AsyncClient, AsyncClientConfig
        from nio.store import SqliteStore

        self.who = who
        os.makedirs(store_dir, exist_ok=True)
        self.client = AsyncClient(synapse.base_url, who.user_id, store_path=store_dir,
                                  config=AsyncClientConfig(encryption_enabled=True, store=SqliteStore,
                                                           store_sync_tokens=True))
        self.client.restore_login(who.user_id, who.device_id, who.token)
        self.seen: list[tuple[str, Any]] = []  # (room id, timeline event), decrypted where we could

    async def sync(self) -> None:
        c = self.client
        resp = await c.sync(timeout=0, full_state=c.next_batch is None, since=c.next_batch)
        for room_id, room in getattr(getattr(resp, "rooms", None), "join", {}).items():
            self.seen.extend((room_id, e) for e in room.timeline.events)
        if c.should_upload_keys:
            await c.keys_upload()
        if c.should_query_keys:
            await c.keys_query()
        if c.should_claim_keys:
            await c.keys_claim(c.get_users_for_key_claiming())
        await c.send_to_device_messages()

    async def create_encrypted_room(self, invite: list[str], name: str = "encrypted") -> str:
        from nio import RoomCreateResponse

        resp = await self.client.room_create(name=name, invite=invite, initial_state=[
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
        assert isinstance(resp, RoomCreateResponse), resp
        await self.sync()
        return resp.room_id

    async def say(self, room: str, text: str) -> str:
        from nio import RoomSendResponse

        await self.sync()
        resp = await self.client.room_send(room, "m.room.message", {"msgtype": "m.text", "body": text},
                                           ignore_unverified_devices=True)
        assert isinstance(resp, RoomSendResponse), resp
        return resp.event_id

    async def bot_says(self, world: World, room: str, at_least: int = 1, timeout: float = 30.0) -> list[Any]:
        """The bot's messages in `room` as this person reads them (decrypted), once there are `at_least`."""
        async def check():
            await self.sync()
            found = [e for r, e in self.seen if r == room and e.sender == world.bot_user["user_id"]
                     and hasattr(e, "body")]
            return found if len(found) >= at_least else None
        return await wait_for(check, timeout, interval=0.3)

    async def close(self) -> None:
        await self.client.close()
