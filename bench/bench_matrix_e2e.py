"""Benchmark (issue 15; CI does not run it): a command's round trip in an encrypted room against the same in an
unencrypted room on the same homeserver, and against a bare matrix-nio echo bot with encryption in its own
encrypted room (the floor), all measured from one person's client with encryption, arms alternating. Under
pytest for the Synapse fixture:  python -m pytest -s bench/bench_matrix_e2e.py"""
from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from tests.matrix_harness import Bot, E2EUser, make_world, person, wait_for

pytestmark = pytest.mark.synapse

ROUNDS = 20


async def _round_trip(alice: E2EUser, bot_id: str, room: str) -> float:
    c = alice.client
    await alice.sync()
    before = sum(1 for r, e in alice.seen if r == room and e.sender == bot_id and hasattr(e, "body"))
    t0 = time.perf_counter()
    await c.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "!zone"}, ignore_unverified_devices=True)
    while True:
        resp = await c.sync(timeout=5000, since=c.next_batch)
        for rid, joined in resp.rooms.join.items():
            alice.seen.extend((rid, e) for e in joined.timeline.events)
        if sum(1 for r, e in alice.seen if r == room and e.sender == bot_id and hasattr(e, "body")) > before:
            return time.perf_counter() - t0


async def _echo(echo: E2EUser, stop: asyncio.Event) -> None:
    """The floor: a bare nio client with encryption that answers every `!` message in its rooms at once."""
    from nio import RoomMessageText

    c = echo.client
    answered: set[str] = set()
    while not stop.is_set():
        before = len(echo.seen)
        await echo.sync()
        for room, e in echo.seen[before:]:
            if isinstance(e, RoomMessageText) and e.sender != echo.who.user_id and e.body.startswith("!") \
                    and e.event_id not in answered:
                answered.add(e.event_id)
                await c.room_send(room, "m.room.message", {"msgtype": "m.notice", "body": f"echo: {e.body}"},
                                  ignore_unverified_devices=True)
        await asyncio.sleep(0.02)


async def test_command_round_trip_in_an_encrypted_room_is_close_to_an_unencrypted_one(synapse, sqlite_url,
                                                                                       tmp_path):
    world = make_world(synapse, joint=1)
    bot_id = world.bot_user["user_id"]
    [plain] = world.joint
    alice = E2EUser(synapse, world.alice, str(tmp_path / "alice"))
    try:
        await alice.sync()
        secret = await alice.create_encrypted_room([bot_id])
        zone = world.settings["zone"][0]
        world.settings["zone"] = [{**zone, "joint_rooms": [*zone["joint_rooms"], f"matrix:{secret}"]}]
        echo = E2EUser(synapse, person(synapse, "Echo"), str(tmp_path / "echo"))
        await echo.sync()
        floor_room = await alice.create_encrypted_room([echo.who.user_id], name="floor")
        await echo.client.join(floor_room)
        stop = asyncio.Event()
        echo_task = asyncio.create_task(_echo(echo, stop))
        async with Bot(world, sqlite_url) as bot:
            async def joined():
                return secret in bot.adapter.client.rooms and bot.adapter.crypto.encrypted(secret)
            await wait_for(joined)
            await _round_trip(alice, bot_id, secret)  # warm up: room keys shared both ways
            await _round_trip(alice, bot_id, plain)
            await _round_trip(alice, echo.who.user_id, floor_room)
            times: dict[str, list[float]] = {"encrypted": [], "plain": [], "floor": []}
            for _ in range(ROUNDS):
                times["encrypted"].append(await _round_trip(alice, bot_id, secret))
                times["plain"].append(await _round_trip(alice, bot_id, plain))
                times["floor"].append(await _round_trip(alice, echo.who.user_id, floor_room))
        stop.set()
        await echo_task
        await echo.close()
        enc, pl, fl = (statistics.median(times[k]) for k in ("encrypted", "plain", "floor"))
        print(f"\nround trip medians over {ROUNDS}: encrypted {enc * 1000:.0f} ms, unencrypted {pl * 1000:.0f} ms, "
              f"bare nio echo bot (encrypted) {fl * 1000:.0f} ms -> encrypted/unencrypted {enc / pl:.2f}x, "
              f"encrypted/floor {enc / fl:.2f}x (goals <= 1.3x)")
        assert enc / pl <= 1.3 and enc / fl <= 1.3
    finally:
        await alice.close()
